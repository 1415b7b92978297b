"""One client request's trip: the L{Forwarder} every request shares, the
call that prepares the body and calls the upstream with retries, and the
answer passed back whole or pumped through as a stream.
"""

from genaiproxy.forwarding.forwarder import Forwarder
from genaiproxy.forwarding.pump import collect_body

__all__ = [
    "Forwarder",
    "collect_body",
]
