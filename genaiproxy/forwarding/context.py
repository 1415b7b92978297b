"""What every forwarded call shares, as one call sees it.

The L{genaiproxy.forwarding.forwarder.Forwarder} builds one L{CallContext}
and hands it to each L{genaiproxy.forwarding.call.ForwardCall} it starts:
the call reads the settings, the clock, the upstreams, the routing and the
metrics through it, and tells it when its request is done.  The call never
sees the forwarder, so that the forwarder can start calls without the two
modules importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime

from genaiproxy.config import Config, ModelRoute
from genaiproxy.limits import Limiter
from genaiproxy.observe import ProxyMetrics
from genaiproxy.upstream import UpstreamClient, UpstreamSet

__all__ = ["CallContext"]


@dataclass(frozen=True)
class CallContext:
    """What a call needs of what all requests share (one per forwarder).

    @ivar config: the settings of the default upstream, which are the
        proxy's own (logging, usage in streams).
    @ivar clock: the reactor's time, for timeouts.
    @ivar upstream: the default upstream's client.
    @ivar upstreams: the clients of every upstream in service, by name.
    @ivar metrics: where the call reports.
    @ivar hops: the routes a request for a model tries, in order, from the
        routing table in service when the request begins.
    @ivar finished: a callback for the end of the call's request (its
        Deferred's result, the request), answered in full or left by its
        client.
    @ivar limits: the clients' limits, asked before a request goes upstream.
    """

    config: Config
    clock: IReactorTime
    upstream: UpstreamClient
    upstreams: UpstreamSet
    metrics: ProxyMetrics
    hops: Callable[[str | None], Sequence[ModelRoute]]
    finished: Callable[[object, Any], None]
    limits: Limiter

    @property
    def secret_headers(self) -> frozenset[bytes]:
        """Header names whose values are never logged (every upstream's
        subscription header among them)."""
        return self.upstreams.secret_headers
