"""The answers of tests/unit/test_fuzz_site.py's exchanges, parsed from
raw HTTP/1.1 bytes as a client reads them, each checked well formed; and
HTTP's token characters.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

TCHAR = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits
_TOKEN_RE = re.compile(rb"[" + re.escape(TCHAR.encode()) + rb"]+")
_TARGET_RE = re.compile(rb"[\x21-\x7e]+")


# Answers as the client reads them.


@dataclass
class Answer:
    """One answer as the client read it (header names in lower case)."""

    status: int
    headers: dict[bytes, list[bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        values = self.headers.get(name)
        return values[-1] if values else None


class Incomplete(Exception):
    """The bytes so far end inside an answer."""


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """A chunked body at the start of C{data}: (body, what follows it)."""
    body, rest = b"", data
    while True:
        line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise Incomplete
        assert re.fullmatch(rb"[0-9a-fA-F]+", line), f"bad chunk size line {line!r}"
        size = int(line, 16)
        if size == 0:
            if not rest.startswith(b"\r\n"):
                raise Incomplete
            return body, rest[2:]
        if len(rest) < size + 2:
            raise Incomplete
        assert rest[size:size + 2] == b"\r\n", "chunk not followed by CRLF"
        body, rest = body + rest[:size], rest[size + 2:]


def _one_answer(data: bytes, head: bool, closed: bool) -> tuple[Answer, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        raise Incomplete
    status_line, *lines = data[:end].split(b"\r\n")
    rest = data[end + 4:]
    match = re.fullmatch(rb"HTTP/1\.[01] ([1-5][0-9][0-9]) [^\r\n\x00]*", status_line)
    assert match, f"malformed status line {status_line!r}"
    headers: dict[bytes, list[bytes]] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        assert sep and _TOKEN_RE.fullmatch(name), f"malformed header line {line!r}"
        assert not set(value) & set(b"\r\n\x00"), f"CR, LF or NUL in header {line!r}"
        headers.setdefault(name.lower(), []).append(value.strip(b" \t"))
    answer = Answer(int(match.group(1)), headers, b"")
    if answer.status < 200 or answer.status in (204, 304) or head:
        return answer, rest
    if b"chunked" in b",".join(headers.get(b"transfer-encoding", [])).lower():
        answer.body, rest = _dechunk(rest)
        return answer, rest
    lengths = headers.get(b"content-length")
    if lengths is None:
        assert closed, "an answer without length or chunks on a connection left open"
        return Answer(answer.status, headers, rest), b""
    assert len(lengths) == 1 and lengths[0].isdigit(), f"bad Content-Length {lengths!r}"
    size = int(lengths[0])
    if len(rest) < size:
        raise Incomplete
    answer.body = rest[:size]
    return answer, rest[size:]


def _all_answers(data: bytes, head: bool, closed: bool) -> list[Answer]:
    answers: list[Answer] = []
    while data:
        try:
            answer, data = _one_answer(data, head, closed)
        except Incomplete:
            raise AssertionError(f"an answer was cut short or never finished: {data[:300]!r}") from None
        if answer.status >= 200:
            answers.append(answer)
    return answers


def parse_answers(data: bytes, head: bool, closed: bool) -> list[Answer]:
    """Every complete answer (informational ones left out) in C{data}."""
    try:
        return _all_answers(data, head, closed)
    except AssertionError:
        if not head:
            raise
        # The channel's refusals (400, 414, 431, ...) are written before the
        # method is known: a HEAD request gets their body too.
        return _all_answers(data, False, closed)
