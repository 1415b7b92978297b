"""The HTTP site: per-request id, bearer-token access, and CORS.

These apply to every path, so they sit where the Site resolves a request to
its resource, not in each resource.  The access decision is made on the
resource the path resolves to (its C{public} attribute), never on the raw path
text, so no spelling of a path can reach a guarded resource without the token.
The token is checked there and only there (L{ProxySite.getResourceFor}); a
public resource that shows more to a client with a valid one reads the
verdict from the request (L{ProxyRequest.authorized}).
"""

from __future__ import annotations

from typing import Any
from weakref import WeakSet

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import datetimeToString
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from genaiproxy import __version__
from genaiproxy.api import set_json_error
from genaiproxy.config import ClientTokens
from genaiproxy.server.channel import ClientLimits, ProxyChannel, TooLargeResource, new_request_id

log = Logger(namespace="genaiproxy.site")

SERVER_HEADER = b"genai-proxy/" + __version__.encode("ascii")
_MAX_REQUEST_ID = 128


class ProxyRequest(Request):
    """A request that carries its id, has no default content type (a
    passed-through answer must keep the upstream's, or none), and keeps
    of its body only what the channel's limit allows (twisted.web has
    none; L{ProxyChannel.body_received} decides)."""

    defaultContentType = None
    request_id: str = ""
    # Whether the request may use the guarded resources: it carries a valid
    # client token, or none is required (set by the site, which checks it).
    authorized = False
    # Set by the site for the Messages API: errors in Anthropic's shape.
    anthropic_errors = False
    # The name of the client whose token a guarded resource's request
    # carries ("" when none is required, and on a public resource).
    client_name: str = ""
    # Set by the channel: the body is over the limit and was not kept.
    too_large = False

    def process(self) -> None:
        """Find the resource and render it; C{*}, the target of C{OPTIONS *}
        only, is answered here, in JSON and with the proxy's headers
        (twisted.web answers it itself, before the site, with neither)."""
        if self.path != b"*":
            super().process()
            return
        self.site = self.channel.site  # type: ignore[attr-defined]  # (set by the site)
        self.setHeader(b"date", datetimeToString())
        tag(self)
        if self.method == b"OPTIONS":
            self.setHeader(b"content-length", b"0")
            self.finish()
            return
        self.setHeader(b"allow", b"OPTIONS")
        self.write(set_json_error(self, 405, "The request target * is only for OPTIONS",
                                  "invalid_request_error", code="method_not_allowed"))
        self.finish()

    def processingFailed(self, reason: Failure) -> Failure:
        """A bug of ours while answering: logged with its traceback, and a
        JSON 500 for the client (never Twisted's HTML page or a traceback)."""
        log.failure("unexpected error while answering", reason, id=self.request_id)
        if self.finished or getattr(self, "channel", None) is None:
            return reason
        if self.startedWriting:  # too late for a status: end what was started
            self.channel.loseConnection()
            return reason
        self.responseHeaders = Headers()
        tag(self)
        self.write(set_json_error(self, 500, "internal proxy error", "proxy_error",
                                  request_id=self.request_id))
        self.finish()
        return reason

    def handleContentChunk(self, data: bytes) -> None:
        # Once refused, the request may be answered and done with (its
        # channel gone) while the rest of the read is still being decoded.
        if not self.too_large and self.channel.body_received(  # type: ignore[attr-defined]
                self, len(data)):
            super().handleContentChunk(data)


def tag(request: ProxyRequest) -> None:
    """Give C{request} its id and the headers every answer carries."""
    if not request.request_id:
        request.request_id = request_id_for(request)
    request.setHeader(b"server", SERVER_HEADER)
    request.setHeader(b"x-request-id", request.request_id.encode("ascii"))


def request_id_for(request: Request) -> str:
    """The client's X-Request-ID when it is sane, else a new UUID."""
    given = request.getHeader(b"x-request-id")
    if given and len(given) <= _MAX_REQUEST_ID and given.isascii() and given.strip():
        text = given.decode("ascii").strip()
        if text.isprintable():
            return text
    return new_request_id()


