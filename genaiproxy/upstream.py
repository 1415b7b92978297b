"""The upstream side: where requests go, with which headers, and the retry chain.

Requests travel on the keep-alive pool of L{genaiproxy.client}.  treq's
C{HTTPClient} is deliberately not used on this path: it wraps every call in a
cookie jar shared by all callers, follows redirects and decodes gzip, none of
which a transparent proxy may do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers

from .client import (
    ConnectionPool,
    RequestBody,
    UpstreamResponse,
    body_length,
    serialize_head,
)
from .config import Config
from .tls import client_tls, trust_root
from .tunnel import (
    ConnectTunnelEndpoint,
    ForwardProxy,
    ProxyConnectError,
    ProxyEndpoint,
    bypasses_proxy,
)

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


def connection_tokens(values: Optional[list[bytes]]) -> frozenset[bytes]:
    """The header names a C{Connection} header declares hop-by-hop."""
    if not values:
        return frozenset()
    return frozenset(t.strip().lower() for v in values for t in v.split(b","))


@dataclass
class UpstreamError(Exception):
    """Why an upstream call failed, in words fit for a client and a log."""

    kind: str
    message: str
    retryable: bool

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _reasons(failure: Failure) -> list[Failure]:
    reasons = getattr(failure.value, "reasons", None)
    return list(reasons) if reasons else [failure]


def _describe(failures: list[Failure]) -> str:
    return "; ".join(f.getErrorMessage() or f.type.__name__ for f in failures)


def describe_failure(failure: Failure) -> str:
    """Words for a failure, looking inside Twisted's wrapper exceptions."""
    return _describe(_reasons(failure))


def classify(failure: Failure) -> UpstreamError:
    """Turn the failure of one upstream attempt into an L{UpstreamError}.

    Retryable, as the spec's error table says: refused or failed connections,
    timeouts waiting for the upstream, and a connection lost before or while
    the response came (including a stale pooled keep-alive connection).
    """
    if failure.check(UpstreamError):
        return failure.value
    if failure.check(ProxyConnectError):
        return UpstreamError("proxy_error", failure.getErrorMessage(), True)
    if failure.check(defer.TimeoutError):
        return UpstreamError("read_timeout", "timed out waiting for the upstream", True)
    if failure.check(error.TimeoutError, error.TCPTimedOutError):
        return UpstreamError("connect_timeout", "timed out connecting to the upstream", True)
    if failure.check(error.ConnectError, error.DNSLookupError):
        return UpstreamError("connect_error", failure.getErrorMessage(), True)
    if failure.check(ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed):
        reasons = _reasons(failure)
        if any(r.check(SSL.Error, VerificationError) for r in reasons):
            return UpstreamError("tls_error", _describe(reasons), False)
        proxy_refusal = [r for r in reasons if r.check(ProxyConnectError)]
        if proxy_refusal:
            return UpstreamError("proxy_error", proxy_refusal[0].getErrorMessage(), True)
        kind = "connection_lost"
        if any(r.check(error.ConnectionLost, error.ConnectionDone) is None for r in reasons):
            kind = "protocol_error"
        return UpstreamError(kind, _describe(reasons), True)
    return UpstreamError("request_error", failure.getErrorMessage(), False)


class RetryingCall:
    """Run C{attempt} until it succeeds, retrying retryable failures with backoff.

    C{result} fires with the first successful attempt's value, or fails with
    the last L{UpstreamError}.  Cancelling C{result} cancels whatever is in
    flight: the attempt (closing its connection) or the backoff wait.
    """

    def __init__(
        self,
        attempt: Callable[[], Deferred[Any]],
        clock: IReactorTime,
        max_retries: int,
        backoff_sec: float,
        on_retry: Callable[[int, float, UpstreamError], None],
    ) -> None:
        self._attempt_fn = attempt
        self._clock = clock
        self._max_retries = max_retries
        self._backoff_sec = backoff_sec
        self._on_retry = on_retry
        self._retries = 0
        self._current: Optional[Deferred[Any]] = None
        self._cancelled = False
        self.result: Deferred[Any] = Deferred(self._cancel)

    def start(self) -> Deferred[Any]:
        """Make the first attempt; return L{result}."""
        self._attempt()
        return self.result

    def _attempt(self) -> None:
        self._current = defer.maybeDeferred(self._attempt_fn)
        self._current.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, value: Any) -> None:
        self._current = None
        self.result.callback(value)

    def _failed(self, failure: Failure) -> None:
        self._current = None
        if self._cancelled:
            return
        problem = classify(failure)
        if not problem.retryable or self._retries >= self._max_retries:
            self.result.errback(problem)
            return
        delay = self._backoff_sec * 2**self._retries
        self._retries += 1
        self._on_retry(self._retries, delay, problem)
        self._current = task.deferLater(self._clock, delay, self._attempt)
        self._current.addErrback(lambda f: f.trap(defer.CancelledError))

    def _cancel(self, _: Deferred[Any]) -> None:
        self._cancelled = True
        if self._current is not None:
            self._current.cancel()


def _timed_out(result: Any, timeout: float) -> Failure:
    """What an attempt cancelled by its timeout fails with, whatever layer
    (connecting, sending, waiting) the cancellation interrupted."""
    return Failure(
        UpstreamError("read_timeout", f"no response from the upstream within {timeout:g} s", True)
    )


