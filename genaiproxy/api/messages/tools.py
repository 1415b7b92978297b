"""The tools of a Messages request as chat completions functions, and its
C{tool_choice} as chat's (see L{genaiproxy.api.messages.request}).

A client tool (C{type} absent or C{custom}, as Claude Code declares its
dozen or so) is a chat function under the same name: Anthropic's tool
names (C{^[a-zA-Z0-9_-]{1,64}$}) are names chat takes, so a chat
C{tool_call} names the declared tool as it is and the answer side needs no
table of names.  Its C{input_schema} is the function's C{parameters}, its
C{description} and C{strict} go as they are; C{cache_control},
C{defer_loading}, C{input_examples}, C{eager_input_streaming} and
C{allowed_callers} are Anthropic's own and not sent.  A deferred tool
(C{defer_loading: true}) is sent like the others: tool search is Anthropic's,
and the model can call only what it sees.

Every other C{type} (C{web_search_*}, C{web_fetch_*}, C{code_execution_*},
C{computer_*}, C{bash_*}, C{text_editor_*}, C{memory_*}, C{tool_search_*},
C{browser_*}, and whatever Anthropic adds) is a server tool, or one whose
schema only Anthropic's models know: it is left out and named (by its
type) for the request's log event.  So are the C{mcp_servers} Anthropic
would connect to (C{mcp:<name>}).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from genaiproxy.api.messages.request_error import MessagesRequestError

__all__ = ["ChatTools", "chat_tool_choice_of", "chat_tools_of", "left_out_servers"]

# What both Anthropic and chat completions accept as a tool's name.
TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_CLIENT_TOOL_TYPES = (None, "custom")


@dataclass(frozen=True)
class ChatTools:
    """A request's C{tools} made chat functions.

    @ivar tools: the chat C{tools}, in the declared order.
    @ivar names: the names of the tools sent.
    @ivar left_out: the server tools' types, once each.
    @ivar server_names: the names of the server tools, for a clear error
        when C{tool_choice} forces one.
    """

    tools: tuple[dict[str, Any], ...] = ()
    names: frozenset[str] = frozenset()
    left_out: tuple[str, ...] = ()
    server_names: frozenset[str] = frozenset()


def chat_tools_of(tools: object) -> ChatTools:
    """The chat functions for a request's C{tools}."""
    if tools is None:
        return ChatTools()
    if not isinstance(tools, list):
        raise MessagesRequestError("tools: must be an array of tools.")
    chat: list[dict[str, Any]] = []
    names: set[str] = set()
    left_out: list[str] = []
    server_names: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"tools.{i}"
        if not isinstance(tool, Mapping):
            raise MessagesRequestError(f"{where}: a tool must be an object.")
        kind = tool.get("type")
        if kind in _CLIENT_TOOL_TYPES:
            function = _function(tool, where)
            if function["name"] in names:
                raise MessagesRequestError(
                    f"{where}.name: the tool name {function['name']!r} is declared twice.")
            names.add(function["name"])
            chat.append({"type": "function", "function": function})
        elif isinstance(kind, str):
            if kind not in left_out:
                left_out.append(kind)
            if isinstance(tool.get("name"), str):
                server_names.add(tool["name"])
        else:
            raise MessagesRequestError(f"{where}.type: must be a string.")
    return ChatTools(tuple(chat), frozenset(names), tuple(left_out), frozenset(server_names))


def _function(tool: Mapping[str, Any], where: str) -> dict[str, Any]:
    name = tool.get("name")
    if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
        raise MessagesRequestError(
            f"{where}.name: a tool's name must match ^[a-zA-Z0-9_-]{{1,64}}$.")
    schema = tool.get("input_schema")
    if not isinstance(schema, Mapping):
        raise MessagesRequestError(
            f"{where}.input_schema: a tool needs its input's JSON schema (an object).")
    function: dict[str, Any] = {"name": name}
    description = tool.get("description")
    if description is not None:
        if not isinstance(description, str):
            raise MessagesRequestError(f"{where}.description: must be a string.")
        function["description"] = description
    function["parameters"] = dict(schema)
    strict = tool.get("strict")
    if isinstance(strict, bool):
        function["strict"] = strict
    return function


def chat_tool_choice_of(choice: object, tools: ChatTools) -> tuple[Any, bool | None]:
    """Chat's C{tool_choice} for a request's (None: not sent), and its
    C{parallel_tool_calls}: False when the client disabled parallel tool use,
    else None (not sent: chat's default allows them).

    C{auto} and C{none} are chat's own; C{any} is chat's C{required}; C{tool}
    forces the named function.
    """
    if choice is None:
        return None, None
    if not isinstance(choice, Mapping):
        raise MessagesRequestError(
            'tool_choice: must be an object such as {"type": "auto"}.')
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise MessagesRequestError("tool_choice.disable_parallel_tool_use: must be a boolean.")
    parallel = False if disable else None
    kind = choice.get("type")
    if kind == "auto":
        return "auto", parallel
    if kind == "none":
        return "none", None
    if kind == "any":
        if not tools.names:
            raise MessagesRequestError(
                "tool_choice: 'any' needs a tool to call, and no tool the request declares "
                "can run on a chat completions upstream.")
        return "required", parallel
    if kind == "tool":
        name = choice.get("name")
        if not isinstance(name, str) or not name:
            raise MessagesRequestError("tool_choice.name: must be a non-empty string.")
        if name not in tools.names:
            why = ("is a server tool, which cannot run on a chat completions upstream"
                   if name in tools.server_names else "is not a tool of the request")
            raise MessagesRequestError(f"tool_choice.name: {name!r} {why}.")
        return {"type": "function", "function": {"name": name}}, parallel
    raise MessagesRequestError(
        "tool_choice.type: must be 'auto', 'any', 'tool' or 'none'.")


def left_out_servers(servers: object) -> tuple[str, ...]:
    """The C{mcp_servers} of a request as C{left_out} names: Anthropic would
    connect to them and run their tools; a chat upstream cannot."""
    if servers is None:
        return ()
    if not isinstance(servers, list):
        raise MessagesRequestError("mcp_servers: must be an array.")
    names = []
    for server in servers:
        name = server.get("name") if isinstance(server, Mapping) else None
        names.append(f"mcp:{name}" if isinstance(name, str) else "mcp")
    return tuple(dict.fromkeys(names))
