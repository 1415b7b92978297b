"""The resource tree: which path does what.

    /                       metadata (name, version, upstream)
    /health                 probe of the upstream root          public
    /livez                  liveness, no upstream call          public
    /readyz                 readiness: 503 while stopping       public
    /metrics                Prometheus metrics
    /status                 the metrics as an HTML page         public with STATUS_PUBLIC
    /v1/health              forwarded to the upstream           public
    /v1/models[/{id}]       local, from models.yaml
    /v1/chat/completions    forwarded, gpt-5 normalised, streams
    /v1/responses           forwarded, gpt-5 normalised, streams (or bridged to chat)
    /v1/messages[/count_tokens]  the Anthropic Messages API (genaiproxy.server.messages)
    /v1/... anything else   forwarded as it is (any method)

Unknown paths outside /v1 answer 404 and unsupported methods 405, both as
OpenAI-style JSON errors.  A resource marked C{public} needs no bearer token.
"""

from __future__ import annotations

import time
from dataclasses import replace
from urllib.parse import unquote_to_bytes

from twisted.web.resource import Resource
from twisted.web.server import Request

from genaiproxy import __version__
from genaiproxy.api import Route, set_json, set_json_error
from genaiproxy.config import DEFAULT_CLIENT, ModelCatalog, ModelsFileError
from genaiproxy.forwarding import Forwarder
from genaiproxy.observe import CONTENT_TYPE_LATEST, ProxyMetrics
from genaiproxy.server.site import ProxyRequest
from genaiproxy.server.status import limit_rows, summarize, upstream_states
from genaiproxy.server.status_page import CONTENT_SECURITY_POLICY, HTML_CONTENT_TYPE, render_html

NAME = "genai-proxy"


class JSONResource(Resource):
    """Base resource: JSON 404 below it, JSON 405 for methods it lacks.

    A trailing slash (C{/v1/models/}) names the same resource.  Unknown
    children go to C{below} when one is set (the passthrough under /v1),
    otherwise they are a 404.
    """

    public = False
    below: Resource | None = None

    def getChild(self, path: bytes, request: Request) -> Resource:
        if self.below is not None and path:
            return self.below
        if path == b"" and not request.postpath:
            return self
        return NotFound()

    def render(self, request: Request) -> object:
        """The answer's bytes, or C{NOT_DONE_YET} from a forwarding handler."""
        method = request.method.decode("ascii", "replace")
        # HEAD is GET without the body (twisted.web's Resource.render_HEAD
        # would call a render_GET that POST-only resources do not have).
        handler = getattr(self, "render_" + ("GET" if method == "HEAD" else method), None)
        if handler is None:
            allowed = sorted(
                {name[len("render_"):] for name in dir(self) if name.startswith("render_")}
                - {"HEAD"} | ({"HEAD"} if hasattr(self, "render_GET") else set())
            )
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            return set_json_error(
                request,
                405,
                f"Method {method} is not allowed on {request.path.decode('latin-1')}",
                "invalid_request_error",
                code="method_not_allowed",
            )
        return handler(request)


