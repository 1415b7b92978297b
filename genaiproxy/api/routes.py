"""How the requests of one kind of path are forwarded (L{Route}), and the
C{api-version} query parameter some gateways want on every call.

A request's kind is decided once, where the resource tree picks its
L{Route}: the route's flags say how it is forwarded, and its C{label} names
its kind wherever the kind matters (the metrics' C{route} label, whether its
answers carry usage).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = ["ROUTE_LABELS", "Route", "with_api_version"]

# The kinds of request, as the metrics label them: a fixed set, so that no
# path a client makes up adds a series.
ROUTE_LABELS = frozenset({"chat", "responses", "messages", "embeddings", "completions", "models",
                          "other"})


@dataclass(frozen=True)
class Route:
    """How the requests of one kind of path are forwarded."""

    # The request's kind (one of ROUTE_LABELS): the Responses API's routes
    # are "responses" whether they create a response or read one back.
    label: str = "other"
    # The token-limit field of a JSON API whose gpt-5 requests are normalised.
    token_field: str | None = None
    # An open health probe: neither the caller's query string nor its body go.
    bare: bool = False
    # Any other /v1 path: bodies may be large (streamed from the spooled
    # upload), and answers other than small JSON documents are pumped through.
    passthrough: bool = False
    # How a stream that breaks tells the client: a chat-style "data:" error,
    # or a Responses API "error" event.
    responses_events: bool = False
    # A streamed request may be made to ask for its usage (STREAM_USAGE).
    asks_usage: bool = False
    # Routed by the body's "model" (models.yaml's upstreams, aliases and
    # fallbacks); other requests go to the default upstream.
    by_model: bool = False
    # An API the proxy answers through the upstream's chat completions when
    # the upstream does not serve it: "responses" (RESPONSES_API) or
    # "messages" (MESSAGES_API); "" for none.
    bridge: str = ""

    def __post_init__(self) -> None:
        if self.label not in ROUTE_LABELS:
            raise ValueError(f"unknown route label {self.label!r}: not one of {sorted(ROUTE_LABELS)}")


def with_api_version(query: bytes, api_version: str) -> bytes:
    """C{query} plus C{api-version=...} unless the client gave one."""
    if not api_version:
        return query
    if any(pair.split(b"=", 1)[0] == b"api-version" for pair in query.split(b"&")):
        return query
    extra = b"api-version=" + quote(api_version, safe="").encode("ascii")
    return query + b"&" + extra if query else extra
