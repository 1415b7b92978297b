"""The C{input} of a Responses request made chat completions C{messages}
(see L{genaiproxy.api.responses.request} for the rules as a whole).

Chat completions wants every C{tool} message right after the assistant
message that holds its call, and one assistant message for calls made
together (a model that sees its parallel calls split learns to stop making
them).  The Responses API keeps calls and outputs as separate items in any
order the client recorded them.  L{messages_of} therefore gathers calls
that follow one another (or follow an assistant message) into one assistant
message, and files each output under the message holding its call, however
far down the output comes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from genaiproxy.api.chat_history import ChatHistory, ToolCall, Transcript
from genaiproxy.api.responses.tools import CUSTOM_INPUT_FIELD, BridgeRequestError, ToolNames

__all__ = ["DROPPED_ITEMS", "Transcript", "messages_of"]

_ROLES = frozenset({"user", "assistant", "system", "developer"})
# Items not sent: reasoning and compaction are encrypted for OpenAI's models;
# the others record hosted tools, which a chat upstream does not have.
DROPPED_ITEMS = frozenset({
    "reasoning", "compaction", "compaction_trigger",
    "web_search_call", "file_search_call", "computer_call", "computer_call_output",
    "image_generation_call", "code_interpreter_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "tool_search_call", "tool_search_output",
})
_CALLS = ("function_call", "custom_tool_call")
_OUTPUTS = ("function_call_output", "custom_tool_call_output")
_IMAGE_DETAILS = ("auto", "low", "high")
_MEDIA_ONLY = "(The output is in the next message.)"


def messages_of(items: object, names: ToolNames, gpt5: bool) -> Transcript:
    """The chat messages for a Responses C{input} (a string or items).

    @param names: the chat names of the request's tools, for the calls in
        the history.
    @param gpt5: the model is of the gpt-5 family, which keeps the
        C{developer} role.
    """
    if isinstance(items, str):
        return Transcript([{"role": "user", "content": items}])
    if not isinstance(items, list):
        raise BridgeRequestError("input must be a string or an array of items.", "input")
    builder = _Builder(names, gpt5)
    for i, item in enumerate(items):
        builder.add(item, f"input[{i}]")
    return builder.finish()


class _Builder(ChatHistory):
    """The messages as the items come; outputs filed under their calls."""

    def __init__(self, names: ToolNames, gpt5: bool) -> None:
        super().__init__()
        self.names = names
        self.gpt5 = gpt5
        # The parts of the user message after the tool messages that follow
        # an assistant message, by its index.
        self.media_after: dict[int, list[dict[str, Any]]] = {}
        # The assistant message the next call joins, while nothing else came.
        self.open: int | None = None

    def add(self, item: object, where: str) -> None:
        if not isinstance(item, Mapping):
            raise BridgeRequestError(f"{where} must be an object.", where)
        kind = item.get("type")
        if kind is None and "role" in item:
            kind = "message"
        if kind == "message":
            self._message(item, where)
        elif kind in _CALLS:
            self._call(item, where)
        elif kind in _OUTPUTS:
            self._output(item, where)
        elif kind in DROPPED_ITEMS:
            self.drop(kind)
        elif kind == "item_reference" or (kind is None and "id" in item):
            raise BridgeRequestError(
                "An item_reference points at an item stored at OpenAI; this upstream only "
                "speaks chat completions and the proxy's Responses bridge keeps no state: "
                "send the item itself.", where)
        else:
            raise BridgeRequestError(
                f"The input item type {kind!r} cannot be sent to a chat completions upstream.",
                f"{where}.type")

    def _message(self, item: Mapping[str, Any], where: str) -> None:
        role = item.get("role")
        if role not in _ROLES:
            raise BridgeRequestError(
                "A message's role must be 'user', 'assistant', 'system' or 'developer'.",
                f"{where}.role")
        content = _message_content(item.get("content"), role, f"{where}.content")
        if role == "developer" and not self.gpt5:
            role = "system"
        self.messages.append({"role": role, "content": content})
        self.open = len(self.messages) - 1 if role == "assistant" else None

    def _call(self, item: Mapping[str, Any], where: str) -> None:
        call_id = _string(item, "call_id", where, empty=False)
        if call_id in self.calls:
            raise BridgeRequestError(f"The call_id {call_id!r} is used by two calls.",
                                     f"{where}.call_id")
        name = _string(item, "name", where, empty=False)
        namespace = item.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise BridgeRequestError(f"{where}.namespace must be a string.", f"{where}.namespace")
        if item["type"] == "function_call":
            arguments = _string(item, "arguments", where)
        else:
            arguments = json.dumps({CUSTOM_INPUT_FIELD: _string(item, "input", where)},
                                   ensure_ascii=False)
        if self.open is None:
            self.messages.append({"role": "assistant", "content": None})
            self.open = len(self.messages) - 1
        holder = self.messages[self.open]
        holder.setdefault("tool_calls", []).append({
            "id": call_id, "type": "function",
            "function": {"name": self.names.chat_name(name, namespace), "arguments": arguments},
        })
        self.calls[call_id] = ToolCall(self.open, where)

    def _output(self, item: Mapping[str, Any], where: str) -> None:
        call_id = _string(item, "call_id", where, empty=False)
        call = self.calls.get(call_id)
        if call is None:
            raise BridgeRequestError(
                f"No function_call or custom_tool_call with call_id {call_id!r} comes before "
                "this output in input.", f"{where}.call_id")
        if call.answered:
            raise BridgeRequestError(f"The call {call_id!r} has two outputs.",
                                     f"{where}.call_id")
        text, media = _output_content(item.get("output"), f"{where}.output")
        self.answer(call_id, call, text)
        if media:
            self.media_after.setdefault(call.message, []).extend(
                [{"type": "text", "text": f"Output of tool call {call_id}:"}, *media])
        self.open = None

    def finish(self) -> Transcript:
        unanswered = self.unanswered()
        if unanswered is not None:
            call_id, call = unanswered
            raise BridgeRequestError(
                f"No tool output found for the call {call_id!r}: a chat completions "
                "upstream needs every call's output in input.", call.where)
        return self.transcript()

    def after(self, index: int) -> dict[str, Any] | None:
        """The images and files of the outputs answering message C{index}'s
        calls, in a user message (a tool message holds text only)."""
        media = self.media_after.get(index)
        return {"role": "user", "content": media} if media else None


def _string(item: Mapping[str, Any], key: str, where: str, empty: bool = True) -> str:
    value = item.get(key)
    if not isinstance(value, str) or (not empty and not value):
        adjective = "a string" if empty else "a non-empty string"
        raise BridgeRequestError(f"{where}.{key} must be {adjective}.", f"{where}.{key}")
    return value


def _message_content(content: object, role: str, where: str) -> str | list[dict[str, Any]]:
    """A message's content: one string when it is all text (what every chat
    upstream takes, for every role), its parts when a user sends media."""
    if isinstance(content, str):
        return content
    parts = _chat_parts(content, where, "a message's content")
    media = [j for j, part in enumerate(parts) if part["type"] != "text"]
    if not media:
        return "\n".join(part["text"] for part in parts)
    if role != "user":
        raise BridgeRequestError(
            "On a chat completions upstream only user messages can hold images or files.",
            f"{where}[{media[0]}]")
    return parts


def _output_content(output: object, where: str) -> tuple[str, list[dict[str, Any]]]:
    """A call output's text for the tool message, and its images and files
    for the user message after it."""
    if isinstance(output, str):
        return output, []
    parts = _chat_parts(output, where, "a call's output")
    text = "\n".join(part["text"] for part in parts if part["type"] == "text")
    media = [part for part in parts if part["type"] != "text"]
    return (text or _MEDIA_ONLY) if media else text, media


def _chat_parts(parts: object, where: str, what: str) -> list[dict[str, Any]]:
    """Responses content parts as chat content parts."""
    if not isinstance(parts, list):
        raise BridgeRequestError(f"{what} must be a string or an array of content parts.", where)
    chat = []
    for j, part in enumerate(parts):
        at = f"{where}[{j}]"
        if not isinstance(part, Mapping):
            raise BridgeRequestError(f"{at} must be an object.", at)
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            chat.append({"type": "text", "text": _string(part, "text", at)})
        elif kind == "refusal":
            chat.append({"type": "text", "text": _string(part, "refusal", at)})
        elif kind == "input_image":
            chat.append(_image(part, at))
        elif kind == "input_file":
            chat.append(_file(part, at))
        else:
            raise BridgeRequestError(
                f"The content part type {kind!r} cannot be sent to a chat completions upstream.",
                f"{at}.type")
    return chat


def _image(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An C{image_url} part: the URL or data URL as the client sent it."""
    url = part.get("image_url")
    if url is None and part.get("file_id") is not None:
        raise BridgeRequestError(
            "An input_image's file_id names a file stored at OpenAI, which a chat completions "
            "upstream cannot read: send the image as image_url (a URL or a data URL).",
            f"{where}.file_id")
    if not isinstance(url, str) or not url:
        raise BridgeRequestError("An input_image needs image_url (a URL or a data URL).",
                                 f"{where}.image_url")
    image = {"url": url}
    if part.get("detail") in _IMAGE_DETAILS:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file(part: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A C{file} part, from the file's data (the only form chat takes)."""
    data = part.get("file_data")
    if data is None:
        for key in ("file_id", "file_url"):
            if part.get(key) is not None:
                raise BridgeRequestError(
                    f"An input_file's {key} names a file a chat completions upstream cannot "
                    "fetch: send its content as file_data.", f"{where}.{key}")
    if not isinstance(data, str) or not data:
        raise BridgeRequestError("An input_file needs file_data.", f"{where}.file_data")
    file = {"file_data": data}
    if isinstance(part.get("filename"), str):
        file["filename"] = part["filename"]
    return {"type": "file", "file": file}
