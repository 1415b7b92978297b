"""A body the proxy has already parsed goes into a JSON log line as the
text it is (L{genaiproxy.observe.CheckedJSON}), not parsed and encoded
again, and the line stays one line of ASCII that reads back as the body."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import LogLevel

from genaiproxy.api import prepare_body
from genaiproxy.observe import CheckedJSON, LinesObserver


class _Lines:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def _render(body: object) -> str:
    observer = LinesObserver(_Lines())
    return observer.render({"log_namespace": "genaiproxy.forward", "log_format": "request",
                            "log_time": 0.0, "id": "r1", "body": body})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_body_text_goes_into_the_line_as_it_is() -> None:
    """The body's own spelling (key order, no spaces) is in the line: it was
    not parsed and encoded again."""
    line = _render(CheckedJSON(b'{"model":"gpt-5","stream":true,"n":1}'))
    assert line.endswith(', "body": {"model":"gpt-5","stream":true,"n":1}}\n')
    record = json.loads(line)
    assert record["event"] == "request" and record["id"] == "r1"
    assert record["body"] == {"model": "gpt-5", "stream": True, "n": 1}


@given(_JSON, st.sampled_from([None, 2]), st.booleans())
def test_any_json_body_reads_back_from_one_ascii_line(value: Any, indent: int | None,
                                                      ascii_only: bool) -> None:
    """Whatever a client's JSON holds (line breaks between tokens, any
    character in its strings, astral ones included), the line is one line
    of ASCII and its C{body} is the client's value."""
    body = json.dumps({"v": value}, indent=indent, ensure_ascii=ascii_only).encode()
    line = _render(CheckedJSON(body))
    assert line.endswith("\n") and "\n" not in line[:-1] and "\r" not in line
    assert line.isascii()
    assert json.loads(line)["body"] == {"v": value}


def test_line_separators_in_strings_are_escaped() -> None:
    """U+2028, U+0085 and an emoji in a string are written as JSON escapes,
    so no reader splits the line at them."""
    body = '{"t":"a\u2028b\u0085c\U0001f600"}'.encode()
    line = _render(CheckedJSON(body))
    assert "\\u2028" in line and "\\u0085" in line and "\\ud83d\\ude00" in line
    assert json.loads(line)["body"] == {"t": "a\u2028b\u0085c\U0001f600"}


def test_utf16_body_is_parsed_for_the_line() -> None:
    """A UTF-16 JSON body (which json.loads reads) is not text to copy: it is
    parsed and encoded as before."""
    line = _render(CheckedJSON('{"a": "\u00e9"}'.encode("utf-16")))
    assert json.loads(line)["body"] == {"a": "\u00e9"}


def test_text_form_shows_the_parsed_body_when_debugging() -> None:
    """LOG_FORMAT=text reads the body as before (parsed, compact)."""
    observer = LinesObserver(_Lines(), text=True, level=LogLevel.debug)
    line = observer.render({"log_namespace": "genaiproxy.forward", "log_format": "request",
                            "log_time": 0.0, "body": CheckedJSON(b'{"a": [1, 2]}')})
    assert "body=" in line and '"a"' in line


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-32-le"])
def test_a_utf16_or_utf32_body_without_bom_never_reaches_the_line_raw(encoding: str) -> None:
    """JSON in little-endian UTF-16 or -32 without a BOM, which the proxy parses (json.loads
    reads it) and may log as it came: its ASCII is valid UTF-8 full of NULs
    and, with chosen characters, of line separators a reader splits on.  It
    is parsed and encoded for the line instead: one line, no control
    character, the client's value."""
    value = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "x\u1c41\u0b41y"}]}
    body = json.dumps(value, ensure_ascii=False).encode(encoding)
    prepared = prepare_body(body, None)
    assert prepared.payload == value  # the proxy does read it
    line = _render(CheckedJSON(body))
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", line[:-1])
    assert line.splitlines() == [line[:-1]]
    assert json.loads(line)["body"] == value
