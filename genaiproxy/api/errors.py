"""OpenAI-style JSON error answers: C{{"error": {"message", "type", ...}}}.

Every error the proxy produces itself goes through here, so clients (the
openai SDKs, Open WebUI) always get JSON they can parse.
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


def json_bytes(document: Any) -> bytes:
    """Serialise C{document} compactly as UTF-8 JSON."""
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def set_json(request: IRequest, document: Any, status: int = 200) -> bytes:
    """Set C{status} and JSON headers on C{request}; return C{document}
    serialised, for the caller to write (or return from a C{render} method)."""
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
