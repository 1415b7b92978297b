"""The proxy's whole resource tree: which path does what (the resources
themselves are in L{genaiproxy.server.resources}, L{genaiproxy.server.messages}
and L{genaiproxy.server.health})."""

from __future__ import annotations

from twisted.web.resource import Resource

from genaiproxy.api import CHAT_TOKEN_FIELD, RESPONSES_TOKEN_FIELD, Route
from genaiproxy.config import ModelCatalog
from genaiproxy.forwarding import Forwarder
from genaiproxy.server.health import UpstreamsHealth
from genaiproxy.server.messages import Messages
from genaiproxy.server.resources import (
    Directory,
    Forwarded,
    Liveness,
    Metadata,
    MetricsPage,
    Models,
    Passthrough,
    Readiness,
    StatusPage,
)

__all__ = ["build_tree"]


def build_tree(forwarder: Forwarder, catalog: ModelCatalog) -> Resource:
    """The proxy's whole resource tree."""
    probe = Route(bare=True)
    passthrough = Passthrough(forwarder)
    v1 = Directory(
        {
            b"health": Forwarded(forwarder, "/v1/health", ("GET",), probe),
            b"models": Models(catalog),
            b"chat": Directory(
                {
                    b"completions": Forwarded(
                        forwarder, "/v1/chat/completions", ("POST",),
                        Route(label="chat", token_field=CHAT_TOKEN_FIELD, asks_usage=True,
                              by_model=True),
                    ),
                },
                below=passthrough,
            ),
            b"messages": Messages(forwarder),
            b"responses": Forwarded(
                forwarder, "/v1/responses", ("POST",),
                Route(label="responses", token_field=RESPONSES_TOKEN_FIELD, responses_events=True,
                      by_model=True, bridge="responses"),
                below=passthrough,
            ),
        },
        below=passthrough,
    )
    health = UpstreamsHealth(forwarder, Forwarded(forwarder, "/", ("GET",), probe))
    return Metadata(
        forwarder.config.upstream_display,
        {b"health": health, b"livez": Liveness(), b"readyz": Readiness(forwarder, catalog),
         b"v1": v1,
         b"metrics": MetricsPage(forwarder.metrics),
         b"status": StatusPage(forwarder, public=forwarder.config.status_public)},
    )
