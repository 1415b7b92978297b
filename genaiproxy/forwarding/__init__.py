"""One client request's trip: the L{Forwarder} every request shares (its
calls see what they need of it as a C{context}), the call that prepares the
body and calls the upstream with retries, and the answer passed back whole
(C{answer}) or pumped through as a stream (C{streamed}, C{pump}).
"""

from genaiproxy.forwarding.forwarder import Forwarder
from genaiproxy.forwarding.pump import collect_body

__all__ = [
    "Forwarder",
    "collect_body",
]
