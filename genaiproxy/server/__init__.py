"""The HTTP side facing the clients: the connection and its limits, the site
(request ids, access tokens, CORS), the resource tree of paths, the health
probes and the status page.
"""

from genaiproxy.server.channel import ClientLimits
from genaiproxy.server.site import AccessPolicy, ProxySite
from genaiproxy.server.tree import build_tree

__all__ = [
    "AccessPolicy",
    "ClientLimits",
    "ProxySite",
    "build_tree",
]
