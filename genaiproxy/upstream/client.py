"""The upstream side of a request: its URL, its headers, and the call itself.

Calls go through one treq L{HTTPClient} made at start-up on Twisted's
L{Agent} with a persistent L{HTTPConnectionPool} (see L{genaiproxy.upstream.endpoints}
for how connections are made).  treq's defaults that a transparent proxy must
not have are turned off:

  - cookies: the client's jar stores nothing and adds nothing, so an
    upstream C{Set-Cookie} reaches only the client it was meant for;
  - redirects: not followed (C{allow_redirects=False}); a 3xx goes back as sent;
  - buffering: every call is C{unbuffered=True}, so a stream is never held;
  - gzip: treq asks for it and decodes it; the answer reaches the client
    decoded, without the upstream's C{Content-Encoding} and C{Content-Length}.

Each attempt must bring the response headers within REQUEST_TIMEOUT; the
retry chain of L{genaiproxy.upstream.retry} runs the attempts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http.cookiejar import Cookie
from typing import Any
from urllib.parse import urlsplit
from urllib.request import Request as UrllibRequest

from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IResponse

from genaiproxy.config import Config, trust_root
from genaiproxy.upstream.bodies import BytesProducer, RequestBody, body_producer
from genaiproxy.upstream.endpoints import UpstreamEndpoints, upstream_agent
from genaiproxy.upstream.failures import UpstreamError
from genaiproxy.upstream.retry import OnRetry, OnWait, RetryingCall, retry_after_seconds
from genaiproxy.upstream.tunnel import ForwardProxy
from genaiproxy.upstream.urls import as_sent, join_url, target_safe

# Answers that may ask to be tried again later (Retry-After).
_WAIT_CODES = frozenset({429, 503})

# Headers that describe one hop of a connection, never the end-to-end message.
HOP_BY_HOP_HEADERS = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Client headers the upstream never sees: our own hop, the client's credentials
# for the proxy, what the client computes itself, and the request id (the
# proxy sends the one it uses, which may differ from a malformed client one).
_NOT_FORWARDED = HOP_BY_HOP_HEADERS | {
    b"host", b"content-length", b"authorization", b"expect", b"x-request-id"
}


def connection_tokens(values: Sequence[bytes] | None) -> frozenset[bytes]:
    """The header names a C{Connection} header declares hop-by-hop."""
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(b","))


def _timed_out(result: Any, timeout: float) -> Failure:
    """What an attempt cancelled by its timeout fails with, whatever layer
    (connecting, sending, waiting) the cancellation interrupted."""
    return Failure(
        UpstreamError("read_timeout", f"no response from the upstream within {timeout:g} s", True)
    )


def _without_empty_encoding(response: IResponse) -> IResponse:
    """Drop the empty C{Content-Encoding} that Twisted's C{ContentDecoderAgent}
    puts on every answer that had none (it joins no values into one empty
    one); a client must not receive it."""
    values = response.headers.getRawHeaders(b"content-encoding")
    if values is not None and not any(value.strip() for value in values):
        response.headers.removeHeader(b"content-encoding")
    return response


# Methods whose requests carry a body, announced even when it is empty.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class NoCookies(IndexableCookieJar):
    """A cookie jar that keeps nothing and adds nothing.

    treq wraps every call in a C{CookieAgent} over its client's jar; with an
    ordinary jar one client's upstream cookies would be sent upstream with
    every other client's requests.  The client's own C{Cookie} header is
    forwarded as it is, and C{Set-Cookie} answers reach the client unchanged.
    """

    def set_cookie(self, cookie: Cookie) -> None:
        """Store nothing."""

    def extract_cookies(self, response: Any, request: UrllibRequest) -> None:
        """Take nothing from an answer."""

    def add_cookie_header(self, request: UrllibRequest) -> None:
        """Add nothing to a request."""


# The connection pool: idle keep-alive connections kept per origin, and how
# long.  A department's clients can have hundreds of requests and streams in
# flight; keeping that many idle connections saves a TCP and TLS handshake
# (and a CONNECT through a forward proxy) on the next burst, for a few KB
# each.  Twisted's default of 2 would close nearly every connection after
# its first answer.  Idle ones close after 50 s, before the common server
# keep-alive limits (60 s and more), so few stale connections are met.
POOL_IDLE_PER_ORIGIN = 256
POOL_IDLE_TIMEOUT_SEC = 50.0


def make_pool(reactor: Any) -> HTTPConnectionPool:
    """The persistent connection pool of the upstream client."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = POOL_IDLE_PER_ORIGIN
    # Twisted infers int from its default (240), but any number of seconds works.
    pool.cachedConnectionTimeout = POOL_IDLE_TIMEOUT_SEC  # type: ignore[assignment]
    return pool


