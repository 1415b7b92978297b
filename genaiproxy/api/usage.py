"""Token usage as the upstream reports it in its answers.

The chat, completions and embeddings APIs report C{usage} with
C{prompt_tokens} / C{completion_tokens}; the Responses API with
C{input_tokens} / C{output_tokens}; both may detail cached input and
reasoning output.  L{usage_of} reads either into one shape, keyed by the
kinds the metrics count: input, output, cached, reasoning.
"""

from __future__ import annotations

import json
from typing import Any

# Routes whose JSON answers carry usage.
USAGE_ROUTES = frozenset({"chat", "responses", "messages", "completions", "embeddings"})


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_of(document: Any) -> dict[str, int] | None:
    """The token counts of an answer (or of a Responses API C{response}
    object), or None when it reports none."""
    if not isinstance(document, dict):
        return None
    usage = document.get("usage")
    if not isinstance(usage, dict):
        return None
    found: dict[str, int] = {}
    for kind, names in (("input", ("prompt_tokens", "input_tokens")),
                        ("output", ("completion_tokens", "output_tokens"))):
        for name in names:
            count = _count(usage.get(name))
            if count is not None:
                found[kind] = count
                break
    for kind, details, name in (
            ("cached", ("prompt_tokens_details", "input_tokens_details"), "cached_tokens"),
            ("reasoning", ("completion_tokens_details", "output_tokens_details"),
             "reasoning_tokens")):
        for detail in details:
            part = usage.get(detail)
            count = _count(part.get(name)) if isinstance(part, dict) else None
            if count is not None:
                found[kind] = count
                break
    return found or None


def json_object(body: bytes) -> dict[str, Any] | None:
    """A JSON answer's bytes as the object they hold, or None."""
    if body[:1] != b"{":
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None
