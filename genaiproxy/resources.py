"""The resource tree: which path does what.

    /                       metadata (name, version, upstream)
    /health                 probe of the upstream root          public
    /v1/health              forwarded to the upstream           public
    /v1/models              local list from models.yaml
    /v1/chat/completions    forwarded, gpt-5 normalised, streams

Unknown paths answer 404 and unsupported methods 405, both as OpenAI-style
JSON errors.  A resource marked C{public} needs no bearer token.
"""

from __future__ import annotations


from twisted.web.resource import Resource
from twisted.web.server import Request

from . import __version__
from .errors import set_json, set_json_error
from .forward import Forwarder
from .models import ModelCatalog, ModelsFileError
from .normalize import CHAT_TOKEN_FIELD

NAME = "genai-proxy"


class JSONResource(Resource):
    """Base resource: JSON 404 below it, JSON 405 for methods it lacks.

    A trailing slash (C{/v1/models/}) names the same resource.
    """

    public = False

    def getChild(self, path: bytes, request: Request) -> Resource:
        if path == b"" and not request.postpath:
            return self
        return NotFound()

    def render(self, request: Request) -> bytes:
        method = request.method.decode("ascii", "replace")
        handler = getattr(self, "render_" + method, None)
        if handler is None and method == "HEAD":
            handler = getattr(self, "render_GET", None)
        if handler is None:
            allowed = sorted(
                name[len("render_"):] for name in dir(self) if name.startswith("render_")
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


class Forwarded(JSONResource):
    """A path whose requests go to the upstream C{upstream_path}."""

    def __init__(self, forwarder: Forwarder, upstream_path: str, methods: tuple[str, ...],
                 token_field: str | None = None, public: bool = False) -> None:
        super().__init__()
        self._forwarder = forwarder
        self._upstream_path = upstream_path
        self._token_field = token_field
        self.public = public
        for method in methods:
            setattr(self, "render_" + method, self._forward)

    def _forward(self, request: Request) -> object:
        # Open paths carry nothing of the caller's to the upstream but headers.
        return self._forwarder.forward(
            request, self._upstream_path, self._token_field, bare=self.public
        )


class Models(JSONResource):
    """GET /v1/models, answered from models.yaml without calling the upstream."""

    def __init__(self, catalog: ModelCatalog) -> None:
        super().__init__()
        self._catalog = catalog

    def render_GET(self, request: Request) -> bytes:
        try:
            models = self._catalog.models()
        except ModelsFileError as e:
            return set_json_error(
                request, 500, f"models.yaml could not be loaded: {e}", "proxy_error",
                request_id=request.request_id,
            )
        return set_json(request, {"object": "list", "data": models})


class Metadata(JSONResource):
    """GET /: who this is and where it forwards to (no secrets)."""

    def __init__(self, upstream_display: str, children: dict[bytes, Resource]) -> None:
        super().__init__()
        self._document = {"name": NAME, "version": __version__, "upstream": upstream_display}
        for name, child in children.items():
            self.putChild(name, child)

    def render_GET(self, request: Request) -> bytes:
        return set_json(request, self._document)


class Directory(JSONResource):
    """A path segment that only groups children (C{/v1}); itself a 404."""

    def __init__(self, children: dict[bytes, Resource]) -> None:
        super().__init__()
        for name, child in children.items():
            self.putChild(name, child)

    def render(self, request: Request) -> bytes:
        return NotFound().render(request)


def build_tree(forwarder: Forwarder, catalog: ModelCatalog) -> Resource:
    """The proxy's whole resource tree."""
    v1 = Directory(
        {
            b"health": Forwarded(forwarder, "/v1/health", ("GET",), public=True),
            b"models": Models(catalog),
            b"chat": Directory(
                {
                    b"completions": Forwarded(
                        forwarder, "/v1/chat/completions", ("POST",), CHAT_TOKEN_FIELD
                    ),
                }
            ),
        }
    )
    health = Forwarded(forwarder, "/", ("GET",), public=True)
    return Metadata(forwarder.config.upstream_display, {b"health": health, b"v1": v1})
