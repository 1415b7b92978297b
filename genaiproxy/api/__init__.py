"""The OpenAI wire format, with no reactor and no I/O: error documents, the
gpt-5 rules and the rest of the request rewriting, token usage in answers,
the usage read from (and removed from) a server-sent event stream, and the
kinds of request path (L{Route}).  The Responses and Messages bridges'
translators land here too.
"""

from genaiproxy.api.errors import (
    anthropic_error,
    error_document,
    json_bytes,
    set_json,
    set_json_error,
)
from genaiproxy.api.normalize import (
    CHAT_TOKEN_FIELD,
    NO_BODY,
    RESPONSES_TOKEN_FIELD,
    PreparedBody,
    UnwritableBody,
    fields_copy,
    parse_json,
    prepare_body,
)
from genaiproxy.api.routes import ROUTE_LABELS, Route, with_api_version
from genaiproxy.api.stream_usage import UsageChunkRemover, UsageReader
from genaiproxy.api.usage import USAGE_ROUTES, json_object, usage_of

__all__ = [
    "CHAT_TOKEN_FIELD",
    "NO_BODY",
    "PreparedBody",
    "RESPONSES_TOKEN_FIELD",
    "ROUTE_LABELS",
    "Route",
    "USAGE_ROUTES",
    "UnwritableBody",
    "UsageChunkRemover",
    "UsageReader",
    "anthropic_error",
    "error_document",
    "fields_copy",
    "json_bytes",
    "json_object",
    "parse_json",
    "prepare_body",
    "set_json",
    "set_json_error",
    "usage_of",
    "with_api_version",
]
