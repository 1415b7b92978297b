"""Anthropic content blocks as chat completions content: text, images
as C{image_url} parts, and what a C{tool_result} holds (see
L{genaiproxy.api.messages.request} for the rules as a whole).

The block types, as the anthropic SDK (2.10, C{ContentBlockParam} and
C{ToolResultBlockParam}) declares them::

    {"type": "text", "text", "cache_control"?, "citations"?}
    {"type": "image", "source": {"type": "base64", "media_type", "data"}
                              | {"type": "url", "url"} | {"type": "file", "file_id"}}
    {"type": "document", "source": {"type": "base64" | "url" | "file" | "content", ...}
                                 | {"type": "text", "media_type": "text/plain", "data"},
     "title"?, "context"?}
    {"type": "search_result", "source", "title", "content": [text blocks]}
    {"type": "tool_reference", "tool_name"}        (in a tool_result)
    {"type": "browser_state", "tabs", ...}         (in a tool_result)

C{cache_control} and C{citations} mean nothing to a chat upstream: never sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genaiproxy.api.messages.request_error import MessagesRequestError

__all__ = ["IMAGE_MEDIA_TYPES", "JOIN", "ToolOutput", "block_type", "chat_content",
           "document_text", "image_part", "search_result_text", "text_of", "tool_output"]

# Between the texts of blocks sent as one string.
JOIN = "\n\n"
IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
# The tool message's content when a tool's output is images only.
_MEDIA_ONLY = "(The output is images, in the user message after the tool results.)"
# In a tool_result, not sent: the state of Anthropic's browser toolset,
# whose tools a chat upstream does not have.
_DROPPED_IN_RESULTS = frozenset({"browser_state"})


def block_type(block: object, where: str) -> str:
    """The C{type} of C{block}, which must be an object with one."""
    if not isinstance(block, Mapping):
        raise MessagesRequestError(f"{where}: a content block must be an object.")
    kind = block.get("type")
    if not isinstance(kind, str):
        raise MessagesRequestError(f"{where}.type: a content block needs a type (a string).")
    return kind


def text_of(block: Mapping[str, Any], where: str) -> str:
    """The text of a C{text} block."""
    text = block.get("text")
    if not isinstance(text, str):
        raise MessagesRequestError(f"{where}.text: a text block's text must be a string.")
    return text


def image_part(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An C{image_url} part: a base64 source as a C{data:} URL (media type
    and data checked, line breaks taken out, so that the URL is well
    formed), a URL as it is."""
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise MessagesRequestError(f"{where}.source: an image block needs a source (an object).")
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise MessagesRequestError(
                f"{where}.source.media_type: must be one of {', '.join(IMAGE_MEDIA_TYPES)}.")
        if not isinstance(data, str) or not data:
            raise MessagesRequestError(
                f"{where}.source.data: must be the image's bytes in base64 (a non-empty string).")
        # Base64 wrapped in lines (as MIME writes it) would break the URL.
        url = f"data:{media_type};base64,{''.join(data.split())}"
    elif kind == "url":
        given = source.get("url")
        if not isinstance(given, str) or not given:
            raise MessagesRequestError(f"{where}.source.url: must be a non-empty string.")
        url = given
    elif kind == "file":
        raise MessagesRequestError(
            f"{where}.source: a file source names a file stored with Anthropic's Files API, "
            "which a chat completions upstream cannot read: send the image as base64 or a URL.")
    else:
        raise MessagesRequestError(f"{where}.source.type: must be 'base64' or 'url'.")
    return {"type": "image_url", "image_url": {"url": url}}


def search_result_text(block: Mapping[str, Any], where: str) -> str:
    """A C{search_result} block as text: its title and source, then its text."""
    title, source, content = block.get("title"), block.get("source"), block.get("content")
    if not isinstance(title, str) or not isinstance(source, str):
        raise MessagesRequestError(
            f"{where}: a search_result block needs a title and a source (strings).")
    if not isinstance(content, list):
        raise MessagesRequestError(f"{where}.content: must be an array of text blocks.")
    texts = []
    for j, inner in enumerate(content):
        at = f"{where}.content.{j}"
        if block_type(inner, at) != "text":
            raise MessagesRequestError(f"{at}.type: a search_result holds text blocks only.")
        texts.append(text_of(inner, at))
    return JOIN.join([f"{title} ({source})", *texts])


