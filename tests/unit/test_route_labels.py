"""A forwarded request's kind, decided once by the resource tree: the label
of the L{genaiproxy.api.Route} each path is forwarded with, which the
metrics count it under."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.web.server import NOT_DONE_YET

from genaiproxy.api import ROUTE_LABELS, Route
from genaiproxy.config import ModelCatalog
from genaiproxy.server import build_tree


class RecordingForwarder:
    """Stands in for the forwarder: notes each path and route, answers 204."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(upstream_display="http://upstream.invalid",
                                      status_public=False)
        self.metrics = SimpleNamespace(registry=None)
        self.draining = False
        self.upstreams = SimpleNamespace(items=lambda: [("default", None)])
        self.forwarded: list[tuple[str, Route]] = []

    def forward(self, request: Any, path: str, route: Route) -> object:
        self.forwarded.append((path, route))
        request.setResponseCode(204)
        request.finish()
        return NOT_DONE_YET


@pytest.mark.parametrize(("method", "path", "label"), [
    ("POST", "/v1/chat/completions", "chat"),
    ("POST", "/v1/responses", "responses"),
    ("GET", "/v1/responses/resp_1", "responses"),
    ("POST", "/v1/responses/resp_1/cancel", "responses"),
    ("POST", "/v1/embeddings", "embeddings"),
    ("POST", "/v1/completions", "completions"),
    ("GET", "/v1/files", "other"),
    ("POST", "/v1/audio/speech", "other"),
    ("GET", "/v1/health", "other"),
    ("GET", "/health", "other"),
])
def test_each_forwarded_path_has_its_kind(tmp_path: Any, method: str, path: str, label: str) -> None:
    """Every path the proxy forwards goes with the route whose label names
    its kind: the Responses API's paths are "responses" whether a response
    is made or read back, and paths of no known kind are "other"."""
    forwarder = RecordingForwarder()
    catalog = ModelCatalog(str(tmp_path / "models.yaml"))
    client = StubTreq(build_tree(forwarder, catalog))  # type: ignore[arg-type]
    response = client.request(method, "http://proxy.invalid" + path, data=b"{}")
    client.flush()
    assert [(p, route.label) for p, route in forwarder.forwarded] == [
        (path if path != "/health" else "/", label)]
    assert response.result.code == 204


def test_a_label_outside_the_fixed_set_is_refused() -> None:
    """A route's label is one of a fixed set (which bounds the metrics'
    series): any other is a mistake, caught when the route is made."""
    assert {Route(label=label).label for label in ROUTE_LABELS} == ROUTE_LABELS
    with pytest.raises(ValueError, match="unknown route label 'chats'"):
        Route(label="chats")
