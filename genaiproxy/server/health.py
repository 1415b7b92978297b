"""GET /health with several upstreams: one probe of each, answered together.

With only the default upstream, C{/health} relays that upstream's answer to
a GET of its root, as it always has.  When models.yaml names more, each one
gets that GET at the same time; the answer is 200 when every upstream
answered (with a status under 500), 502 otherwise, and its JSON body has one
entry per upstream: name, URL (without credentials), status or error, and
how long it took.  A client that leaves before the answer takes the probes
still under way with it: they are cancelled.
"""

from __future__ import annotations

from time import monotonic
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from genaiproxy.api import set_json, with_api_version
from genaiproxy.forwarding import Forwarder, collect_body
from genaiproxy.upstream import UpstreamClient, classify

log = Logger(namespace="genaiproxy.health")


class UpstreamsHealth(Resource):
    """GET /health: the default upstream's answer, or a probe of every one."""

    public = True

    def __init__(self, forwarder: Forwarder, single: Resource) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._single = single  # today's relay of the default upstream's root

    def getChild(self, path: bytes, request: Any) -> Resource:
        return self._single.getChildWithDefault(path, request)

    def render(self, request: Any) -> object:
        upstreams = self._forwarder.upstreams.items()
        if len(upstreams) == 1 or request.method not in (b"GET", b"HEAD"):
            return self._single.render(request)
        probes = [self._probe(name, client, request.request_id) for name, client in upstreams]
        gone: list[bool] = []

        def client_left(_: Failure) -> None:
            # Nobody will read the answer: stop every probe still under way
            # (its connection, and the retries and timeout to come).
            gone.append(True)
            for probe in probes:
                probe.cancel()

        request.notifyFinish().addErrback(client_left)

        # Open to probes, but where clients need a token, only one who gives
        # it learns the upstreams' addresses and errors (the site checked it).
        detailed = getattr(request, "authorized", True)

        def answer(results: list[tuple[bool, dict[str, Any]]]) -> None:
            if gone:
                return
            entries = [entry for _, entry in results]
            healthy = all(entry["ok"] for entry in entries)
            if not detailed:
                entries = [{key: entry[key] for key in ("name", "ok", "status") if key in entry}
                           for entry in entries]
            body = set_json(request, {"status": "ok" if healthy else "failing",
                                      "upstreams": entries}, 200 if healthy else 502)
            request.write(b"" if request.method == b"HEAD" else body)
            request.finish()

        DeferredList(probes, consumeErrors=True).addCallback(answer).addErrback(
            lambda failure: log.failure("health probe failed", failure))
        return NOT_DONE_YET

    def _probe(self, name: str, client: UpstreamClient, request_id: str,
               ) -> Deferred[dict[str, Any]]:
        """GET the root of one upstream; fire with its entry."""
        started = monotonic()
        entry: dict[str, Any] = {"name": name, "url": client.config.upstream_display}

        def read(response: Any) -> Any:
            return collect_body(response, client.clock, client.config.request_timeout).addCallback(
                lambda _: response)

        def answered(response: Any) -> dict[str, Any]:
            entry.update(status=response.code, ok=response.code < 500)
            return entry

        def failed(failure: Failure) -> dict[str, Any]:
            problem = classify(failure)
            entry.update(ok=False, error={"type": problem.kind, "message": problem.message})
            return entry

        def timed(result: dict[str, Any]) -> dict[str, Any]:
            result["duration_ms"] = round((monotonic() - started) * 1000, 1)
            return result

        url = client.request_url("/", with_api_version(b"", client.config.api_version))
        call = client.call(b"GET", url, client.headers_for(Headers(), request_id), b"",
                           lambda *_: None, read=read)
        return call.addCallbacks(answered, failed).addCallback(timed)
