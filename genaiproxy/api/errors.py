"""OpenAI-style JSON error answers: C{{"error": {"message", "type", ...}}}.

Every error the proxy produces itself goes through here, so clients (the
openai SDKs, Open WebUI) always get JSON they can parse.  A request of the
Anthropic Messages API (marked C{anthropic_errors} by the site) gets the same
errors in Anthropic's shape, C{{"type": "error", "error": {"type",
"message"}}}, with the type its status means (L{anthropic_error}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

JSON_TYPE = b"application/json"


def error_document(message: str, error_type: str, code: Any = None, **extra: Any) -> dict[str, Any]:
    """The C{{"error": ...}} object."""
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    error.update(extra)
    return {"error": error}


# Anthropic's error types by status; other 4xx are invalid requests, other
# 5xx API errors.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
    500: "api_error", 503: "overloaded_error", 529: "overloaded_error",
}


def anthropic_error_type(status: int) -> str:
    """The Anthropic error type of an answer with C{status}."""
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


def anthropic_error(status: int, document: Any) -> dict[str, Any]:
    """C{document}, an OpenAI-style error (or any error body), in Anthropic's
    shape for an answer with C{status}; its message is kept."""
    error = document.get("error") if isinstance(document, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        message = document.get("message") if isinstance(document, dict) else None
    if not isinstance(message, str) or not message:
        message = f"upstream answered with status {status}"
    return {"type": "error", "error": {"type": anthropic_error_type(status), "message": message}}


def json_bytes(document: Any) -> bytes:
    """Serialise C{document} compactly as UTF-8 JSON."""
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def set_json(request: IRequest, document: Any, status: int = 200) -> bytes:
    """Set C{status} and JSON headers on C{request}; return C{document}
    serialised, for the caller to write (or return from a C{render} method).
    An error for a request of the Messages API is written in its shape."""
    if status >= 400 and getattr(request, "anthropic_errors", False):
        document = anthropic_error(status, document)
    body = json_bytes(document)
    request.setResponseCode(status)
    request.setHeader(b"content-type", JSON_TYPE)
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def set_json_error(
    request: IRequest,
    status: int,
    message: str,
    error_type: str,
    code: Any = None,
    **extra: Any,
) -> bytes:
    """L{set_json} for an OpenAI-style error document."""
    return set_json(request, error_document(message, error_type, code, **extra), status)