class AccessPolicy:
    """The bearer-token check and the CORS origin list."""

    def __init__(self, tokens: ClientTokens, allowed_origins: tuple[str, ...]) -> None:
        self._tokens = tokens
        self._origins = frozenset(o.encode("utf-8") for o in allowed_origins)
        self.cors_enabled = bool(allowed_origins)

    def client_for(self, request: Request) -> str | None:
        """The name of the client C{request}'s bearer token belongs to; ""
        when no token is required; None when it presents no valid one."""
        if not self._tokens.enabled:
            return ""
        header = request.getHeader(b"authorization") or b""
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() == b"bearer":
            client = self._tokens.match(credentials.strip())
            if client is not None:
                return client
        # The Anthropic SDKs and Claude Code may send it as x-api-key instead
        # (with an apiKeyHelper, Claude Code sends both).
        api_key = request.getHeader(b"x-api-key")
        return self._tokens.match(api_key.strip()) if api_key else None

    def allowed_origin(self, request: Request) -> bytes | None:
        """The request's C{Origin} when CORS is on and it is allowed."""
        if not self.cors_enabled:
            return None
        origin = request.getHeader(b"origin")
        if origin is None:
            return None
        if origin.rstrip(b"/") in self._origins or b"*" in self._origins:
            return origin
        return None


_LOOPBACK_HOSTS = frozenset({b"localhost", b"127.0.0.1", b"[::1]"})


def is_loopback_origin(origin: bytes) -> bool:
    """An origin on this machine: http(s)://localhost, 127.0.0.1 or [::1], any port."""
    scheme, _, rest = origin.partition(b"://")
    if scheme not in (b"http", b"https"):
        return False
    host = rest.split(b"/", 1)[0]
    if not host.startswith(b"["):
        host = host.rsplit(b":", 1)[0]
    elif b"]:" in host:
        host = host.rsplit(b":", 1)[0]
    return host.lower() in _LOOPBACK_HOSTS


def is_preflight(request: Request) -> bool:
    """A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method."""
    return (
        request.method == b"OPTIONS"
        and request.getHeader(b"origin") is not None
        and request.getHeader(b"access-control-request-method") is not None
    )


class PreflightResource(Resource):
    """Answers a CORS preflight locally; the upstream never sees it."""

    isLeaf = True

    def __init__(self, origin: bytes | None) -> None:
        super().__init__()
        self._origin = origin

    def render(self, request: Request) -> bytes:
        if self._origin is None:
            return set_json_error(
                request, 400, "CORS origin not allowed", "invalid_request_error"
            )
        method = request.getHeader(b"access-control-request-method") or b""
        request.setHeader(
            b"access-control-allow-methods",
            b"DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT" + (b", " + method if method else b""),
        )
        wanted = request.getHeader(b"access-control-request-headers")
        if wanted:
            request.setHeader(b"access-control-allow-headers", wanted)
        request.setHeader(b"access-control-max-age", b"600")
        request.setResponseCode(204)
        return b""


class ForbiddenOriginResource(Resource):
    """The 403 answer for a browser page from an origin not allowed to use the proxy."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return set_json_error(
            request,
            403,
            "Requests from this browser origin are not allowed; add it to ALLOWED_ORIGINS",
            "invalid_request_error",
            code="origin_not_allowed",
        )


class BadTargetResource(Resource):
    """The 400 answer for a request target that is not a path (C{/...})."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return set_json_error(request, 400, "The request target must be a path starting with /",
                              "invalid_request_error", code="invalid_path")


class BadMethodResource(Resource):
    """The 400 answer for a method that is not in upper case (no method is)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return set_json_error(request, 400, "HTTP methods are upper case (GET, POST, ...)",
                              "invalid_request_error", code="invalid_method")


class UnauthorizedResource(Resource):
    """The 401 answer for a missing or wrong bearer token."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setHeader(b"www-authenticate", b'Bearer realm="genai-proxy"')
        return set_json_error(
            request,
            401,
            "Missing or invalid bearer token: send 'Authorization: Bearer <AUTH_TOKEN>'",
            "invalid_request_error",
            code="invalid_api_key",
        )


class _Refused(Protocol):
    """A connection past the limit: closed as soon as it is made."""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.abortConnection()  # type: ignore[attr-defined]


