"""The Anthropic Messages API over a chat completions upstream: a Messages
request translated to a chat request (L{chat_request_of}), and the chat
answer translated back, whole (L{message_of}) or as a stream of Messages
events (L{MessagesEventWriter}); and an estimate of a request's input tokens
made without the upstream (L{count_tokens}).  No reactor, no I/O.
"""

from genaiproxy.api.messages.answer import message_of, new_message_id
from genaiproxy.api.messages.count import count_tokens
from genaiproxy.api.messages.request import BridgedMessages, chat_request_of
from genaiproxy.api.messages.request_error import MessagesRequestError
from genaiproxy.api.messages.stream import MessagesEventWriter

__all__ = [
    "BridgedMessages",
    "MessagesEventWriter",
    "MessagesRequestError",
    "chat_request_of",
    "count_tokens",
    "message_of",
    "new_message_id",
]
