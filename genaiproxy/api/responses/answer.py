"""A chat completions answer as the Responses API's C{response} object.

The Responses bridge sends a Responses request to an upstream that speaks
only chat completions; L{response_of} turns the upstream's whole answer back
into what the client asked for, and the parts here are shared with the
streamed answer (L{genaiproxy.api.responses.stream}), so that both say the
same thing.

The C{output} items, in order:

  - a C{reasoning} item, when the upstream sent the model's reasoning
    (C{reasoning_content}: DeepSeek, older vLLM; C{reasoning}: Ollama, newer
    vLLM; never both counted, since vLLM sent both for a while).  See
    L{reasoning_as_summary} for the shape it takes;
  - the C{message} (C{output_text} with C{annotations: []} and the
    C{logprobs}, a C{refusal} part when the upstream refused);
  - one item per tool call: C{function_call} (C{arguments} as the JSON text),
    or C{custom_tool_call} for a tool the client declared as C{custom}
    (C{input}: the string the chat function's one parameter held, see
    L{custom_input}); named, and namespaced, as the client declared the tool
    (L{ToolNames}).

C{status} is C{completed}, or C{incomplete} when the upstream stopped for
C{length} (C{incomplete_details.reason: max_output_tokens}) or
C{content_filter}; the items it was writing then are C{incomplete} too.
C{usage} maps the chat counts, with C{total_tokens} always there (Codex
refuses a C{response.completed} whose usage lacks it); it is null when the
upstream reported none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genaiproxy.api.chat_message import (
    arguments_text,
    first_choice,
    reasoning_text,
    string_of,
    text_of,
    tool_calls_of,
)
from genaiproxy.api.responses.items import (
    IdMaker,
    call_item,
    finish_status,
    logprobs_of,
    message_item,
    new_item_id,
    output_text_part,
    reasoning_as_summary,
    reasoning_item,
    response_object,
    responses_usage,
)
from genaiproxy.api.responses.tools import ToolNames

__all__ = ["response_of"]


def response_of(completion: Mapping[str, Any], echo: Mapping[str, Any], tools: ToolNames,
                response_id: str, created_at: int,
                new_id: IdMaker = new_item_id) -> dict[str, Any]:
    """The Responses C{response} object for a whole chat completion.

    @param echo: the client's Responses request body, whose fields the
        object repeats.
    @param tools: the declared tool behind each chat function name.
    """
    choice, message = first_choice(completion)
    status, incomplete_details = finish_status(choice.get("finish_reason"))
    output: list[dict[str, Any]] = []
    reasoning = reasoning_text(message)
    if reasoning:
        output.append(reasoning_item(new_id("rs"), reasoning, reasoning_as_summary(echo)))
    content: list[dict[str, Any]] = []
    text = text_of(message.get("content"))
    if text:
        content.append(output_text_part(text, logprobs_of(choice.get("logprobs"))))
    refusal = message.get("refusal")
    if isinstance(refusal, str) and refusal:
        content.append({"type": "refusal", "refusal": refusal})
    if content:
        output.append(message_item(new_id("msg"), "completed", content))
    calls = tool_calls_of(message)
    for function in calls:
        tool = tools.declared(string_of(function.get("name")))
        call_id = function.get("id")
        output.append(call_item(new_id("ctc" if tool.kind == "custom" else "fc"),
                                call_id if isinstance(call_id, str) and call_id
                                else new_id("call"),
                                tool, arguments_text(function.get("arguments")) or "{}", "completed"))
    if status == "incomplete" and output:
        # The items the upstream was writing when it stopped: its tool calls
        # (a stream keeps them all open to the end), else its last item.
        cut = [item for item in output if item["type"] in ("function_call", "custom_tool_call")]
        for item in cut or output[-1:]:
            if "status" in item:
                item["status"] = "incomplete"
    return response_object(echo, response_id, created_at, status, output,
                           responses_usage(completion.get("usage")), incomplete_details)