class NotFound(JSONResource):
    """404 for any path the proxy does not serve, whatever the method."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        return set_json_error(
            request,
            404,
            f"Unknown path: {request.path.decode('latin-1')}",
            "invalid_request_error",
            code="not_found",
        )


_PLAIN = Route()


class Forwarded(JSONResource):
    """A path whose requests go to the upstream C{upstream_path}."""

    def __init__(self, forwarder: Forwarder, upstream_path: str, methods: tuple[str, ...],
                 route: Route = _PLAIN, below: Resource | None = None) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._upstream_path = upstream_path
        self._route = route
        self.below = below  # paths below this one (/v1/responses/{id}), if given
        self.public = route.bare  # open probes are the only public forwards
        for method in methods:
            setattr(self, "render_" + method, self._forward)

    def _forward(self, request: Request) -> object:
        return self._forwarder.forward(request, self._upstream_path, self._route)


_PASSTHROUGH = Route(passthrough=True)
# A stored response read back (/v1/responses/{id}...): the Responses API's kind.
_RESPONSES_PASSTHROUGH = Route(label="responses", passthrough=True)
# The other JSON APIs whose requests name a model: routed by it.
_BY_MODEL = {"/v1/embeddings": Route(label="embeddings", passthrough=True, by_model=True),
             "/v1/completions": Route(label="completions", passthrough=True, by_model=True)}


def _passthrough_route(path: str) -> Route:
    """The route of a path under /v1 that has no resource of its own."""
    if path in _BY_MODEL:
        return _BY_MODEL[path]
    return _RESPONSES_PASSTHROUGH if path.startswith("/v1/responses/") else _PASSTHROUGH


class Passthrough(JSONResource):
    """Any other path under /v1 (embeddings, audio, files, responses/{id}, ...):
    forwarded with its method, query string and body as they are."""

    isLeaf = True

    def __init__(self, forwarder: Forwarder) -> None:
        super().__init__()
        self._forwarder = forwarder

    def render(self, request: Request) -> object:
        if not request.path.isascii():
            return set_json_error(
                request, 400, "The request path must be ASCII: percent-encode other bytes",
                "invalid_request_error", code="invalid_path")
        segments = request.path.split(b"?", 1)[0].split(b"/")[1:]
        # A segment's ";parameters" are dropped by Twisted's Agent when empty
        # ("..;" would go upstream as ".."): judge each segment without them.
        decoded = {unquote_to_bytes(segment).split(b";", 1)[0] for segment in segments[1:]}
        if decoded & {b".", b"..", b""} or any(b"/" in d for d in decoded):
            # Dot segments or encoded slashes could reach beyond /v1 upstream.
            return NotFound().render(request)
        path = request.path.decode("ascii")
        return self._forwarder.forward(request, path, _passthrough_route(path))


def _catalog_error(request: ProxyRequest, catalog: ModelCatalog, problem: ModelsFileError) -> bytes:
    return set_json_error(
        request, 500, f"the models file {catalog.path} could not be loaded: {problem}", "proxy_error",
        request_id=request.request_id,
    )


def _allowed(request: Request, catalog: ModelCatalog) -> frozenset[str] | None:
    """The models the request's client may use (models.yaml's C{limits:}),
    or None: any."""
    return catalog.limits.of(getattr(request, "client_name", "") or DEFAULT_CLIENT).models


class Models(JSONResource):
    """GET /v1/models, answered from models.yaml without calling the upstream
    (only the client's models, when C{limits:} lists them)."""

    def __init__(self, catalog: ModelCatalog) -> None:
        super().__init__()
        self._catalog = catalog

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not request.postpath:
            return self
        # Model ids may hold slashes ("org/model"): the rest of the path is the id.
        assert request.postpath is not None  # set before the traversal began
        model_id = b"/".join([path, *request.postpath])
        request.postpath = []
        return Model(self._catalog, model_id.decode("utf-8", "replace"))

    def render_GET(self, request: ProxyRequest) -> bytes:
        try:
            models = self._catalog.models()
        except ModelsFileError as e:
            return _catalog_error(request, self._catalog, e)
        allowed = _allowed(request, self._catalog)
        if allowed is not None:
            models = [model for model in models if model["id"] in allowed]
        return set_json(request, {"object": "list", "data": models})


class Model(JSONResource):
    """GET /v1/models/{id}: one model from models.yaml, or a 404 as OpenAI answers it."""

    isLeaf = True

    def __init__(self, catalog: ModelCatalog, model_id: str) -> None:
        super().__init__()
        self._catalog = catalog
        self._model_id = model_id

    def render_GET(self, request: ProxyRequest) -> bytes:
        try:
            model = self._catalog.find(self._model_id)
        except ModelsFileError as e:
            return _catalog_error(request, self._catalog, e)
        allowed = _allowed(request, self._catalog)
        if model is not None and (allowed is None or model["id"] in allowed):
            return set_json(request, model)  # hidden ones too: they are routable
        return set_json_error(
            request, 404, f"The model '{self._model_id}' does not exist",
            "invalid_request_error", code="model_not_found", param="model",
        )


class Metadata(JSONResource):
    """GET /: who this is and where it forwards to (no secrets)."""

    def __init__(self, upstream_display: str, children: dict[bytes, Resource]) -> None:
        super().__init__()
        self._document = {"name": NAME, "version": __version__, "upstream": upstream_display}
        for name, child in children.items():
            self.putChild(name, child)

    def render_GET(self, request: Request) -> bytes:
        return set_json(request, self._document)


class Liveness(JSONResource):
    """GET /livez: the process is up and serving; asks nothing of the upstream
    (for container and orchestrator probes)."""

    public = True

    def render_GET(self, request: Request) -> bytes:
        return set_json(request, {"status": "ok"})


class Readiness(JSONResource):
    """GET /readyz: 200 while the proxy takes new work; 503 once a graceful
    stop began (so that a load balancer sends no more while streams in
    flight finish) and while models.yaml could never be loaded."""

    public = True

    def __init__(self, forwarder: Forwarder, catalog: ModelCatalog) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._catalog = catalog

    def render_GET(self, request: Request) -> bytes:
        if self._forwarder.draining:
            return set_json(request, {"status": "stopping"}, 503)
        if not self._catalog.usable:
            return set_json(request, {"status": "no models", "path": self._catalog.path}, 503)
        return set_json(request, {"status": "ready"})


class MetricsPage(JSONResource):
    """GET /metrics: Prometheus' text format (behind the token, like /v1)."""

    def __init__(self, metrics: ProxyMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        body = self._metrics.exposition()
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        request.setHeader(b"content-length", b"%d" % len(body))
        return body


class StatusPage(JSONResource):
    """GET /status: the metrics summed up as an HTML page that reloads itself,
    read from the same registry, with every upstream in service.  Behind the
    token like /metrics, unless C{public} (STATUS_PUBLIC): a browser cannot
    send a token, and the page holds no secret."""

    def __init__(self, forwarder: Forwarder, public: bool = False) -> None:
        super().__init__()
        self._forwarder = forwarder
        self.public = public

    def render_GET(self, request: Request) -> bytes:
        forwarder = self._forwarder
        summary = replace(summarize(forwarder.metrics.registry,
                                    upstream_states(forwarder.upstreams), time.time()),
                          limits=limit_rows(forwarder.limits))
        body = render_html(summary).encode("utf-8")
        request.setHeader(b"content-type", HTML_CONTENT_TYPE)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body


class Directory(JSONResource):
    """A path segment that only groups children; itself a 404."""

    def __init__(self, children: dict[bytes, Resource], below: Resource | None = None) -> None:
        super().__init__()
        self.below = below
        for name, child in children.items():
            self.putChild(name, child)

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)