class ProxySite(Site):
    """A Site that tags each request with an id and applies access rules."""

    requestFactory = ProxyRequest
    # Plain HTTP/1.1 channels (Twisted's default wraps them to negotiate
    # HTTP/2, which needs the optional h2 package): their transports are
    # what a graceful stop closes.  (HTTPFactory types its protocol as that
    # wrapper only, though buildProtocol works with any HTTPChannel.)
    protocol = ProxyChannel  # type: ignore[assignment]
    noisy = False

    def __init__(self, resource: IResource, policy: AccessPolicy,
                 limits: ClientLimits | None = None) -> None:
        # Bodies are forwarded as they are, never parsed as HTML form
        # submissions (which would also hold big uploads in memory twice).
        super().__init__(resource, parsePOSTFormSubmission=False)
        self.policy = policy
        self.limits = limits or ClientLimits()
        # The channels' idle timer: between requests, the keep-alive limit.
        self.timeOut = self.limits.keepalive_timeout or None
        self._channels: WeakSet[Any] = WeakSet()
        self.open_connections = 0
        # Set when a graceful stop begins: answers then close their
        # connection, so that a keep-alive client reconnects elsewhere.
        self.draining = False
        self._refused_in_episode = 0

    def log(self, request: http.Request) -> None:
        """No access log: the forwarder logs each request as structured events."""

    def buildProtocol(self, addr: Any) -> Any:
        """A channel for a new connection; none (the connection is closed at
        once) past MAX_CLIENT_CONNECTIONS.  Twisted's
        LimitTotalConnectionsFactory would do the same by wrapping every
        protocol, which costs a call layer on each read and write."""
        cap = self.limits.max_connections
        if cap and self.open_connections >= cap:
            if not self._refused_in_episode:
                log.warn("client_connections_limit_reached", limit=cap)
            self._refused_in_episode += 1
            # Not None: a TLS listener would wrap None and fail on it.
            return _Refused()
        channel = super().buildProtocol(addr)
        channel.limits = self.limits
        self.open_connections += 1
        self._channels.add(channel)
        return channel

    def connection_closed(self) -> None:
        """A channel's connection ended; an episode over the connection limit
        ends (and is logged once) when the count is back under 90 % of it."""
        self.open_connections -= 1
        if self._refused_in_episode and self.open_connections <= self.limits.max_connections * 0.9:
            log.info("client_connections_limit_cleared", limit=self.limits.max_connections,
                     refused=self._refused_in_episode, open=self.open_connections)
            self._refused_in_episode = 0

    def close_connections(self, clock: IReactorTime, timeout: float = 5.0) -> Deferred[int]:
        """Close every client connection once what was written to it has gone
        out (so the end of a finished stream is not lost); connections still
        open after C{timeout} seconds are aborted.  Fires with how many were open."""
        open_now = [c for c in self._channels if c.transport is not None and c.transport.connected]
        for channel in open_now:
            channel.transport.loseConnection()
        deadline = clock.seconds() + timeout
        done: Deferred[int] = Deferred()

        def check() -> None:
            still = [c for c in open_now if c.transport.connected]
            if not still:
                done.callback(len(open_now))
            elif clock.seconds() >= deadline:
                for channel in still:
                    channel.transport.abortConnection()
                done.callback(len(open_now))
            else:
                clock.callLater(0.05, check)

        check()
        return done

    def getResourceFor(self, request: ProxyRequest) -> IResource:
        tag(request)
        if self.draining:
            request.channel.persistent = False
            request.setHeader(b"connection", b"close")
        if not request.path.startswith(b"/"):
            # twisted.web would route "xv1/.." by dropping its first byte.
            return BadTargetResource()
        if not request.method.isupper():
            # Methods are case-sensitive, and treq would send "delete" as DELETE.
            return BadMethodResource()
        origin = self.policy.allowed_origin(request)
        if self.policy.cors_enabled:
            request.setHeader(b"vary", b"Origin")
        if origin is not None:
            request.setHeader(b"access-control-allow-origin", origin)
            request.setHeader(b"access-control-allow-credentials", b"true")
            request.setHeader(
                b"access-control-expose-headers", b"X-Request-ID, X-Upstream-Status"
            )
        if self.policy.cors_enabled and is_preflight(request):
            return PreflightResource(origin)
        claimed = request.getHeader(b"origin")
        if claimed is not None and origin is None and not is_loopback_origin(claimed):
            # A web page from elsewhere (or a DNS-rebinding one posing as this
            # host): it must not spend the key, even with requests that need
            # no CORS preflight.
            return ForbiddenOriginResource()
        resource = super().getResourceFor(request)
        if getattr(resource, "anthropic", False):
            # The Messages API: its errors in Anthropic's shape, its id as it names it.
            request.anthropic_errors = True
            request.setHeader(b"request-id", request.request_id.encode("ascii"))
        client = self.policy.client_for(request)
        request.authorized = client is not None
        if not getattr(resource, "public", False):
            if client is None:
                return UnauthorizedResource()
            request.client_name = client
        if request.too_large:
            return TooLargeResource()
        return resource
