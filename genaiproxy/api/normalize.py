"""Request rewriting: the gpt-5 rules, and asking a chat stream for usage.

gpt-5 models reject C{max_tokens} and any C{temperature} other than 1, which
older clients still send.  A streamed chat reports its token usage only when
asked (C{stream_options.include_usage}); with STREAM_USAGE the proxy asks on
the client's behalf.  L{prepare_body} parses a JSON request once, applies
these rules, and re-serialises only when something changed: other requests
go upstream byte-for-byte as the client sent them.  A body that must be
rewritten for its route (a models.yaml alias, a token cap) but cannot be
written back as JSON raises L{UnwritableBody}, which the client gets as a 400.
"""

from __future__ import annotations

import json
import math
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


# The first bytes of a JSON text: an object, an array or whitespace, and
# the first bytes of the encodings json.loads reads besides UTF-8 (a BOM,
# UTF-16 and -32).  Any other body is not read at all.
_JSON_STARTS = frozenset(b"{[ \t\r\n\xef\xfe\xff\x00")


def parse_json(body: bytes) -> Any:
    """The JSON value in C{body}, or C{None} when it is empty or not JSON."""
    if not body or body[0] not in _JSON_STARTS:
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


class UnwritableBody(ValueError):
    """A request the proxy must rewrite to send it where its model is
    routed (under its C{upstream_model} name, or with its tokens capped),
    whose JSON it cannot write back: it holds a number beyond the range of
    a double (C{1e999}; or C{NaN}, C{Infinity}), which Python reads as a
    float that JSON cannot carry.  Sent as it came, it would reach the
    upstream under the client's name, or asking for more than the cap: the
    client gets a 400 C{invalid_request_error} instead.

    @ivar message: what the client is told, in OpenAI's error C{message}.
    @ivar param: where in the body the number is (C{messages[2].seed}).
    """

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


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


def apply_route(payload: dict[str, Any], token_field: str | None, model: str | None = None,
                cap: int | None = None) -> tuple[bool, bool, bool, bool]:
    """Make C{payload} fit the route it is sent on, in place: named C{model}
    when given (an alias, a fallback), under the gpt-5 rules when its model
    is of the family and C{token_field} names its API's token field, its
    token limits capped at C{cap}.  Says whether it was renamed, whether the
    model is gpt-5, and whether the rules and the cap changed it."""
    renamed = model is not None and payload.get("model") != model
    if renamed:
        payload["model"] = model
    gpt5 = token_field is not None and is_gpt5(payload.get("model"))
    # (gpt5 implies a token_field; said again for the type checker.)
    normalised = gpt5 and token_field is not None and normalize_gpt5(payload, token_field)
    return renamed, gpt5, normalised, cap_tokens(payload, cap)


_UNPARSED: Any = object()


def fields_copy(payload: Any) -> Any:
    """A parsed body that L{prepare_body} may rewrite while C{payload}
    stays as the client sent it: its rules set and drop top-level fields
    only, so a copy of the top level is enough (whatever is below is
    shared, and never changed)."""
    return dict(payload) if isinstance(payload, dict) else payload


def prepare_body(body: bytes, token_field: str | None,
                 stream_usage: bool = False, model: str | None = None,
                 cap: int | None = None, parsed: Any = _UNPARSED) -> PreparedBody:
    """Parse C{body}; when it asks for a gpt-5 model and C{token_field} names
    its API's token-limit field, normalise it (no field: never rewritten).
    With C{stream_usage}, a streamed request is made to ask for its usage.
    C{model}, when given, is the model name sent instead of the client's
    (an alias, or a fallback); the gpt-5 rules apply to it.  C{cap}, when
    given, is the most output tokens the model may be asked for (models.yaml's
    C{max_output_tokens}): a request asking for more is sent with the cap.
    C{parsed}, when given, is C{body} parsed already (L{parse_json}), which
    this may rewrite in place (see L{fields_copy}).

    @raise UnwritableBody: the body must be renamed or capped and cannot be
        written back as JSON.
    """
    payload = parse_json(body) if parsed is _UNPARSED else parsed
    if not isinstance(payload, dict):
        return PreparedBody(body, payload, stream=False, gpt5=False)
    stream = payload.get("stream") is True
    renamed, gpt5, normalised, capped = apply_route(payload, token_field, model, cap)
    changed = capped or normalised or renamed
    options = payload.get("stream_options")
    added = stream and stream_usage and ask_for_usage(payload)
    if changed or added:
        rewritten = _rewritten(payload)
        if rewritten is None:
            if renamed or capped:  # the route's promise, which only a rewrite keeps
                why = (f"it is sent upstream as model {model!r}" if renamed
                       else f"its output tokens are capped at {cap}")
                raise _unwritable(payload, why)
            # Only the gpt-5 rules or the usage question: as the client sent it.
            if added:
                if options is None:
                    del payload["stream_options"]
                else:
                    payload["stream_options"] = options
                added = False
        else:
            body = rewritten
    return PreparedBody(body, payload, stream=stream, gpt5=gpt5, usage_added=added)


def _rewritten(payload: dict[str, Any]) -> bytes | None:
    """C{payload} as compact JSON.  Text that UTF-8 cannot carry (a lone
    surrogate escape, half an emoji) stays escaped as it came; a number
    beyond a double (1e999, which Python reads as infinity and would write
    as the non-JSON C{Infinity}) cannot be written: None."""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("ascii")


def _unwritable(payload: dict[str, Any], why: str) -> UnwritableBody:
    """The refusal of C{payload}, which must be rewritten (C{why}), naming
    where its first number beyond a double is."""
    try:
        where = _non_finite_at(payload, "")
    except RecursionError:  # nested deeper than Python's stack: said without the place
        where = ""
    return UnwritableBody(
        f"The number at '{where}' is beyond the range of a double. The proxy must rewrite "
        f"this request ({why}) and cannot write that number back as JSON: send a number "
        "within range.", where or None)


def _non_finite_at(value: Any, path: str) -> str:
    """The path (C{messages[2].seed}) of the first number in C{value} that
    JSON cannot carry, or an empty string when there is none."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = _non_finite_at(item, f"{path}[{key}]" if isinstance(key, int)
                               else f"{path}.{key}" if path else str(key))
        if found:
            return found
    return ""
