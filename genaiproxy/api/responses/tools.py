"""The tools of a Responses request as the client declared them, and the
names they go under on a chat completions upstream.

The Responses API has kinds of tool chat completions lacks: C{custom} tools
(free-form input, such as Codex's C{apply_patch}) and C{namespace} tools
(a group of function tools under one name).  The request bridge sends each
as a chat function; the answer bridge needs to turn a chat C{tool_call}
back into the item the client expects, named as the client declared it.
L{ToolNames} is what the request side leaves for the answer side.

The shapes, as Codex (codex-rs C{tools/src/tool_spec.rs},
C{responses_api.rs}) and the openai SDK declare them::

    {"type": "function", "name", "description", "parameters", "strict",
     "defer_loading"?}
    {"type": "custom", "name", "description", "format":
        {"type": "text"} | {"type": "grammar", "syntax": "lark" | "regex",
                            "definition"}}
    {"type": "namespace", "name", "description", "tools": [function | custom]}

A call to a tool inside a namespace is the item C{{"type": "function_call",
"namespace": "multi_agent_v1", "name": "spawn_agent", ...}}: the declared
name, unprefixed, and the namespace in a field of its own.  Codex routes a
call by that pair (codex-rs C{ToolName {name, namespace}}); its own
flattening for local models (C{ns__<namespace>__<name>} on the wire) turns
the wire name back into the pair the same way.  Codex sends its history
back with the same fields, so the request side maps the pair to the chat
name again (L{ToolNames.chat_name}).

Every other tool type (C{web_search}, C{file_search}, C{computer_use*},
C{mcp}, C{image_generation}, C{code_interpreter}, C{local_shell}, C{shell},
C{apply_patch}, C{tool_search}...) runs on OpenAI's side or has call items
of its own: it is left out, and named for the request's log event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, cast

__all__ = ["BridgeRequestError", "ChatTools", "CUSTOM_INPUT_FIELD", "DeclaredTool", "ToolNames",
           "NO_TOOLS", "chat_tools_of", "chat_tool_choice_of"]

# What chat completions accepts as a function name.
_CHAT_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_NOT_IN_CHAT_NAME = re.compile(r"[^a-zA-Z0-9_-]")
_CHAT_NAME_MAX = 64

# The one string parameter of the chat function a custom tool becomes.
CUSTOM_INPUT_FIELD = "input"


class BridgeRequestError(ValueError):
    """A Responses request the bridge cannot send to a chat completions
    upstream: the client gets a 400 C{invalid_request_error} naming C{param}
    (a path into the request body, as OpenAI writes it: C{input[3].call_id}).
    """

    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class DeclaredTool:
    """One tool as the client declared it.

    @ivar kind: C{function} (a call comes back as a C{function_call} item) or
        C{custom} (a C{custom_tool_call} item whose C{input} is the string
        the chat function's one parameter, C{CUSTOM_INPUT_FIELD}, held).
    @ivar name: the tool's name in the client's request.
    @ivar namespace: the C{namespace} tool it was declared in, or None.  When
        set, the call item carries it as C{"namespace"} beside the unprefixed
        C{name}: Codex finds its handler by that pair.
    """

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class ToolNames:
    """The declared tool behind each chat function name of a bridged request.

    @ivar by_chat_name: chat function name -> the tool the client declared.
    @ivar by_declared: (namespace, name) -> chat function name: the way there,
        for the calls in the client's history.
    """

    by_chat_name: Mapping[str, DeclaredTool] = field(
        default_factory=lambda: MappingProxyType({}))
    by_declared: Mapping[tuple[str | None, str], str] = field(
        default_factory=lambda: MappingProxyType({}))

    def declared(self, chat_name: str) -> DeclaredTool:
        """The tool behind C{chat_name}; a name the request never declared
        (a model may invent one) comes back as a function of that name."""
        return self.by_chat_name.get(chat_name) or DeclaredTool("function", chat_name)

    def chat_name(self, name: str, namespace: str | None = None) -> str:
        """The chat function name of the declared tool C{name} (in
        C{namespace}); a tool the request does not declare (a history older
        than the tool list) gets the name it would have had."""
        found = self.by_declared.get((namespace, name))
        return found if found is not None else _wanted_name(name, namespace)


NO_TOOLS = ToolNames()


@dataclass(frozen=True)
class ChatTools:
    """A request's C{tools} made chat functions.

    @ivar tools: the chat C{tools} entries, in declaration order.
    @ivar names: the declared tool behind each.
    @ivar left_out: the tools that cannot go to a chat upstream, by type
        (C{mcp} tools as C{mcp:<server_label>}).
    """

    tools: tuple[dict[str, Any], ...]
    names: ToolNames
    left_out: tuple[str, ...]


def chat_tools_of(tools: object) -> ChatTools:
    """The chat functions for a Responses request's C{tools}."""
    if tools is None:
        return ChatTools((), NO_TOOLS, ())
    if not isinstance(tools, list):
        raise BridgeRequestError("tools must be an array of tools.", "tools")
    declared: list[tuple[DeclaredTool, dict[str, Any], str]] = []
    left_out: list[str] = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        kind = _type_of(tool, where)
        if kind == "namespace":
            namespace = _text(tool, "name", where)
            description = tool.get("description") or ""
            members = tool.get("tools")
            if not isinstance(members, list):
                raise BridgeRequestError("A namespace tool needs an array of tools.",
                                         f"{where}.tools")
            for j, member in enumerate(members):
                inner = f"{where}.tools[{j}]"
                if _type_of(member, inner) not in ("function", "custom"):
                    raise BridgeRequestError(
                        "A namespace tool may hold only function and custom tools.",
                        f"{inner}.type")
                declared.append((*_function_of(member, inner, namespace, description), inner))
        elif kind in ("function", "custom"):
            declared.append((*_function_of(tool, where, None, ""), where))
        else:
            label = kind
            if kind == "mcp" and isinstance(tool.get("server_label"), str):
                label = f"mcp:{tool['server_label']}"
            if label not in left_out:
                left_out.append(label)
    names = _named(declared)
    chat = []
    for tool_decl, function, _where in declared:
        chat_name = names.by_declared[(tool_decl.namespace, tool_decl.name)]
        chat.append({"type": "function", "function": {"name": chat_name, **function}})
    return ChatTools(tuple(chat), names, tuple(left_out))


def chat_tool_choice_of(choice: object, tools: ChatTools
                        ) -> tuple[str | dict[str, Any] | None, tuple[dict[str, Any], ...]]:
    """The chat C{tool_choice} (None: leave it out) and the chat tools to
    send for a Responses C{tool_choice}.  C{allowed_tools} is sent as the
    allowed functions alone with its mode, which every chat upstream
    understands; a hosted tool cannot be forced on a chat upstream."""
    if choice is None:
        return None, tools.tools
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise BridgeRequestError(
                f"tool_choice {choice!r} is not one of 'auto', 'none', 'required'.",
                "tool_choice")
        if not tools.tools:
            if choice == "required":
                raise BridgeRequestError(_NO_FUNCTIONS, "tool_choice")
            return None, ()
        return choice, tools.tools
    kind = _type_of(choice, "tool_choice")
    choice = cast("dict[str, Any]", choice)  # _type_of saw an object
    if kind in ("function", "custom"):
        name = _text(choice, "name", "tool_choice")
        found = _matching(tools.names, kind, name, choice.get("namespace"))
        if len(found) != 1:
            which = "does not declare" if not found else "declares in several namespaces"
            raise BridgeRequestError(
                f"tool_choice names the {kind} tool {name!r}, which tools {which}.",
                "tool_choice.name")
        return {"type": "function", "function": {"name": found[0]}}, tools.tools
    if kind == "allowed_tools":
        return _allowed(choice, tools)
    raise BridgeRequestError(
        f"tool_choice forces the hosted tool {kind!r}, which cannot run on a chat completions "
        "upstream: this upstream is reached through the proxy's Responses bridge.",
        "tool_choice.type")


_NO_FUNCTIONS = ("tool_choice 'required' needs a function or custom tool: the only tools "
                 "declared are hosted tools, which cannot run on a chat completions upstream.")


def _allowed(choice: Mapping[str, Any], tools: ChatTools
             ) -> tuple[str | None, tuple[dict[str, Any], ...]]:
    """C{allowed_tools}: its mode, over the chat functions it allows."""
    mode = choice.get("mode")
    if mode not in ("auto", "required"):
        raise BridgeRequestError("allowed_tools mode must be 'auto' or 'required'.",
                                 "tool_choice.mode")
    entries = choice.get("tools")
    if not isinstance(entries, list):
        raise BridgeRequestError("allowed_tools needs an array of tools.", "tool_choice.tools")
    allowed: set[str] = set()
    for i, entry in enumerate(entries):
        kind = _type_of(entry, f"tool_choice.tools[{i}]")
        if kind == "namespace":
            allowed.update(chat_name for chat_name, declared in tools.names.by_chat_name.items()
                           if declared.namespace == entry.get("name"))
        else:
            allowed.update(_matching(tools.names, kind, entry.get("name"),
                                     entry.get("namespace")))
    kept = tuple(tool for tool in tools.tools if tool["function"]["name"] in allowed)
    if not kept:
        if mode == "required":
            raise BridgeRequestError(_NO_FUNCTIONS, "tool_choice.tools")
        return None, ()
    return mode, kept


def _matching(names: ToolNames, kind: str, name: object, namespace: object) -> list[str]:
    """The chat names of the declared C{kind} tools called C{name}: in
    C{namespace} when it is given, else at the top level or, failing that,
    in any namespace (a choice has no field for the namespace)."""
    found = [(chat_name, declared.namespace)
             for chat_name, declared in names.by_chat_name.items()
             if declared.kind == kind and declared.name == name
             and (namespace is None or declared.namespace == namespace)]
    top = [chat_name for chat_name, where in found if where is None]
    return top or [chat_name for chat_name, _where in found]


def _type_of(value: object, where: str) -> str:
    if not isinstance(value, dict):
        raise BridgeRequestError(f"{where} must be an object.", where)
    kind = value.get("type")
    if not isinstance(kind, str):
        raise BridgeRequestError(f"{where} needs a string type.", f"{where}.type")
    return kind


def _text(value: Mapping[str, Any], key: str, where: str) -> str:
    text = value.get(key)
    if not isinstance(text, str) or not text:
        raise BridgeRequestError(f"{where}.{key} must be a non-empty string.", f"{where}.{key}")
    return text


def _function_of(tool: Mapping[str, Any], where: str, namespace: str | None,
                 namespace_description: str) -> tuple[DeclaredTool, dict[str, Any]]:
    """The declared tool, and its chat function without its name."""
    name = _text(tool, "name", where)
    description = tool.get("description")
    if description is not None and not isinstance(description, str):
        raise BridgeRequestError(f"{where}.description must be a string.",
                                 f"{where}.description")
    function: dict[str, Any] = {}
    if tool["type"] == "custom":
        description = _custom_description(tool, where, description or "")
        parameters: Any = {
            "type": "object",
            "properties": {CUSTOM_INPUT_FIELD: {"type": "string",
                                                "description": "The tool's free-form input."}},
            "required": [CUSTOM_INPUT_FIELD],
            "additionalProperties": False,
        }
    else:
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise BridgeRequestError(f"{where}.parameters must be a JSON schema object.",
                                     f"{where}.parameters")
    if namespace_description.strip():
        # A flat function has no field for its namespace's description,
        # which tells the model what the group is for.
        description = f"{namespace_description}\n\n{description or ''}".rstrip()
    if description:
        function["description"] = description
    if parameters is not None:
        function["parameters"] = parameters
    strict = tool.get("strict")
    if tool["type"] == "function" and isinstance(strict, bool):
        function["strict"] = strict
    kind: Literal["function", "custom"] = "custom" if tool["type"] == "custom" else "function"
    return DeclaredTool(kind, name, namespace), function


def _custom_description(tool: Mapping[str, Any], where: str, description: str) -> str:
    """A custom tool's description, with the grammar its input must follow
    (the chat model sees no C{format} field)."""
    form = tool.get("format")
    if form is None:
        return description
    kind = _type_of(form, f"{where}.format")
    if kind == "text":
        return description
    if kind != "grammar":
        raise BridgeRequestError("A custom tool's format is 'text' or 'grammar'.",
                                 f"{where}.format.type")
    definition = _text(form, "definition", f"{where}.format")
    syntax = form.get("syntax") if isinstance(form.get("syntax"), str) else "lark"
    grammar = f"The input must follow this {syntax} grammar:\n{definition}"
    return f"{description}\n\n{grammar}" if description else grammar


def _wanted_name(name: str, namespace: str | None) -> str:
    """The chat name a tool would like: its own name, or C{<namespace>__<name>},
    made valid (other characters become C{_}; a name too long keeps its
    start and a hash of the whole)."""
    wanted = name if namespace is None else f"{namespace}__{name}"
    if _CHAT_NAME.fullmatch(wanted):
        return wanted
    valid = _NOT_IN_CHAT_NAME.sub("_", wanted) or "_"
    if len(valid) <= _CHAT_NAME_MAX:
        return valid
    digest = hashlib.sha256(wanted.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{valid[:_CHAT_NAME_MAX - 9]}_{digest}"


def _named(declared: Sequence[tuple[DeclaredTool, dict[str, Any], str]]) -> ToolNames:
    """Unique chat names for the declared tools.  Top-level tools whose
    names chat already accepts keep them (the model and the client's history
    use them as they are); the others take what is left, with C{_2},
    C{_3}... after a name already taken."""
    by_chat: dict[str, DeclaredTool] = {}
    by_declared: dict[tuple[str | None, str], str] = {}
    for tool, _function, where in declared:
        if (tool.namespace, tool.name) in by_declared:
            raise BridgeRequestError(f"The tool name {tool.name!r} is declared twice.",
                                     f"{where}.name")
        by_declared[(tool.namespace, tool.name)] = ""
        if tool.namespace is None and _CHAT_NAME.fullmatch(tool.name):
            by_chat[tool.name] = tool
            by_declared[(None, tool.name)] = tool.name
    for tool, _function, _where in declared:
        if by_declared[(tool.namespace, tool.name)]:
            continue
        chat_name = wanted = _wanted_name(tool.name, tool.namespace)
        suffix = 2
        while chat_name in by_chat:
            tail = f"_{suffix}"
            chat_name = wanted[:_CHAT_NAME_MAX - len(tail)] + tail
            suffix += 1
        by_chat[chat_name] = tool
        by_declared[(tool.namespace, tool.name)] = chat_name
    return ToolNames(MappingProxyType(by_chat), MappingProxyType(by_declared))
