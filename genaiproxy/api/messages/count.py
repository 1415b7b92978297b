"""An estimate of a Messages request's input tokens, without the network.

C{POST /v1/messages/count_tokens} is answered by the proxy itself: the
upstream speaks chat completions, which has no such call, and the real
tokenizers are out of reach (tiktoken fetches its encodings at run time, and
the upstream's model may not be an OpenAI one at all).  Claude Code asks it
to decide when to compact a conversation, so the estimate errs on the high
side: compacting a little early costs a summary, too late costs a request
the upstream refuses.

The method (L{text_tokens}): a byte-pair tokenizer gives a common word one
token, a long or rare one several, and splits digits, punctuation and
non-Latin scripts finely.  So the text is cut into the pieces such a
tokenizer rarely merges across, and each piece counts one token: a run of
up to 8 lower-case letters (with a capital before it), or of up to 8
capitals; up to 3 digits; up to 2 punctuation marks; up to 2 characters of
the two-byte scripts (Latin accents, Greek, Cyrillic, Hebrew, Arabic...);
one character of the others (CJK, Hangul, symbols; an emoji); a line end;
a run of blanks.  A single space between words counts nothing.
L{count_tokens} adds what the chat format adds (a few tokens a message, a
tool or a tool call), and then a margin of L{MARGIN}, to stay above.

Measured offline against the tokenizers that ship inside npm packages
(OpenAI's C{o200k_base} and C{cl100k_base} from C{gpt-tokenizer} 4.0.0,
and Anthropic's legacy Claude tokenizer from C{@anthropic-ai/tokenizer}
0.0.4; the tokenizer of current Claude models is not published, and no
other could be downloaded here), the estimate with its margin, divided by
the real count, for whole texts (prose: Vim's tutor, which ships in each
language):

  ====================================  ======  ========  ======
  text                                  o200k   higher    legacy
                                                OpenAI    Claude
  ====================================  ======  ========  ======
  a Claude Code 2.1 request, as JSON    1.20    1.20      1.16
  - its system prompt                   1.22    1.21      1.13
  - its messages                        1.18    1.18      1.12
  - its tools' descriptions             1.20    1.20      1.14
  - its tools' input schemas            1.22    1.22      1.20
  this project's Python                 1.31    1.31      1.20
  this project's Markdown docs          1.19    1.19      1.11
  Vim tutor, English                    1.35    1.35      1.37
  Vim tutor, French                     1.36    1.24      1.20
  Vim tutor, German                     1.22    1.08      1.04
  Vim tutor, Japanese                   1.53    1.18      1.22
  Vim tutor, Chinese                    1.50    1.21      1.38
  Vim tutor, Korean                     1.52    1.12      1.05
  Vim tutor, Russian                    1.83    1.33      1.21
  Vim tutor, Greek                      1.47    0.71      0.61
  log lines with hex ids                1.11    1.11      1.07
  hex                                   1.05    1.05      1.03
  base64                                0.88    0.84      0.85
  ====================================  ======  ========  ======

The whole Claude Code request, counted by L{count_tokens}, is 1.17 times
its text's C{o200k_base} count (and more than what an OpenAI upstream
counts for it, which writes the tools more tightly than JSON).  Over
3,000-character pieces of the same texts the ratio spreads by about 0.1
either way.  It is low for Greek in C{cl100k_base} and the legacy Claude
tokenizer (which split it letter by letter) and for base64, which a
conversation rarely holds as text (an image counts L{IMAGE_TOKENS} whatever
its data).  Scanning costs about 65 ms a million characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["IMAGE_TOKENS", "MARGIN", "count_tokens", "text_tokens"]

IMAGE_TOKENS = 1600
"""What an image counts: the most Anthropic counts for one (it scales an
image down to about 1.15 megapixels, at 750 pixels a token), more than
OpenAI's 765 for a 1024 x 1024 image in high detail."""

MARGIN = 1.1
"""What the count is multiplied by, to err on the high side."""

