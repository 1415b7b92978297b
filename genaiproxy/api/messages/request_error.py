"""The one error of the Messages request bridge."""

from __future__ import annotations

__all__ = ["MessagesRequestError"]


class MessagesRequestError(ValueError):
    """A Messages request the bridge cannot send to a chat completions
    upstream.  The client gets a 400 C{invalid_request_error}; Anthropic's
    errors have no C{param}, so the message starts with the path into the
    request body, written as Anthropic writes it (C{messages.3.content.0:
    ...}).
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
