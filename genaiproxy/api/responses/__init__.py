"""The Responses API over a chat completions upstream: a Responses request
translated to a chat request (L{chat_request_of}), and the chat answer
translated back, whole (L{response_of}) or as a stream of Responses events
(L{ResponsesEventWriter}).  No reactor, no I/O: the forwarding layer sends
and pumps, these say what the bytes mean.
"""

from genaiproxy.api.responses.answer import response_of
from genaiproxy.api.responses.items import new_item_id
from genaiproxy.api.responses.request import BridgedRequest, chat_request_of
from genaiproxy.api.responses.stream import ResponsesEventWriter
from genaiproxy.api.responses.tools import BridgeRequestError, DeclaredTool, ToolNames

__all__ = [
    "BridgeRequestError",
    "BridgedRequest",
    "DeclaredTool",
    "ResponsesEventWriter",
    "ToolNames",
    "chat_request_of",
    "new_item_id",
    "response_of",
]
