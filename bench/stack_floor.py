#!/usr/bin/env python3
"""The stack's floor: what a request costs twisted.web and treq alone.

A forwarding proxy of a few lines on the stack genai-proxy is built on
(twisted.web's Site and a leaf Resource; treq's HTTPClient over Agent and a
persistent HTTPConnectionPool, with the options genai-proxy passes:
``allow_redirects=False``, ``unbuffered=True``, a cookie jar that keeps nothing), with
the shortcuts genai-proxy takes through their API (a URL that treq sends
as it is, without hyperlink's parse and IDNA; one endpoint per origin, not
a new HostnameEndpoint per request; the answer read with C{treq.collect},
without C{treq.content}'s charset parsing; no form parsing of a POST body
by twisted.web), doing
only what any forwarding proxy must: read the client's body, copy its
headers but the hop-by-hop ones, add the subscription header, send the
request, read the answer whole, copy its status and headers, write it back.
No routing, no JSON, no log events, no metrics, no retries, no limits.

``bench/phase_requests.py --stack-floor`` measures it as a row beside
genai-proxy, so that RESULTS.md can say how much of genai-proxy's CPU per
request is the stack's and how much is the proxy's own work.

Run by hand::

    python bench/stack_floor.py --port 8200 --upstream http://127.0.0.1:8300
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

def serve(port: int, upstream: str, key: str, header: str) -> None:
    """Serve the floor proxy on C{port} until killed."""
    import treq
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint
    from twisted.web.client import Agent, HTTPConnectionPool
    from twisted.web.http_headers import Headers
    from twisted.web.iweb import IAgentEndpointFactory
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Site
    from zope.interface import implementer

    # The proxy's own pieces for what any forwarder must do: the headers not
    # forwarded, the jar that keeps no cookies, the URL sent as it is.
    from genaiproxy.upstream import HOP_BY_HOP_HEADERS
    from genaiproxy.upstream.client import NoCookies
    from genaiproxy.upstream.urls import as_sent

    not_forwarded = HOP_BY_HOP_HEADERS | {b"host", b"content-length"}

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 256
    endpoints: dict[tuple[bytes, int], TCP4ClientEndpoint] = {}

    @implementer(IAgentEndpointFactory)
    class SameEndpoint:
        """One endpoint per origin, made once (Agent's default makes a
        HostnameEndpoint per request, with an IDNA encoding each time)."""

        def endpointForURI(self, uri: Any) -> TCP4ClientEndpoint:
            key = (uri.host, uri.port)
            if key not in endpoints:
                endpoints[key] = TCP4ClientEndpoint(reactor, uri.host.decode(), uri.port)
            return endpoints[key]

    jar = NoCookies()
    agent = Agent.usingEndpointFactory(reactor, SameEndpoint(), pool=pool)
    http = treq.client.HTTPClient(agent,
                                  cookiejar=jar)  # type: ignore[arg-type]
    base = upstream.rstrip("/").encode("ascii")
    inject = (header.encode("latin-1"), key.encode("latin-1"))

    class Forward(Resource):
        isLeaf = True

        def render(self, request: Any) -> Any:
            body = request.content.read()
            headers = Headers()
            for name, values in request.requestHeaders.getAllRawHeaders():
                if name.lower() not in not_forwarded:
                    headers.setRawHeaders(name, values)
            headers.setRawHeaders(inject[0], [inject[1]])
            sent = http.request(request.method.decode("ascii"), as_sent(base + request.uri),
                                headers=headers, data=body, cookies=jar,
                                allow_redirects=False, unbuffered=True)

            def answer(response: Any) -> Any:
                parts: list[bytes] = []

                def write(_: object) -> None:
                    content = b"".join(parts)
                    request.setResponseCode(response.code)
                    for name, values in response.headers.getAllRawHeaders():
                        if name.lower() not in not_forwarded:
                            request.responseHeaders.setRawHeaders(name, values)
                    request.setHeader(b"content-length", b"%d" % len(content))
                    request.write(content)
                    request.finish()
                return treq.collect(response, parts.append).addCallback(write)

            def failed(failure: Any) -> None:
                request.setResponseCode(502)
                request.write(failure.getErrorMessage().encode())
                request.finish()

            sent.addCallback(answer).addErrback(failed)
            return NOT_DONE_YET

    class QuietSite(Site):
        def log(self, request: Any) -> None:
            """No access log: genai-proxy's is its own events."""

    reactor.listenTCP(port, QuietSite(Forward(), parsePOSTFormSubmission=False),  # type: ignore[arg-type]
                      interface="127.0.0.1", backlog=1024)
    reactor.run()


def start_stack_floor(session: Any, upstream_port: int, key: str = "floor",
                      wrapper: list[str] | None = None) -> Any:
    """Start the floor proxy in front of the static upstream as a benchmark
    target (a L{bench.procs.Target} of kind C{floor}), run by C{wrapper}
    (e.g. C{python -m cProfile -o FILE}) in place of this Python."""
    from bench.common import API_KEY, HOST, SUBSCRIPTION_NAME, free_port
    from bench.procs import Target, wait_for_answer

    label = "stack floor (twisted.web + treq alone)"
    prefix = session.path(key)
    prefix.mkdir(exist_ok=True)
    port = free_port()
    argv = [*(wrapper or [sys.executable]), str(Path(__file__).resolve()), "--port", str(port),
            "--upstream", f"http://{HOST}:{upstream_port}", "--key", API_KEY,
            "--header", SUBSCRIPTION_NAME]

    def launch() -> subprocess.Popen[bytes]:
        proc = session.start(label, argv, None, prefix / "stdout", prefix / "stderr",
                             cwd=prefix)
        wait_for_answer(label, proc, port, prefix / "stderr", marker=b"the static upstream")
        return proc

    target = Target(key, label, "floor", port, launch(), launch)
    session.targets[key] = target
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="the upstream's base URL")
    p.add_argument("--key", default="bench-key", help="the subscription key to add")
    p.add_argument("--header", default="Ocp-Apim-Subscription-Key",
                   help="the subscription header's name")
    args = p.parse_args(argv)
    serve(args.port, args.upstream, args.key, args.header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