def join_url(base_url: str, path: str, query: bytes = b"") -> bytes:
    """C{base_url} + C{path} (+ C{?query}), with exactly one slash between."""
    url = base_url.rstrip("/") + "/" + path.lstrip("/")
    encoded = url.encode("ascii")
    return encoded + b"?" + query if query else encoded


class UpstreamClient:
    """Sends requests to the upstream with the subscription header injected."""

    def __init__(self, config: Config, reactor: Any, pool: Optional[ConnectionPool] = None) -> None:
        self.config = config
        self.clock: IReactorTime = reactor
        self._reactor = reactor
        base = urlsplit(config.base_url)
        self._scheme = base.scheme.encode("ascii")
        self._hostname = base.hostname or ""
        default_port = 443 if base.scheme == "https" else 80
        self._port = base.port or default_port
        host = self._hostname.encode("idna")
        if ":" in self._hostname:
            host = b"[" + host + b"]"
        self._host_header = host if self._port == default_port else host + b":%d" % self._port
        self._base_path = base.path.rstrip("/").encode("ascii")
        self._trust = trust_root(config.ca_bundle, config.ssl_cert_file)
        self._proxy: Optional[ForwardProxy] = None
        if config.https_proxy and not bypasses_proxy(self._hostname, self._port, config.no_proxy):
            self._proxy = ForwardProxy(config.https_proxy)
        self._drop = _NOT_FORWARDED
        self._inject: list[tuple[bytes, bytes]] = []
        if config.subscription_name:
            name = config.subscription_name.encode("latin-1")
            self._drop = _NOT_FORWARDED | {name.lower()}
            self._inject = [(name, config.api_key.encode("latin-1"))]
        # Through a forward proxy a plain http request names the whole URL
        # (and carries the proxy's credentials); https goes through CONNECT.
        self._target_prefix = b""
        if self._proxy is not None and self._scheme == b"http":
            self._target_prefix = self._scheme + b"://" + self._host_header
            if self._proxy.authorization is not None:
                self._inject.append((b"Proxy-Authorization", self._proxy.authorization))
        self._key: tuple[Any, ...] = (self._scheme, self._hostname, self._port, config.https_proxy)
        self._pool = pool if pool is not None else ConnectionPool(reactor, self._endpoint_for)

    @property
    def via_proxy(self) -> Optional[str]:
        """The forward proxy in use (credentials removed), or None when direct."""
        return self._proxy.display if self._proxy is not None else None

    def _endpoint_for(self, key: tuple[Any, ...]) -> IStreamClientEndpoint:
        """How to reach the upstream: directly or via HTTPS_PROXY, with TLS
        to the origin for https (through the CONNECT tunnel when proxied)."""
        timeout = self.config.request_timeout
        endpoint: IStreamClientEndpoint
        if self._proxy is None:
            endpoint = HostnameEndpoint(self._reactor, self._hostname, self._port, timeout=timeout)
        else:
            proxy = self._proxy
            to_proxy: IStreamClientEndpoint = HostnameEndpoint(
                self._reactor, proxy.host, proxy.port, timeout=timeout
            )
            if proxy.tls:
                to_proxy = wrapClientTLS(client_tls(proxy.host, self._trust), to_proxy)
            if self._scheme == b"https":
                endpoint = ConnectTunnelEndpoint(to_proxy, proxy, self._hostname, self._port)
            else:
                endpoint = ProxyEndpoint(to_proxy, proxy)
        if self._scheme == b"https":
            endpoint = wrapClientTLS(client_tls(self._hostname, self._trust), endpoint)
        return endpoint

    def url_for(self, path: str, query: bytes = b"") -> str:
        """The full upstream URL for a proxy C{path} and the client's C{query},
        without any credentials of the base URL: fit for a log."""
        return join_url(self.config.upstream_display, path, query).decode("ascii")

    def target_for(self, path: str, query: bytes = b"") -> bytes:
        """The request target sent upstream: base path + C{path} (+ C{?query})."""
        target = self._target_prefix + self._base_path + b"/" + path.lstrip("/").encode("ascii")
        return target + b"?" + query if query else target

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
        target: bytes,
        headers: Headers,
        body: RequestBody,
        on_retry: Callable[[int, float, UpstreamError], None],
        read: Optional[Callable[[UpstreamResponse], Any]] = None,
    ) -> Deferred[Any]:
        """Send one request with retries; fire with the response (or with
        C{read(response)} when given, so that reading the body is retried too).

        Each attempt must bring the response headers within REQUEST_TIMEOUT.
        """
        timeout = self.config.request_timeout
        head = serialize_head(method, target, self._host_header, headers, body_length(body))

        def attempt() -> Deferred[Any]:
            d = self._pool.request(self._key, head, body, method == b"HEAD")
            d.addTimeout(timeout, self.clock, onTimeoutCancel=_timed_out)
            if read is not None:
                d.addCallback(read)
            return d

        retrying = RetryingCall(
            attempt,
            self.clock,
            self.config.max_retries,
            self.config.retry_backoff_sec,
            on_retry,
        )
        return retrying.start()

    def close(self) -> Deferred[None]:
        """Close pooled connections (called when the service stops)."""
        return self._pool.close()
