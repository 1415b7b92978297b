"""What both bridges build a chat request's C{messages} with, from the
history of another API (L{genaiproxy.api.responses.input_items},
L{genaiproxy.api.messages.transcript}).

Chat completions wants every C{tool} message right after the assistant
message holding its call; the Responses and Messages APIs may record a
call's output further down.  A L{ChatHistory} files each output under the
assistant message holding its call as the history comes, and puts them in
place at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ChatHistory", "ToolCall", "Transcript"]


@dataclass(frozen=True)
class Transcript:
    """The chat messages of a request's history, and the types of what was
    dropped from it (once each, in the order met)."""

    messages: list[dict[str, Any]]
    dropped: tuple[str, ...] = ()


@dataclass
class ToolCall:
    """A call in the history, until its output comes."""

    message: int  # the index of the assistant message holding it
    where: str  # where the client's request holds it, for errors
    answered: bool = False


class ChatHistory:
    """The chat messages as the history comes, each tool message filed under
    the assistant message holding its call.

    @ivar calls: the calls met so far, by their id.
    """

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.calls: dict[str, ToolCall] = {}
        self._dropped: list[str] = []
        # The tool messages after each assistant message, by its index.
        self._tools_after: dict[int, list[dict[str, Any]]] = {}

    def drop(self, kind: str) -> None:
        """Say that something of type C{kind} was not sent."""
        if kind not in self._dropped:
            self._dropped.append(kind)

    def answer(self, call_id: str, call: ToolCall, content: Any) -> None:
        """File the C{tool} message answering C{call}."""
        call.answered = True
        self._tools_after.setdefault(call.message, []).append(
            {"role": "tool", "tool_call_id": call_id, "content": content})

    def unanswered(self) -> tuple[str, ToolCall] | None:
        """The first call with no output yet (chat completions wants one for
        every call), with its id."""
        return next(((call_id, call) for call_id, call in self.calls.items()
                     if not call.answered), None)

    def transcript(self) -> Transcript:
        """The messages, each assistant message followed by the tool messages
        answering its calls and then by what L{after} puts there."""
        messages: list[dict[str, Any]] = []
        for index, message in enumerate(self.messages):
            messages.append(message)
            messages.extend(self._tools_after.get(index, ()))
            then = self.after(index)
            if then is not None:
                messages.append(then)
        return Transcript(messages, tuple(self._dropped))

    def after(self, index: int) -> dict[str, Any] | None:
        """A message to put after the tool messages that follow message
        C{index} (none here)."""
        return None
