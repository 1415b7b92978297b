"""Forwarding client requests to the upstream: what all of them share.

A L{Forwarder} holds the upstream clients and the routing table that picks
one for each model, the settings, the metrics and the set of requests in
flight (for a graceful stop); each request's own trip is a
L{genaiproxy.forwarding.call.ForwardCall}, which sees what it needs of
these through the forwarder's L{CallContext}.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.web.server import NOT_DONE_YET

from genaiproxy import __version__
from genaiproxy.api import Route
from genaiproxy.config import NO_ROUTING, ModelRoute, RoutingTable
from genaiproxy.forwarding.call import ForwardCall
from genaiproxy.forwarding.context import CallContext
from genaiproxy.limits import Limiter
from genaiproxy.observe import ProxyMetrics
from genaiproxy.upstream import UpstreamClient, UpstreamSet

__all__ = ["Forwarder"]


class Forwarder:
    """What every forwarded request shares."""

    def __init__(self, upstream: UpstreamClient) -> None:
        self.upstream = upstream  # the default one
        self.config = upstream.config
        self.clock = upstream.clock
        self._in_flight: set[Any] = set()
        self._idle_waiters: list[Deferred[None]] = []
        self.metrics = ProxyMetrics(__version__, lambda: len(self._in_flight))
        self.upstreams = UpstreamSet(upstream, upstream.clock, self.metrics.reloaded)
        self.routing: RoutingTable = NO_ROUTING
        # Set once a graceful stop began: /readyz then turns new work away.
        self.draining = False
        # The clients' limits (models.yaml's limits:, set with the routing).
        self.limits = Limiter(self.clock, self.metrics)
        self.context = CallContext(self.config, self.clock, upstream, self.upstreams,
                                   self.metrics, self._hops, self.finished, self.limits)

    def set_routing(self, routing: RoutingTable) -> None:
        """Take a new routing table (and its upstreams) into service."""
        self.upstreams.apply(routing)
        self.routing = routing

    def _hops(self, model: str | None) -> Sequence[ModelRoute]:
        """The routes a request for C{model} tries, from the table in service."""
        return self.routing.hops(model)

    def forward(self, request: Any, path: str, route: Route) -> object:
        """Send C{request} to the upstream C{path}; answer it asynchronously."""
        self._in_flight.add(request)
        ForwardCall(self.context, request, path, route).start()
        return NOT_DONE_YET

    @property
    def in_flight(self) -> int:
        """Requests forwarded and not yet answered in full (streams included)."""
        return len(self._in_flight)

    def idle(self) -> Deferred[None]:
        """Fires once no forwarded request is in flight."""
        if not self._in_flight:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    def cut_all(self) -> int:
        """Close the connections of every request still in flight; their
        upstream calls are cancelled in turn.  Returns how many there were."""
        requests = list(self._in_flight)
        for request in requests:
            request.transport.abortConnection()
        return len(requests)

    def finished(self, _: object, request: Any) -> None:
        """C{request} was answered in full, or its client went away."""
        self._in_flight.discard(request)
        if not self._in_flight:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                if not waiter.called:
                    waiter.callback(None)
