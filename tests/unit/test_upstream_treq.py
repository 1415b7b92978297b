"""The upstream client's treq settings, in memory: treq's RequestTraversalAgent
serves a twisted.web resource under the client's own HTTPClient (cookie jar,
redirect and decoding layers), so no socket is needed to see what a
transparent proxy must and must not do."""

from __future__ import annotations

import gzip
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Request

from genaiproxy.config.environment import load_config
from genaiproxy.forwarding.pump import collect_body
from genaiproxy.upstream.client import UpstreamClient

ENV = {
    "GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
    "GENAI_API_KEY": "key-1234567",
    "GENAI_BASE_URL": "http://upstream.invalid/genai",
}


class Upstream(Resource):
    """Records each request's headers and answers as C{answer} says."""

    isLeaf = True

    def __init__(self, answer: Any) -> None:
        super().__init__()
        self.seen: list[Headers] = []
        self._answer = answer

    def render(self, request: Request) -> bytes:
        self.seen.append(request.requestHeaders.copy())
        return self._answer(request, len(self.seen))


def make_client(upstream: Upstream) -> tuple[UpstreamClient, RequestTraversalAgent, MemoryReactorClock]:
    agent = RequestTraversalAgent(upstream)
    reactor = MemoryReactorClock()
    return UpstreamClient(load_config(ENV), reactor, agent=agent), agent, reactor


def call(client: UpstreamClient, agent: RequestTraversalAgent, reactor: MemoryReactorClock,
         headers: Headers | None = None) -> tuple[Any, bytes]:
    """One POST through the client; the response and its whole body."""
    results: list[Any] = []
    outgoing = client.headers_for(headers or Headers(), "rid-1")

    def read(response: Any) -> Any:
        return collect_body(response, reactor, 5).addCallback(lambda body: (response, body))

    d = client.call(b"POST", client.request_url("/v1/chat/completions"), outgoing, b"{}",
                    lambda *_: None, read=read)
    d.addBoth(results.append)
    agent.flush()
    assert results, "no answer"
    if not isinstance(results[0], tuple):
        results[0].raiseException()
    return results[0]


def test_upstream_cookies_are_never_kept_or_sent_back():
    """An upstream Set-Cookie goes to the client that got it; no later
    request carries it upstream (the jar keeps nothing)."""

    def answer(request: Request, n: int) -> bytes:
        request.setHeader(b"set-cookie", b"session=s%d; Path=/" % n)
        return b"{}"

    upstream = Upstream(answer)
    client, agent, reactor = make_client(upstream)
    first, _ = call(client, agent, reactor)
    second, _ = call(client, agent, reactor)
    assert first.headers.getRawHeaders(b"set-cookie") == [b"session=s1; Path=/"]
    assert second.headers.getRawHeaders(b"set-cookie") == [b"session=s2; Path=/"]
    assert [h.getRawHeaders(b"cookie") for h in upstream.seen] == [None, None]


def test_client_cookie_header_is_forwarded_as_it_is():
    """The client's own Cookie header reaches the upstream unchanged."""
    upstream = Upstream(lambda request, n: b"{}")
    client, agent, reactor = make_client(upstream)
    call(client, agent, reactor, Headers({b"cookie": [b"a=1; b=2"]}))
    assert upstream.seen[0].getRawHeaders(b"cookie") == [b"a=1; b=2"]


def test_redirects_are_not_followed():
    """A 3xx comes back as the upstream sent it; the upstream sees one request."""

    def answer(request: Request, n: int) -> bytes:
        request.setResponseCode(307)
        request.setHeader(b"location", b"http://elsewhere.invalid/v1/chat/completions")
        return b"moved"

    upstream = Upstream(answer)
    client, agent, reactor = make_client(upstream)
    response, body = call(client, agent, reactor)
    assert response.code == 307
    assert response.headers.getRawHeaders(b"location") == [b"http://elsewhere.invalid/v1/chat/completions"]
    assert body == b"moved"
    assert len(upstream.seen) == 1


def test_gzip_answer_is_decoded_and_its_encoding_header_dropped():
    """treq asks for gzip and decodes it: the body is plain and the headers
    no longer claim an encoding."""
    document = b'{"object": "chat.completion", "choices": []}'

    def answer(request: Request, n: int) -> bytes:
        request.setHeader(b"content-encoding", b"gzip")
        return gzip.compress(document)

    upstream = Upstream(answer)
    client, agent, reactor = make_client(upstream)
    response, body = call(client, agent, reactor)
    assert body == document
    assert response.headers.getRawHeaders(b"content-encoding") is None
    assert b"gzip" in b",".join(upstream.seen[0].getRawHeaders(b"accept-encoding", []))


def test_answer_without_encoding_gets_no_empty_encoding_header():
    """Twisted's decoder leaves an empty Content-Encoding on plain answers;
    the client must not get it."""
    upstream = Upstream(lambda request, n: b"{}")
    client, agent, reactor = make_client(upstream)
    response, _ = call(client, agent, reactor)
    assert response.headers.getRawHeaders(b"content-encoding") is None


def test_key_and_request_id_injected_credentials_dropped():
    """The subscription key and request id go upstream; the client's bearer
    token and its own copy of the key do not."""
    upstream = Upstream(lambda request, n: b"{}")
    client, agent, reactor = make_client(upstream)
    call(client, agent, reactor, Headers({
        b"authorization": [b"Bearer client-token"],
        b"ocp-apim-subscription-key": [b"forged"],
        b"x-custom": [b"kept"],
    }))
    seen = upstream.seen[0]
    assert seen.getRawHeaders(b"ocp-apim-subscription-key") == [b"key-1234567"]
    assert seen.getRawHeaders(b"x-request-id") == [b"rid-1"]
    assert seen.getRawHeaders(b"authorization") is None
    assert seen.getRawHeaders(b"x-custom") == [b"kept"]
    assert seen.getRawHeaders(b"host") == [b"upstream.invalid"]


def test_query_string_reaches_the_upstream_as_the_client_wrote_it():
    """treq would re-encode the query (brackets, commas); the proxy sends it
    as it came, percent-encoding only what a request target cannot carry."""
    upstream = Upstream(lambda request, n: request.uri)
    client, agent, reactor = make_client(upstream)
    results: list[Any] = []
    url = client.request_url("/v1/files", b"ids=[1,2]&q=a b\xc3\xa9&x=%2F")
    d = client.call(b"GET", url, client.headers_for(Headers(), "rid"), None, lambda *_: None,
                    read=lambda r: collect_body(r, reactor, 5))
    d.addBoth(results.append)
    agent.flush()
    assert results == [b"/genai/v1/files?ids=[1,2]&q=a%20b%C3%A9&x=%2F"]


def test_close_closes_the_pools_cached_connections():
    """Stopping the service closes the idle keep-alive connections of the pool."""
    client, _, _ = make_client(Upstream(lambda request, n: b"{}"))
    closed: list[bool] = []
    client.pool.closeCachedConnections = lambda: closed.append(True) or succeed(None)  # type: ignore[method-assign]
    client.close()
    assert closed == [True]


def test_pool_keeps_many_idle_connections_for_a_while():
    """Idle connections are kept for bursts of concurrent requests (Twisted
    keeps 2 per host by default) and dropped before servers drop them."""
    client, _, _ = make_client(Upstream(lambda request, n: b"{}"))
    assert client.pool.persistent
    assert client.pool.maxPersistentPerHost >= 128
    assert 10 <= client.pool.cachedConnectionTimeout < 60
