"""GET /health with several upstreams, in memory: each upstream is a
twisted.web resource served by treq's RequestTraversalAgent under the
proxy's own L{UpstreamClient}, and the client of /health is a
L{DummyRequest} that can leave before the answer."""

from __future__ import annotations

from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from twisted.web.test.requesthelper import DummyRequest

from genaiproxy.config.environment import load_config
from genaiproxy.server.health import UpstreamsHealth
from genaiproxy.upstream.client import UpstreamClient


class SilentUpstream(Resource):
    """Takes every request and never answers; records which were given up
    (their connection closed by the proxy)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received = 0
        self.given_up = 0

    def render(self, request: Request) -> object:
        self.received += 1
        request.notifyFinish().addErrback(self._give_up)
        return NOT_DONE_YET

    def _give_up(self, _: Failure) -> None:
        self.given_up += 1


class Upstreams:
    """The part of the forwarder's upstream set that /health reads."""

    def __init__(self, clients: dict[str, UpstreamClient]) -> None:
        self._clients = clients

    def items(self) -> list[tuple[str, UpstreamClient]]:
        return list(self._clients.items())


class ProbedForwarder:
    """A forwarder with just the upstreams /health probes."""

    def __init__(self, clients: dict[str, UpstreamClient]) -> None:
        self.upstreams = Upstreams(clients)


def upstream_client(name: str, upstream: Resource, reactor: MemoryReactorClock,
                    ) -> tuple[UpstreamClient, RequestTraversalAgent]:
    agent = RequestTraversalAgent(upstream)
    config = load_config({"GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
                          "GENAI_API_KEY": "key-1234567",
                          "GENAI_BASE_URL": f"http://{name}.invalid"})
    return UpstreamClient(config, reactor, agent=agent), agent


def test_probes_are_cancelled_when_the_client_leaves():
    """A client that leaves /health before every upstream answered takes the
    probes with it: each upstream sees its probe's connection closed, and
    nothing is written to the request that is gone."""
    reactor = MemoryReactorClock()
    upstreams = {"default": SilentUpstream(), "second": SilentUpstream()}
    clients, agents = {}, []
    for name, upstream in upstreams.items():
        clients[name], agent = upstream_client(name, upstream, reactor)
        agents.append(agent)
    health = UpstreamsHealth(ProbedForwarder(clients), Resource())  # type: ignore[arg-type]
    request: Any = DummyRequest([b""])
    request.request_id = "rid-health"
    assert health.render(request) is NOT_DONE_YET
    for agent in agents:
        agent.flush()
    assert [upstream.received for upstream in upstreams.values()] == [1, 1]

    request.processingFailed(Failure(ConnectionDone("the client left")))
    for agent in agents:
        agent.flush()
    assert [upstream.given_up for upstream in upstreams.values()] == [1, 1]
    assert request.written == [] and request.finished == 0
    # No probe is left to time out and retry later.
    reactor.advance(3600)
    for agent in agents:
        agent.flush()
    assert [upstream.received for upstream in upstreams.values()] == [1, 1]