class UpstreamClient:
    """Sends requests to the upstream with the subscription header injected.

    C{agent} replaces the agent built from the configuration (tests use
    treq's in-memory C{RequestTraversalAgent}).
    """

    def __init__(self, config: Config, reactor: Any, agent: IAgent | None = None) -> None:
        self.config = config
        self.clock: IReactorTime = reactor
        base = urlsplit(config.base_url)
        scheme = base.scheme
        hostname = base.hostname or ""
        default_port = 443 if scheme == "https" else 80
        port = base.port or default_port
        host = hostname.encode("idna").decode("ascii") if ":" not in hostname else f"[{hostname}]"
        authority = host if port == default_port else f"{host}:{port}"
        # The base URL without any credentials it may carry.
        self._base = f"{scheme}://{authority}{base.path.rstrip('/')}".encode("ascii")
        self.pool = make_pool(reactor)
        endpoints = UpstreamEndpoints(
            reactor,
            config.request_timeout,
            trust_root(config.ca_bundle, config.ssl_cert_file),
            ForwardProxy(config.https_proxy) if config.https_proxy else None,
            config.no_proxy,
        )
        self._proxy = endpoints.proxy_for(hostname, port)
        if agent is None:
            agent = upstream_agent(reactor, endpoints, self.pool, scheme, hostname, port)
        self._jar = NoCookies()
        self._http = HTTPClient(agent, cookiejar=self._jar, data_to_body_producer=body_producer)
        self._drop = _NOT_FORWARDED
        if config.subscription_name:
            self._drop = _NOT_FORWARDED | {config.subscription_name.encode("latin-1").lower()}
        # A plain-http request through the forward proxy carries the proxy's
        # credentials; https ones send them with CONNECT instead.
        self._proxy_inject: list[tuple[bytes, bytes]] = []
        if self._proxy is not None and scheme == "http" and self._proxy.authorization is not None:
            self._proxy_inject.append((b"Proxy-Authorization", self._proxy.authorization))
        self._inject: list[tuple[bytes, bytes]] = []
        self.set_api_key(config.api_key)

    def set_api_key(self, key: str) -> None:
        """Send C{key} in the subscription header from the next request on
        (a rotated key file); requests under way keep the headers they have."""
        inject = []
        if self.config.subscription_name:
            inject.append((self.config.subscription_name.encode("latin-1"), key.encode("latin-1")))
        self._inject = inject + self._proxy_inject

    @property
    def via_proxy(self) -> str | None:
        """The forward proxy in use (credentials removed), or None when direct."""
        return self._proxy.display if self._proxy is not None else None

    def url_for(self, path: str, query: bytes = b"") -> str:
        """The full upstream URL for a proxy C{path} and the client's C{query},
        without any credentials of the base URL: fit for a log."""
        return join_url(self.config.upstream_display, path, query).decode("ascii")

    def request_url(self, path: str, query: bytes = b"") -> bytes:
        """The URL requested upstream: base URL + C{path} (+ C{?query})."""
        url = self._base + b"/" + target_safe(path.lstrip("/").encode("ascii"))
        if url.endswith(b";"):
            # Twisted's Agent would drop it (empty ";params" of the last segment).
            url = url[:-1] + b"%3B"
        return url + b"?" + target_safe(query) if query else url

    def headers_for(self, incoming: Headers, request_id: str) -> Headers:
        """The headers to send upstream for a client request with C{incoming}.

        Drops hop-by-hop headers (and any the client's C{Connection} header
        names), the client's credentials and any copy of the subscription
        header, then injects the subscription key and the request id.
        """
        drop = self._drop
        connection = incoming.getRawHeaders(b"connection")
        if connection:
            drop = drop | connection_tokens(connection)
        outgoing = Headers()
        for name, values in incoming.getAllRawHeaders():
            if name.lower() not in drop:
                outgoing.setRawHeaders(name, values)
        for name, value in self._inject:
            outgoing.setRawHeaders(name, [value])
        outgoing.setRawHeaders(b"X-Request-ID", [request_id.encode("latin-1")])
        return outgoing

    def call(
        self,
        method: bytes,
        url: bytes,
        headers: Headers,
        body: RequestBody,
        on_retry: OnRetry,
        read: Callable[[IResponse], Any] | None = None,
        on_wait: OnWait | None = None,
    ) -> Deferred[Any]:
        """Send one request with retries; fire with the response (or with
        C{read(response)} when given, so that reading the body is retried too).

        With C{on_wait} (and a C{read} whose value is C{(response, body)}), a
        429 or 503 whose body was read whole and which asks for a wait of at
        most RETRY_AFTER_MAX_SEC is not answered but tried again after that
        wait (C{on_wait} is told first), while retries remain.
        """
        timeout = self.config.request_timeout
        method_name = method.decode("ascii")
        target = as_sent(url)

        def attempt() -> Deferred[Any]:
            data: Any = body
            if body is not None and not isinstance(body, bytes):
                body.seek(0)  # a spooled upload is sent again from its start
            elif not body and method_name in _BODY_METHODS:
                # treq sends no body (and Twisted no length) for b"" on a
                # PATCH: announce the empty body as Content-Length: 0.
                data = BytesProducer(b"")
            # treq's type for data lists what its default data_to_body_producer
            # takes; ours (bodies.body_producer) also takes any binary file.
            # cookies: our empty jar, so that treq does not make a new jar
            # for every request only to merge nothing from it into ours.
            d = self._http.request(
                method_name, target, headers=headers, data=data,
                cookies=self._jar, allow_redirects=False, unbuffered=True,
            )
            d.addTimeout(timeout, self.clock, onTimeoutCancel=_timed_out)
            d.addCallback(_without_empty_encoding)
            if read is not None:
                d.addCallback(read)
            return d

        retrying = RetryingCall(
            attempt,
            self.clock,
            self.config.max_retries,
            self.config.retry_backoff_sec,
            on_retry,
            wait_asked=self._wait_asked if on_wait is not None else None,
            on_wait=on_wait,
        )
        return retrying.start()

    def _wait_asked(self, value: tuple[IResponse, bytes | None]) -> float | None:
        """The wait a read answer asks for, when the proxy should absorb it."""
        response, body = value
        if response.code not in _WAIT_CODES or body is None:
            return None
        limit = self.config.retry_after_max_sec
        wait = retry_after_seconds(response.headers, self.clock.seconds())
        return wait if wait is not None and wait <= limit else None

    def close(self) -> Deferred[None]:
        """Close the pool's idle connections (when the service stops)."""
        return self.pool.closeCachedConnections()