# The chat format's own tokens: a message's role and delimiters, the
# answer's priming, a declared tool's wrapping, a call's or a result's id
# and wrapping.
MESSAGE_TOKENS = 4
REPLY_TOKENS = 3
TOOL_TOKENS = 8
CALL_TOKENS = 12

_PIECE = re.compile(
    r"[A-Z]?[a-z]{1,8}|[A-Z]{1,8}(?![a-z])|[0-9]{1,3}|[!-/:-@\[-`{-~]{1,2}"
    r"|[\u0080-\u07ff]{1,2}|[\u0800-\U0010ffff]|\n|[ \t]{2,}")
# A base64 document's data: a token for each this many characters.
_BASE64_PER_TOKEN = 3


def text_tokens(text: str) -> int:
    """The estimated tokens of C{text}: the pieces it is cut into."""
    return _PIECE.subn("", text)[1]  # counts without keeping the pieces


def _json_tokens(value: Any) -> int:
    """What a value counts as its JSON text (a tool's schema, a call's input,
    anything the estimate does not know)."""
    return text_tokens(json.dumps(value, ensure_ascii=False, default=str))


def _source_tokens(block: Mapping[str, Any]) -> int:
    """An image or a document: a fixed cost for an image, its text for a
    text document, its size for encoded data."""
    if block.get("type") == "image":
        return IMAGE_TOKENS
    source = block.get("source")
    if not isinstance(source, Mapping):
        return _json_tokens(block)
    data = source.get("data")
    if source.get("type") == "text" and isinstance(data, str):
        return text_tokens(data)
    if source.get("type") == "content":
        return _content_tokens(source.get("content"))
    if isinstance(data, str):
        return len(data) // _BASE64_PER_TOKEN + 1
    return IMAGE_TOKENS  # a URL or a file id: unknown, counted as a page's image


def _block_tokens(block: Any) -> int:
    if not isinstance(block, Mapping):
        return _json_tokens(block)
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind in ("thinking", "redacted_thinking"):
        return 0  # the bridge sends no thinking upstream
    if kind in ("image", "document"):
        return _source_tokens(block)
    if kind == "tool_use":
        return (CALL_TOKENS + text_tokens(str(block.get("name", "")))
                + _json_tokens(block.get("input", {})))
    if kind == "tool_result":
        return CALL_TOKENS + _content_tokens(block.get("content", ""))
    return _json_tokens(block)


def _content_tokens(content: Any) -> int:
    """A message's content, a system prompt or a tool result: a string or a
    list of blocks."""
    if isinstance(content, str):
        return text_tokens(content)
    if isinstance(content, list):
        return sum(_block_tokens(block) for block in content)
    return 0 if content is None else _json_tokens(content)


def _tool_tokens(tool: Any) -> int:
    if not isinstance(tool, Mapping):
        return _json_tokens(tool)
    if "input_schema" not in tool:  # a server tool: its declaration as it is
        return TOOL_TOKENS + _json_tokens(tool)
    return (TOOL_TOKENS + text_tokens(str(tool.get("name", "")))
            + text_tokens(str(tool.get("description", "")))
            + _json_tokens(tool.get("input_schema")))


def count_tokens(body: Mapping[str, Any]) -> int:
    """The estimated input tokens of a Messages request body: its system
    prompt, its messages (text, tool calls' inputs, tool results, images at
    L{IMAGE_TOKENS}; thinking counts nothing, as the bridge does not send it
    upstream) and its tools (names, descriptions, input schemas), with the
    chat format's tokens for each, and L{MARGIN}.  Never raises: a part it does not know
    counts as its JSON text."""
    total = REPLY_TOKENS
    system = body.get("system")
    if system:
        total += MESSAGE_TOKENS + _content_tokens(system)
    messages = body.get("messages")
    for message in messages if isinstance(messages, list) else ():
        if isinstance(message, Mapping):
            total += MESSAGE_TOKENS + _content_tokens(message.get("content"))
        else:
            total += MESSAGE_TOKENS + _json_tokens(message)
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        total += _tool_tokens(tool)
    return math.ceil(total * MARGIN)
