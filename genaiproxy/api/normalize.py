"""Request rewriting: the gpt-5 rules, and asking a chat stream for usage.

gpt-5 models reject C{max_tokens} and any C{temperature} other than 1, which
older clients still send.  A streamed chat reports its token usage only when
asked (C{stream_options.include_usage}); with STREAM_USAGE the proxy asks on
the client's behalf.  L{prepare_body} parses a JSON request once, applies
these rules, and re-serialises only when something changed: other requests
go upstream byte-for-byte as the client sent them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

GPT5_PREFIX = "gpt-5"

# The token-limit field each API wants, and the names clients use instead.
CHAT_TOKEN_FIELD = "max_completion_tokens"
RESPONSES_TOKEN_FIELD = "max_output_tokens"
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


@dataclass(frozen=True)
class PreparedBody:
    """A request body ready to go upstream, with what the proxy learnt from it."""

    body: bytes
    payload: Any  # the parsed JSON, or None when the body is not JSON
    stream: bool  # the client asked for a server-sent event stream
    gpt5: bool
    # The proxy asked for the stream's usage chunk, which the client did not.
    usage_added: bool = False


def parse_json(body: bytes) -> Any:
    """The JSON value in C{body}, or C{None} when it is empty or not JSON."""
    if not body or body[:1] not in b"{[ \t\r\n":
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # Not ours to judge: the body goes upstream as it is.
        return None


def is_gpt5(model: object) -> bool:
    """True for model ids of the gpt-5 family, in any letter case."""
    return isinstance(model, str) and model[:5].lower() == GPT5_PREFIX


def normalize_gpt5(payload: dict[str, Any], token_field: str) -> bool:
    """Apply the gpt-5 rules to C{payload} in place; return whether it changed.

    Other token-limit names move to C{token_field} when that one is absent
    (and are dropped when it is present), and C{temperature} becomes 1.
    """
    changed = False
    for name in _TOKEN_FIELDS:
        if name == token_field or name not in payload:
            continue
        value = payload.pop(name)
        changed = True
        if token_field not in payload:
            payload[token_field] = value
    temperature = payload.get("temperature")
    if temperature is not None and temperature != 1:
        payload["temperature"] = 1
        changed = True
    return changed


NO_BODY = PreparedBody(b"", None, stream=False, gpt5=False)


def ask_for_usage(payload: dict[str, Any]) -> bool:
    """Set C{stream_options.include_usage} unless the client set it (or sent
    C{stream_options} that is not an object); return whether it changed."""
    options = payload.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict) or options.get("include_usage") is True:
        return False
    payload["stream_options"] = {**options, "include_usage": True}
    return True


def cap_tokens(payload: dict[str, Any], cap: int | None) -> bool:
    """Lower each token-limit field of C{payload} (any API's) that asks for
    more than C{cap} to C{cap}; True when one was lowered."""
    capped = False
    if cap is not None:
        for name in _TOKEN_FIELDS:
            value = payload.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                payload[name] = cap
                capped = True
    return capped


def prepare_body(body: bytes, token_field: str | None,
                 stream_usage: bool = False, model: str | None = None,
                 cap: int | None = None) -> PreparedBody:
    """Parse C{body}; when it asks for a gpt-5 model and C{token_field} names
    its API's token-limit field, normalise it (no field: never rewritten).
    With C{stream_usage}, a streamed request is made to ask for its usage.
    C{model}, when given, is the model name sent instead of the client's
    (an alias, or a fallback); the gpt-5 rules apply to it.  C{cap}, when
    given, is the most output tokens the model may be asked for (models.yaml's
    C{max_output_tokens}): a request asking for more is sent with the cap."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        return PreparedBody(body, payload, stream=False, gpt5=False)
    stream = payload.get("stream") is True
    renamed = model is not None and payload.get("model") != model
    if renamed:
        payload["model"] = model
    gpt5 = token_field is not None and is_gpt5(payload.get("model"))
    # (gpt5 implies a token_field; said again for the type checker.)
    changed = gpt5 and token_field is not None and normalize_gpt5(payload, token_field)
    changed = cap_tokens(payload, cap) or changed or renamed
    options = payload.get("stream_options")
    added = stream and stream_usage and ask_for_usage(payload)
    if changed or added:
        rewritten = _rewritten(payload, body)
        if rewritten is body and added:  # could not be rewritten: as the client sent it
            if options is None:
                del payload["stream_options"]
            else:
                payload["stream_options"] = options
            added = False
        body = rewritten
    return PreparedBody(body, payload, stream=stream, gpt5=gpt5, usage_added=added)


def _rewritten(payload: dict[str, Any], original: bytes) -> bytes:
    """C{payload} as compact JSON.  Text that UTF-8 cannot carry (a lone
    surrogate escape, half an emoji) stays escaped as it came; a number
    beyond a double (1e999, which Python reads as infinity and would write
    as the non-JSON C{Infinity}) leaves the body as the client sent it."""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return original
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("ascii")
