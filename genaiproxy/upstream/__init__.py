"""Calling an upstream: the treq client of each upstream on its own Agent and
connection pool, the set of upstreams in service, the retry chain, what a
failure means, request bodies and URLs as they are sent, and the ways a
connection is made (direct, or through a corporate proxy's CONNECT tunnel).
"""

from genaiproxy.upstream.bodies import RequestBody, body_length
from genaiproxy.upstream.client import HOP_BY_HOP_HEADERS, UpstreamClient
from genaiproxy.upstream.endpoints import UpstreamEndpoints
from genaiproxy.upstream.failures import UpstreamError, classify, describe_failure
from genaiproxy.upstream.tunnel import ConnectTunnelEndpoint, ForwardProxy, ProxyConnectError
from genaiproxy.upstream.upstream_set import UpstreamSet

__all__ = [
    "ConnectTunnelEndpoint",
    "ForwardProxy",
    "HOP_BY_HOP_HEADERS",
    "ProxyConnectError",
    "RequestBody",
    "UpstreamClient",
    "UpstreamEndpoints",
    "UpstreamError",
    "UpstreamSet",
    "body_length",
    "classify",
    "describe_failure",
]
