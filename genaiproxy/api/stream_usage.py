"""Token usage read from a server-sent event stream as it passes.

A chat or legacy completions stream reports usage in its last chunk (when
the request set C{stream_options.include_usage}); a Responses API stream in
its C{response.completed} event (or C{response.incomplete} / C{failed}).
L{UsageReader} sees each chunk after it went to the client and looks only at
lines that hold a C{"usage"} key with an object value, so that the usual
chunk costs one substring search.  Memory stays bounded whatever the
stream's size: an unfinished line is kept whole up to L{LINE_MAX} bytes;
past that only its head and its last L{TAIL_MAX} bytes are kept, which is
where a long C{response.completed} event carries its usage.

L{UsageChunkRemover} takes back what the proxy added when it asked for
usage on the client's behalf (C{STREAM_USAGE}): the usage chunk, and the
C{"usage": null} member the upstream then writes into every other chunk.
The usage chunk is known by what it carries (L{is_usage_chunk}), not by the
shape of its C{choices}, which gateways write differently.  The remover
parses that chunk (it must, to know it) and hands its usage to the stream's
L{UsageReader}, which then reads what the client got: the chunk is parsed
once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from genaiproxy.api.usage import usage_of

LINE_MAX = 64 * 1024
TAIL_MAX = 32 * 1024
_HEAD_MAX = 256
_USAGE_KEY = b'"usage"'
# A "usage" key whose value is an object (not null), as the upstream writes it.
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
_RESPONSES_ENDS = (b'"response.completed"', b'"response.incomplete"', b'"response.failed"')
_DECODER = json.JSONDecoder()


def _object_follows(data: bytes, key_at: int) -> bool:
    """Whether the C{"usage"} key at C{key_at} has an object for its value
    (a slice of a few bytes, not a regular expression: this runs on every
    chunk of a stream asked for usage, whose chunks all say "usage": null)."""
    after = data[key_at + len(_USAGE_KEY):key_at + len(_USAGE_KEY) + 8].lstrip()
    return after[:1] == b":" and after[1:].lstrip()[:1] == b"{"


def _json_of_line(line: bytes) -> Any:
    """The JSON value of an SSE C{data:} line, or None."""
    if not line.startswith(b"data:"):
        return None
    try:
        return json.loads(line[5:])
    except (ValueError, RecursionError):
        return None


def _carries_nothing(value: Any) -> bool:
    """Whether a chunk's member says nothing a client reads: null, an empty
    string, or a list or object of such (C{"delta": {}}, C{"content":
    null}, C{"tool_calls": []})."""
    if isinstance(value, dict):
        return all(_carries_nothing(member) for member in value.values())
    if isinstance(value, list):
        return all(_carries_nothing(member) for member in value)
    return value is None or value == ""


def is_usage_chunk(document: Any) -> bool:
    """Whether a chat (or legacy completions) chunk is the usage chunk: it
    carries a usage object, and its choices carry nothing (no content,
    role, tool call or finish reason), whatever their shape.

    OpenAI, Azure OpenAI, vLLM and Ollama send C{"choices": []}; the LiteLLM
    proxy C{[{"index": 0, "delta": {}}]}; others spell the same empty choice
    with null members.
    """
    if not isinstance(document, dict) or not isinstance(document.get("usage"), dict):
        return False
    choices = document.get("choices")
    if choices is None:
        return True
    if not isinstance(choices, list):
        return False
    return all(isinstance(choice, dict)
               and all(_carries_nothing(member) for name, member in choice.items()
                       if name != "index")
               for choice in choices)


class UsageReader:
    """Finds the usage a stream reports; C{usage} holds the last found.

    @ivar usage: the counts, as L{genaiproxy.api.usage.usage_of} gives them, or
        None while the stream has reported none.
    """

    # One lives as long as its stream (ten thousand at once).
    __slots__ = ("_head", "_line", "_long", "_responses_api", "usage")

    def __init__(self, responses_api: bool) -> None:
        self._responses_api = responses_api
        self.usage: dict[str, int] | None = None
        # The unfinished last line: kept whole while short, else head + tail.
        self._line = bytearray()
        self._head = b""
        self._long = False

    @property
    def held_bytes(self) -> int:
        """How much of an unfinished line is kept (at most L{LINE_MAX})."""
        return len(self._line) + len(self._head)

    def feed(self, data: bytes) -> None:
        """Read one chunk (never changed, never kept beyond a partial line)."""
        start = 0
        if self._line or self._long:
            newline = data.find(b"\n")
            if newline < 0:
                self._keep(data, 0, len(data))
                return
            self._keep(data, 0, newline)
            self._end_line()
            start = newline + 1
        last = data.rfind(b"\n", start)
        if last >= 0:
            found = data.find(_USAGE_KEY, start, last)
            while found >= 0:
                if not _object_follows(data, found):  # "usage": null
                    found = data.find(_USAGE_KEY, found + len(_USAGE_KEY), last)
                    continue
                line_start = data.rfind(b"\n", start, found) + 1 or start
                line_end = data.find(b"\n", found)
                self._consider(data[line_start:line_end])
                found = data.find(_USAGE_KEY, line_end, last)
            start = last + 1
        if start < len(data):
            self._keep(data, start, len(data))

    def take(self, document: dict[str, Any]) -> None:
        """Take the usage of a chat chunk parsed elsewhere (the usage chunk
        the L{UsageChunkRemover} took out of the stream)."""
        usage = usage_of(document)
        if usage is not None:
            self.usage = usage

    def _keep(self, data: bytes, start: int, end: int) -> None:
        """Add C{data[start:end]} to the unfinished line, within bounds."""
        self._line += memoryview(data)[start:end]
        if len(self._line) <= LINE_MAX and not self._long:
            return
        if not self._long:
            self._long = True
            self._head = bytes(self._line[:_HEAD_MAX])
        del self._line[:-TAIL_MAX]

    def _end_line(self) -> None:
        line = bytes(self._line)
        long, head = self._long, self._head
        self._line.clear()
        self._long, self._head = False, b""
        if long:
            self._consider_tail(head, line)
        elif _USAGE_KEY in line:
            self._consider(line)

    def _consider(self, line: bytes) -> None:
        """Take the usage of a whole line, if it reports one."""
        line = line.rstrip(b"\r")
        if _USAGE_OBJECT.search(line) is None:
            return
        document = _json_of_line(line)
        if not isinstance(document, dict):
            return
        if self._responses_api:
            if document.get("type") not in ("response.completed", "response.incomplete",
                                            "response.failed"):
                return
            document = document.get("response")
        usage = usage_of(document)
        if usage is not None:
            self.usage = usage

    def _consider_tail(self, head: bytes, tail: bytes) -> None:
        """Take the usage from the end of a line too long to keep whole: the
        last C{"usage": {...}} in it, when the line is one that reports it."""
        if not head.startswith(b"data:"):
            return
        # (The event's type leads its object as OpenAI writes it; a writer
        # that sorts keys puts it last.)
        if self._responses_api and not any(kind in head or kind in tail[-_HEAD_MAX:]
                                           for kind in _RESPONSES_ENDS):
            return
        matches = list(_USAGE_OBJECT.finditer(tail))
        if not matches:
            return
        text = tail[matches[-1].end() - 1:].decode("utf-8", "replace")
        try:
            value, _ = _DECODER.raw_decode(text)
        except (ValueError, RecursionError):
            return
        usage = usage_of({"usage": value})
        if usage is not None:
            self.usage = usage


# Where events end: a blank line, in any of the line endings SSE allows.
_EVENT_END = re.compile(rb"\r?\n\r?\n")
# The same, found with bytes methods (memchr-fast) on every chunk.
_ENDS = (b"\n\n", b"\r\n\r\n", b"\n\r\n")
# "usage": null as OpenAI (compact) and Python's json (spaced) write it.
_NULL_FORMS = (b',"usage":null', b', "usage": null')


def _last_event_end(data: bytes) -> int:
    """The offset just past the last blank line in C{data} (0: none)."""
    if data.endswith(b"\n\n"):  # the usual chunk: whole events
        return len(data)
    return max((data.rfind(end) + len(end) for end in _ENDS if end in data), default=0)


def _first_event_end(data: bytes) -> int:
    """The offset just past the first blank line in C{data} (0: none)."""
    return min((data.find(end) + len(end) for end in _ENDS if end in data), default=0)
# The member an upstream adds to every chunk once usage is asked for.
_NULL_USAGE = re.compile(rb',\s*"usage"\s*:\s*null(?=\s*[,}])|"usage"\s*:\s*null\s*,')
# An unfinished event longer than this cannot be the short usage chunk: it
# goes to the client as it comes.
HOLD_MAX = 16 * 1024


class UsageChunkRemover:
    """Removes from a chat stream what asking for usage added to it.

    Whole events go through at once; only the unfinished last event of a
    chunk waits for its end (a client cannot act on half an event anyway),
    and not beyond L{HOLD_MAX} bytes.  The usage of the chunk taken out goes
    to C{reader}, when given.
    """

    __slots__ = ("_held", "_passed_tail", "_passing", "_reader")

    def __init__(self, reader: UsageReader | None = None) -> None:
        self._reader = reader
        self._held = b""
        self._passing = False  # inside a long event sent as it comes
        self._passed_tail = b""  # its last bytes: a blank line may straddle chunks

    def feed(self, data: bytes) -> bytes:
        """The part of C{data} (with what was held) the client gets now."""
        out = b""
        if self._passing:
            tail = self._passed_tail
            end = _first_event_end(tail + data) - len(tail)
            if end <= 0:
                self._passed_tail = (tail + data[-3:])[-3:]
                return data
            self._passing, self._passed_tail = False, b""
            out, data = data[:end], data[end:]
        if self._held:
            data, self._held = self._held + data, b""
        cut = _last_event_end(data)
        if cut == len(data):  # the usual chunk: whole events, nothing to hold
            return out + self._clean(data) if out else self._clean(data)
        whole, rest = data[:cut], data[cut:]
        if whole:
            out += self._clean(whole)
        if len(rest) > HOLD_MAX:
            self._passing, self._passed_tail = True, rest[-3:]
            return out + rest
        self._held = rest
        return out

    def flush(self) -> bytes:
        """What is still held, at the clean end of the stream."""
        held, self._held = self._held, b""
        return self._clean(held) if held else b""

    def _clean(self, events: bytes) -> bytes:
        if _USAGE_KEY not in events:
            return events
        stripped = events.replace(_NULL_FORMS[0], b"").replace(_NULL_FORMS[1], b"")
        if _USAGE_KEY not in stripped:  # the usual chunk: only "usage": null
            return stripped
        # The usage chunk itself (or another spacing): event by event.
        kept = []
        start = 0
        for end in [*_EVENT_END.finditer(events), None]:
            stop = end.end() if end is not None else len(events)
            event = events[start:stop]
            start = stop
            if not event:
                continue
            if _USAGE_KEY not in event:
                kept.append(event)
                continue
            chunk = _usage_chunk_of(event)
            if chunk is None:
                kept.append(_NULL_USAGE.sub(b"", event))
            elif self._reader is not None:
                self._reader.take(chunk)
        return b"".join(kept)


def _usage_chunk_of(event: bytes) -> dict[str, Any] | None:
    """The usage chunk C{event} holds (parsed), or None for another event."""
    if _USAGE_OBJECT.search(event) is None:
        return None
    for line in event.splitlines():
        document = _json_of_line(line)
        if isinstance(document, dict):
            return document if is_usage_chunk(document) else None
    return None
