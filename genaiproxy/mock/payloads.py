"""What the mock upstream answers with: OpenAI-shaped objects built from a
request's JSON (completions, Responses API events, embeddings) and the
400 its controls raise.  No HTTP here: the resource in
L{genaiproxy.mock.server} writes these out.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import struct
from typing import Any

MODEL_IDS = ("gpt-4.1", "gpt-5")
DEFAULT_MODEL = MODEL_IDS[0]
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
EMBEDDING_DIMENSIONS = 8
MAX_EMBEDDING_DIMENSIONS = 4096
_WORD = re.compile(r"\s*\S+\s*")


class BadRequest(Exception):
    """A client error to report as a 400 OpenAI error."""


def split_reply(reply: str, pieces: int) -> list[str]:
    """Cut ``reply`` into ``pieces`` word-ish stream deltas.

    With no more pieces than words the deltas join back to exactly the
    reply; with more, the words repeat (space-separated) so that every event
    still carries some content.
    """
    if pieces <= 0:
        return []
    words = _WORD.findall(reply)
    if not words:
        return [reply] + [""] * (pieces - 1)
    if pieces <= len(words):
        size, extra = divmod(len(words), pieces)
        result, start = [], 0
        for index in range(pieces):
            end = start + size + (1 if index < extra else 0)
            result.append("".join(words[start:end]))
            start = end
        return result
    bare = [word.strip() for word in words]
    return [
        bare[index % len(bare)] + ("" if index == pieces - 1 else " ")
        for index in range(pieces)
    ]


def json_object(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("Request body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("Request body must be a JSON object")
    return payload


def requested_model(payload: dict[str, Any], default: str) -> str:
    """The requested model, echoed back as real upstreams do."""
    model = payload.get("model")
    return model if isinstance(model, str) else default


def include_usage(payload: dict[str, Any]) -> bool:
    """Whether a chat or legacy stream should end with a usage chunk."""
    options = payload.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def count_words(value: Any) -> int:
    """A rough "token" count: words in the strings of a prompt.

    Takes a plain string, a list of strings, or chat messages / Responses
    input items whose ``content``, ``text`` or ``output`` hold the text.
    """
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(count_words(item) for item in value)
    if isinstance(value, dict):
        return sum(count_words(value.get(key)) for key in ("content", "text", "output"))
    return 0


def usage_for(prompt: Any, reply: str) -> dict[str, int]:
    """Chat/legacy usage: prompt and reply word counts."""
    prompt_tokens, completion_tokens = count_words(prompt), len(reply.split())
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def data_event(payload: dict[str, Any]) -> bytes:
    """One ``data:``-only SSE event (chat and legacy completions)."""
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def echoed(payload: dict[str, Any], name: str, kinds: tuple[type, ...], default: Any) -> Any:
    """A request field the Responses API echoes back, if of the right type
    (exact types, so that a bool is no number)."""
    value = payload.get(name)
    return value if type(value) in kinds else default


def response_object(
    payload: dict[str, Any], number: int, created: int, text: str
) -> dict[str, Any]:
    """A completed Responses API ``response`` holding one message of ``text``.

    Shaped like the real API's (the request's settings echoed, nulls where
    unused) so that the openai SDKs parse it and ``output_text`` is ``text``.
    """
    message = {
        "type": "message",
        "id": f"msg_mock_{number}",
        "status": "completed",
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        ],
    }
    input_tokens = count_words(payload.get("input")) + count_words(
        payload.get("instructions")
    )
    output_tokens = len(text.split())
    return {
        "id": f"resp_mock_{number}",
        "object": "response",
        "created_at": created,
        "status": "completed",
        "background": False,
        "completed_at": created,
        "error": None,
        "incomplete_details": None,
        "instructions": echoed(payload, "instructions", (str, list), None),
        "max_output_tokens": echoed(payload, "max_output_tokens", (int,), None),
        "model": requested_model(payload, DEFAULT_MODEL),
        "output": [message],
        "parallel_tool_calls": echoed(payload, "parallel_tool_calls", (bool,), True),
        "previous_response_id": echoed(payload, "previous_response_id", (str,), None),
        "reasoning": echoed(payload, "reasoning", (dict,), {"effort": None, "summary": None}),
        "service_tier": "default",
        "store": echoed(payload, "store", (bool,), True),
        "temperature": echoed(payload, "temperature", (int, float), 1.0),
        "text": echoed(payload, "text", (dict,), {"format": {"type": "text"}}),
        "tool_choice": echoed(payload, "tool_choice", (str, dict), "auto"),
        "tools": echoed(payload, "tools", (list,), []),
        "top_p": echoed(payload, "top_p", (int, float), 1.0),
        "truncation": echoed(payload, "truncation", (str,), "disabled"),
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
        "user": echoed(payload, "user", (str,), None),
        "metadata": echoed(payload, "metadata", (dict,), {}),
    }


def response_events(
    response: dict[str, Any], pieces: list[str]
) -> tuple[bytes, list[bytes], bytes]:
    """The Responses API stream of ``response``: head, deltas and tail.

    Each event is ``event: TYPE`` plus ``data: JSON`` carrying the same
    ``type`` and a ``sequence_number`` counting from 0.  The stream opens
    with the response ``in_progress`` and empty, adds the message and its
    text part, sends one ``response.output_text.delta`` per piece, closes the
    part and the message and ends with ``response.completed`` (no
    ``[DONE]``: the real API sends none).
    """
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": next(numbers), **fields}
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps(data).encode())

    message = response["output"][0]
    part = message["content"][0]
    pending = {
        **response,
        "status": "in_progress",
        "completed_at": None,
        "output": [],
        "usage": None,
    }
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    head = (
        event("response.created", response=pending)
        + event("response.in_progress", response=pending)
        + event(
            "response.output_item.added",
            output_index=0,
            item={**message, "status": "in_progress", "content": []},
        )
        + event("response.content_part.added", **where, part={**part, "text": ""})
    )
    chunks = [
        event("response.output_text.delta", **where, delta=piece, logprobs=[])
        for piece in pieces
    ]
    tail = (
        event("response.output_text.done", **where, text=part["text"], logprobs=[])
        + event("response.content_part.done", **where, part=part)
        + event("response.output_item.done", output_index=0, item=message)
        + event("response.completed", response=response)
    )
    return head, chunks, tail


def embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """The inputs of an embeddings request as (text to hash, token count).

    ``input`` may be a string, a list of strings, a token array or a list of
    token arrays (hashed as their JSON text).
    """
    if isinstance(value, str):
        return [(value, count_words(value))]
    if isinstance(value, list) and value:
        if all(isinstance(item, str) for item in value):
            return [(item, count_words(item)) for item in value]
        if all(type(item) is int for item in value):
            return [(json.dumps(value), len(value))]
        if all(
            isinstance(item, list) and item and all(type(token) is int for token in item)
            for item in value
        ):
            return [(json.dumps(item), len(item)) for item in value]
    raise BadRequest(
        "'input' must be a string, a list of strings or of token arrays, not empty"
    )


def embedding_vector(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic unit-length vector for ``text``, from its SHAKE-256.

    The values are exact float32 values, so the ``float`` encoding and the
    decoded ``base64`` one give equal lists.
    """
    raw = hashlib.shake_256(text.encode("utf-8", "surrogatepass")).digest(4 * dimensions)
    values = [number / 2**31 - 1.0 for number in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    packed = struct.pack(f"<{dimensions}f", *(value / norm for value in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


def pack_floats(vector: list[float]) -> str:
    """The ``base64`` embedding encoding: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