def document_text(block: Mapping[str, Any], where: str) -> str:
    """A plain-text C{document} as text (with its title); any other
    document (a PDF, a file, a URL) gets a 400: a chat upstream cannot read it."""
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    if kind != "text" or not isinstance(source, Mapping):
        raise MessagesRequestError(
            f"{where}: a document block (a PDF, a file or a URL) cannot be sent to this "
            "upstream, which only speaks chat completions: send the document's text as a "
            "text block.")
    data = source.get("data")
    if not isinstance(data, str):
        raise MessagesRequestError(f"{where}.source.data: must be a string.")
    title = block.get("title")
    return JOIN.join([title, data]) if isinstance(title, str) and title else data


def chat_content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A user message's content: one string when it is all text (what every
    chat upstream takes), the parts in order when it holds an image."""
    if all(part["type"] == "text" for part in parts):
        return JOIN.join(part["text"] for part in parts)
    return parts


@dataclass
class ToolOutput:
    """What a C{tool_result} holds, as chat can carry it.

    @ivar text: the tool message's content.
    @ivar media: its images, for the user message after the tool messages
        (a chat tool message holds text only).
    @ivar dropped: the block types left out, once each.
    """

    text: str
    media: list[dict[str, Any]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def tool_output(content: object, is_error: bool, where: str) -> ToolOutput:
    """The chat form of a C{tool_result}'s C{content} (a string or blocks).
    An error (C{is_error}) is said in the text, which starts C{Error: }:
    a chat tool message has no error flag, and the model must know that
    the call failed."""
    output = ToolOutput("")
    if content is None or isinstance(content, str):
        output.text = content or ""
    elif isinstance(content, list):
        texts = []
        for j, block in enumerate(content):
            at = f"{where}.{j}"
            kind = block_type(block, at)
            if kind == "text":
                texts.append(text_of(block, at))
            elif kind == "image":
                output.media.append(image_part(block, at))
            elif kind == "search_result":
                texts.append(search_result_text(block, at))
            elif kind == "document":
                texts.append(_result_document_text(block, at, output))
            elif kind == "tool_reference":
                texts.append(_tool_reference_text(block, at))
            elif kind in _DROPPED_IN_RESULTS:
                if kind not in output.dropped:
                    output.dropped.append(kind)
            else:
                raise MessagesRequestError(
                    f"{at}.type: the block type {kind!r} cannot be in a tool_result.")
        output.text = JOIN.join(texts)
    else:
        raise MessagesRequestError(
            f"{where}: a tool_result's content must be a string or an array of blocks.")
    if output.media and not output.text:
        output.text = _MEDIA_ONLY
    if is_error:
        output.text = f"Error: {output.text}" if output.text else "Error."
    return output


def _result_document_text(block: Mapping[str, Any], where: str, output: ToolOutput) -> str:
    """A C{document} a tool returned, as text: its text when it is plain
    text; any other (the PDF that Claude Code's Read tool returns) a line
    saying it was left out, and said in C{output.dropped}.  A 400 here
    would fail every later turn too: the session keeps the result in its
    history."""
    source = block.get("source")
    if isinstance(source, Mapping) and source.get("type") == "text":
        return document_text(block, where)
    if "document" not in output.dropped:
        output.dropped.append("document")
    title = block.get("title")
    media = source.get("media_type") if isinstance(source, Mapping) else None
    named = f"the document {title!r}" if isinstance(title, str) and title else "a document"
    typed = f" ({media})" if isinstance(media, str) and media else ""
    return (f"[The tool returned {named}{typed}, left out: this model reads text and "
            "images only.]")


def _tool_reference_text(block: Mapping[str, Any], where: str) -> str:
    """A C{tool_reference} (a tool found by a tool search) as text.  Every
    declared tool is sent to a chat upstream, deferred or not, so the tool
    is there to call."""
    name = block.get("tool_name")
    if not isinstance(name, str) or not name:
        raise MessagesRequestError(f"{where}.tool_name: must be a non-empty string.")
    return f"Tool {name} loaded: it can be called now."
