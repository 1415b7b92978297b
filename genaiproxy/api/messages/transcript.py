"""The C{messages} of a Messages request made chat completions
C{messages} (see L{genaiproxy.api.messages.request} for the rules as a
whole).

An Anthropic assistant turn holds its text and its C{tool_use} blocks; the
user turn after it holds a C{tool_result} for each, and may hold more
blocks (Claude Code adds text beside the results).  Chat completions wants
the calls as the assistant message's C{tool_calls}, a C{tool} message for
each right after that assistant message, and anything else the user said
in a user message after the tool messages.  L{messages_of} files each
result under the assistant message holding its call, however far down it
comes (a C{system} message may sit between them: Claude Code sends one
inside C{messages}), and puts the rest of the user turn where the turn was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from genaiproxy.api.chat_history import ChatHistory, ToolCall, Transcript
from genaiproxy.api.messages.blocks import (
    JOIN,
    block_type,
    chat_content,
    document_text,
    image_part,
    search_result_text,
    text_of,
    tool_output,
)
from genaiproxy.api.messages.request_error import MessagesRequestError

__all__ = ["DROPPED_BLOCKS", "SERVER_TOOL_BLOCKS", "Transcript", "messages_of"]

_ROLES = ("user", "assistant", "system")
# Thinking is the model's own, signed for Anthropic's models: meaningless to
# another model, and never sent.
_THINKING_BLOCKS = frozenset({"thinking", "redacted_thinking"})
# The record of a server tool's run at Anthropic: the tools are left out of
# a chat request, and their calls and results are not sent either.
SERVER_TOOL_BLOCKS = frozenset({
    "server_tool_use", "web_search_tool_result", "web_fetch_tool_result",
    "code_execution_tool_result", "bash_code_execution_tool_result",
    "text_editor_code_execution_tool_result", "tool_search_tool_result",
    "container_upload", "mcp_tool_use", "mcp_tool_result",
})
DROPPED_BLOCKS = _THINKING_BLOCKS | SERVER_TOOL_BLOCKS
# The first words of the system block Claude Code names its version in for
# Anthropic's billing (see system_text).
BILLING_HEADER = "x-anthropic-billing-header:"
# Blocks a user turn may hold besides its tool results.
_USER_CONTENT = ("text", "image", "search_result", "document")


def messages_of(messages: object) -> Transcript:
    """The chat messages for a Messages request's C{messages}.

    @raise MessagesRequestError: for messages a chat upstream cannot take.
    """
    if not isinstance(messages, list):
        raise MessagesRequestError("messages: must be an array of messages.")
    if not messages:
        raise MessagesRequestError("messages: at least one message is required.")
    builder = _Builder()
    for i, message in enumerate(messages):
        builder.add(message, f"messages.{i}")
    return builder.finish()


class _Builder(ChatHistory):
    """The messages as the turns come; tool messages filed under their calls."""

    def add(self, message: object, where: str) -> None:
        if not isinstance(message, Mapping):
            raise MessagesRequestError(f"{where}: a message must be an object.")
        role = message.get("role")
        if role not in _ROLES:
            raise MessagesRequestError(
                f"{where}.role: must be 'user', 'assistant' or 'system'.")
        content = message.get("content")
        if isinstance(content, str):
            self.messages.append({"role": role, "content": content})
        elif isinstance(content, list):
            if role == "system":
                self._system(content, f"{where}.content")
            elif role == "assistant":
                self._assistant(content, f"{where}.content")
            else:
                self._user(content, f"{where}.content")
        else:
            raise MessagesRequestError(
                f"{where}.content: must be a string or an array of content blocks.")

    def _system(self, blocks: list[Any], where: str) -> None:
        """A system message where it is, its text blocks joined."""
        self.messages.append({"role": "system", "content": system_text(blocks, where)})

    def _assistant(self, blocks: list[Any], where: str) -> None:
        """One assistant message: the text joined, the calls as C{tool_calls}."""
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        call_ids: list[tuple[str, str]] = []
        for j, block in enumerate(blocks):
            at = f"{where}.{j}"
            kind = block_type(block, at)
            if kind == "text":
                texts.append(text_of(block, at))
            elif kind == "tool_use":
                call = _tool_call(block, at)
                if call["id"] in self.calls or any(call["id"] == seen for seen, _ in call_ids):
                    raise MessagesRequestError(
                        f"{at}.id: the tool_use id {call['id']!r} is used twice.")
                calls.append(call)
                call_ids.append((call["id"], at))
            elif kind in DROPPED_BLOCKS:
                self.drop(kind)
            elif kind in (*_USER_CONTENT, "tool_result"):
                raise MessagesRequestError(
                    f"{at}.type: a {kind} block cannot be in an assistant message "
                    "sent to a chat completions upstream.")
            else:
                raise _unknown(kind, at)
        if not texts and not calls:
            return  # all thinking: nothing to send
        message: dict[str, Any] = {"role": "assistant",
                                   "content": JOIN.join(texts) if texts else None}
        if calls:
            message["tool_calls"] = calls
        self.messages.append(message)
        index = len(self.messages) - 1
        for call_id, at in call_ids:
            self.calls[call_id] = ToolCall(index, at)

    def _user(self, blocks: list[Any], where: str) -> None:
        """Tool messages under their calls; the rest of the turn (the
        results' images first, labelled, then the other blocks in order)
        in a user message here."""
        results_media: list[dict[str, Any]] = []
        parts: list[dict[str, Any]] = []
        for j, block in enumerate(blocks):
            at = f"{where}.{j}"
            kind = block_type(block, at)
            if kind == "tool_result":
                results_media.extend(self._result(block, at))
            elif kind in _USER_CONTENT:
                parts.append(user_part(kind, block, at))
            elif kind in DROPPED_BLOCKS:
                self.drop(kind)
            elif kind == "tool_use":
                raise MessagesRequestError(
                    f"{at}.type: a tool_use block belongs in an assistant message.")
            else:
                raise _unknown(kind, at)
        rest = results_media + parts
        if rest:
            self.messages.append({"role": "user", "content": chat_content(rest)})

    def _result(self, block: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
        """File the C{tool} message of a C{tool_result}; its images, labelled,
        for the user message."""
        call_id = block.get("tool_use_id")
        if not isinstance(call_id, str) or not call_id:
            raise MessagesRequestError(f"{where}.tool_use_id: must be a non-empty string.")
        call = self.calls.get(call_id)
        if call is None:
            raise MessagesRequestError(
                f"{where}.tool_use_id: no tool_use block with the id {call_id!r} comes before "
                "this tool_result.")
        if call.answered:
            raise MessagesRequestError(
                f"{where}.tool_use_id: the tool_use {call_id!r} has two tool_result blocks.")
        is_error = block.get("is_error")
        if is_error is not None and not isinstance(is_error, bool):
            raise MessagesRequestError(f"{where}.is_error: must be a boolean.")
        output = tool_output(block.get("content"), is_error is True, f"{where}.content")
        for kind in output.dropped:
            self.drop(kind)
        self.answer(call_id, call, output.text)
        if not output.media:
            return []
        return [{"type": "text", "text": f"The images of the tool result {call_id}:"},
                *output.media]

    def finish(self) -> Transcript:
        unanswered = self.unanswered()
        if unanswered is not None:
            call_id, call = unanswered
            raise MessagesRequestError(
                f"{call.where}: the tool_use {call_id!r} has no tool_result block after it: "
                "each tool_use block needs a tool_result block in the next user message.")
        return self.transcript()


def system_text(blocks: object, where: str, skip_billing: bool = False) -> str:
    """The text of system content blocks (text blocks only), joined.

    @param skip_billing: leave out Claude Code's C{x-anthropic-billing-header:}
        block, which names the client's version for Anthropic's billing, is
        no instruction to the model, and changes with every conversation
        (sent, it would spoil the upstream's prompt cache).
    """
    if not isinstance(blocks, list):
        raise MessagesRequestError(f"{where}: must be a string or an array of text blocks.")
    texts = []
    for j, block in enumerate(blocks):
        at = f"{where}.{j}"
        if block_type(block, at) != "text":
            raise MessagesRequestError(f"{at}.type: system content holds text blocks only.")
        text = text_of(block, at)
        if not (skip_billing and text.startswith(BILLING_HEADER)):
            texts.append(text)
    return JOIN.join(texts)



def user_part(kind: str, block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The chat content part of a user turn's C{text}, C{image},
    C{search_result} or C{document} block."""
    if kind == "image":
        return image_part(block, where)
    if kind == "text":
        text = text_of(block, where)
    elif kind == "search_result":
        text = search_result_text(block, where)
    else:
        text = document_text(block, where)
    return {"type": "text", "text": text}


def _tool_call(block: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A C{tool_use} block as a chat C{tool_call}: the id kept, the input
    as JSON arguments."""
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise MessagesRequestError(f"{where}.id: must be a non-empty string.")
    if not isinstance(name, str) or not name:
        raise MessagesRequestError(f"{where}.name: must be a non-empty string.")
    if not isinstance(arguments, Mapping):
        raise MessagesRequestError(f"{where}.input: must be an object.")
    return {"id": call_id, "type": "function", "function": {
        "name": name,
        "arguments": json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))}}


def _unknown(kind: str, where: str) -> MessagesRequestError:
    return MessagesRequestError(f"{where}.type: the content block type {kind!r} is not known.")
