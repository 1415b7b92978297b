"""What the bridges' stream writers share: an upstream chat stream read as it
comes, and the client's events for it written as they are made.

A L{ChatStreamWriter} lives for one answer: it opens once (its API's first
events), is fed the upstream's bytes as they arrive (cut anywhere: a
L{ChatChunkReader} reads them), and ends once, cleanly (L{finish}) or not
(L{fail}); from then on it writes nothing more.  A subclass says what its
API's events are: L{_opening}, L{_read}, L{_end}, L{_failed}.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

from genaiproxy.api.chat_chunks import ChatChunkReader, ChatEvent

__all__ = ["TEXT", "ChatStreamWriter", "EventTemplate"]

TEXT = "\x00"
"""Where an L{EventTemplate}'s text goes, in the event it is made of."""
_TEXT_JSON = b'"\\u0000"'

EventTemplate = tuple[bytes, bytes]
"""An event's bytes before and after its one text value (L{TEXT}): made once
for the deltas of one block or item, so that each of them (a stream's most
frequent event) costs the encoding of its text only, not of the whole event."""


class ChatStreamWriter:
    """Writes the client API's events of one streamed chat answer.

    @ivar status: None while the answer goes on, then what it ended as.
    @ivar upstream_error: the error the upstream's own stream ended with
        (C{message} and C{code}), if it did.
    """

    # The failure a break is told as, when the caller names none.
    default_failure = "server_error"

    def __init__(self) -> None:
        self.status: str | None = None
        self.upstream_error: dict[str, str] | None = None
        self._reader = ChatChunkReader()
        self._out: list[bytes] = []
        self._started = False

    def start(self) -> bytes:
        """The API's opening events, once."""
        self._start()
        return self._flush()

    def feed(self, data: bytes) -> bytes:
        """The events that C{data}, the upstream's next bytes, completes."""
        if self.status is not None:
            return b""
        self._start()
        self._read(self._reader.feed(data))
        return self._flush()

    def finish(self) -> bytes:
        """The end, once the upstream's stream has ended cleanly."""
        if self.status is not None:
            return b""
        self._start()
        self._read(self._reader.finish())
        if self.status is None:
            self._end()
        return self._flush()

    def fail(self, message: str, kind: str | None = None) -> bytes:
        """The API's failure, when the upstream's stream broke (C{kind}: the
        API's error code or type; L{default_failure} when None)."""
        if self.status is not None:
            return b""
        self._start()
        self._failed(message, kind or self.default_failure)
        return self._flush()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._opening()

    def _flush(self) -> bytes:
        out, self._out = self._out, []
        return b"".join(out)

    def _write(self, kind: str, event: dict[str, Any]) -> None:
        """One server-sent event: C{event: kind} and its JSON."""
        self._out.append(_encoded(kind, event))

    def _write_text(self, template: EventTemplate, text: str) -> None:
        """The event of C{template} with C{text} in it (as L{_write} writes it)."""
        head, tail = template
        self._out.append(head + encode_basestring_ascii(text).encode() + tail)

    @staticmethod
    def _template(kind: str, event: dict[str, Any]) -> EventTemplate:
        """The template of C{event}, whose text is L{TEXT}."""
        head, tail = _encoded(kind, event).split(_TEXT_JSON)
        return head, tail

    # What a subclass says.

    def _opening(self) -> None:
        """Write the API's opening events."""
        raise NotImplementedError

    def _read(self, events: list[ChatEvent]) -> None:
        """Write what the upstream's next events mean: a chunk's
        (L{_chunk}), a comment passed on as one, the end of a whole answer,
        or the upstream's error (L{_upstream_error})."""
        for kind, value in events:
            if self.status is not None:
                return
            if kind == "chunk":
                self._chunk(value)
            elif kind == "comment":
                self._out.append(value + b"\n\n")
            elif kind == "done":
                self._end()
            else:
                message, code = value
                self.upstream_error = {"message": message, "code": code}
                self._upstream_error(message, code)

    def _chunk(self, chunk: dict[str, Any]) -> None:
        """Write what one chat chunk means."""
        raise NotImplementedError

    def _upstream_error(self, message: str, code: str) -> None:
        """The upstream's stream said it failed (C{code}: its error code)."""
        self._failed(message, code)

    def _end(self) -> None:
        """Write the end of a whole answer; set L{status}."""
        raise NotImplementedError

    def _failed(self, message: str, kind: str) -> None:
        """Write the end of a broken answer; set L{status}."""
        raise NotImplementedError


def _encoded(kind: str, event: dict[str, Any]) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (
        kind.encode(), json.dumps(event, separators=(",", ":")).encode())
