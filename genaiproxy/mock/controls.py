"""How the mock upstream misbehaves: its command-line options
(L{MockOptions}) and the failure controls applied before a request reaches
its API (L{MockControls}: a route the gateway lacks, a wrong key, a forced
status, a hang, the first attempts of a request id failing, extra headers).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.web import http, server

from genaiproxy.mock.payloads import BadRequest
from genaiproxy.mock.plumbing import (
    JSON_TYPE,
    MockState,
    abort,
    error_body,
    flag_header,
    int_header,
    mock_header,
    reset_after_flush,
)
from genaiproxy.mock.tool_calls import REASONING_FIELDS, ToolCall

# Reason phrases Twisted's http.RESPONSES lacks but clients may show.
_EXTRA_REASONS = {422: b"Unprocessable Content", 429: b"Too Many Requests"}

# What an Azure API Management portal answers for a route it does not
# publish, such as /responses in front of an older Azure OpenAI API version.
MISSING_ROUTE_BODY = b'{"statusCode": 404, "message": "Resource not found"}'


@dataclass(frozen=True)
class MockOptions:
    """The mock's command-line options beyond pacing and reply text: how it
    misbehaves on every request under C{/v1}, and how its chat model
    answers; by default it does neither.

    @ivar require_header: (name, value): a request without this exact
        header value gets a 401.
    @ivar fail_status: answer every request with this status.
    @ivar hang: answer no request.
    @ivar base_path: serve only under this path (a gateway's base path):
        elsewhere, 404.
    @ivar chat_only: no Responses API: any C{/responses} path is a 404 in
        an API Management portal's words.
    @ivar tool_calls: the calls a chat answer makes, of those the request
        offers.
    @ivar interleave_tool_calls: stream several calls' argument pieces
        taking turns by index, instead of one call after the other.
    @ivar reasoning: reasoning text every chat answer carries, if any.
    @ivar reasoning_field: the field that carries it.
    """

    require_header: tuple[bytes, bytes] | None = None
    fail_status: int | None = None
    hang: bool = False
    base_path: str = ""
    chat_only: bool = False
    tool_calls: tuple[ToolCall, ...] = ()
    interleave_tool_calls: bool = False
    reasoning: str | None = None
    reasoning_field: str = REASONING_FIELDS[0]


def parse_header_option(text: str) -> tuple[bytes, bytes]:
    """``'Name: value'`` as (name, value); raises ValueError without a name."""
    name, colon, value = text.partition(":")
    if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
        raise ValueError(f"expected 'Name: value', got {text!r}")
    return name.strip().encode("latin-1"), value.strip().encode("latin-1")


def is_responses_path(path: str) -> bool:
    """Whether C{path} is the Responses API's (C{.../responses} or below)."""
    return "responses" in path.strip("/").split("/")


class MockControls:
    """The failure controls; a mix-in of
    L{genaiproxy.mock.server.MockResource}, whose state and options these
    are."""

    state: MockState
    options: MockOptions

    def _missing_route(self, request: server.Request, path: str) -> bytes | None:
        """The 404 of a chat-only gateway (C{--chat-only} or
        C{X-Mock-Chat-Only}) for a Responses API path, else None."""
        if not (flag_header(request, b"x-mock-chat-only", self.options.chat_only)
                and is_responses_path(path)):
            return None
        request.setResponseCode(404)
        request.setHeader(b"content-type", JSON_TYPE)
        return MISSING_ROUTE_BODY

    def _apply_controls(self, request: server.Request, path: str) -> bytes | int | None:
        """The answer the failure controls give, or None when they let the
        request through to its API (having added any X-Mock-Header)."""
        if "/v1/" in path:
            refused = self._apply_options(request)
            if refused is not None:
                return refused
        fail_first = int_header(request, b"x-mock-fail-first")
        request_id = mock_header(request, b"x-request-id")
        if fail_first and request_id is not None:
            failed = self.state.failed_by_request_id.get(request_id, 0)
            if failed < fail_first:
                self.state.failed_by_request_id[request_id] = failed + 1
                return self._fail_attempt(request)
        if flag_header(request, b"x-mock-hang", False):
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        self._add_mock_headers(request)
        status = int_header(request, b"x-mock-status")
        if status is not None:
            return self._render_mock_status(request, status)
        return None

    def _fail_attempt(self, request: server.Request) -> bytes | int:
        """Fail one of the first X-Mock-Fail-First attempts: an answer with
        X-Mock-Fail-Status, else a reset, before or (X-Mock-Fail-Mid-Body)
        after the headers and the start of a body."""
        fail_status = int_header(request, b"x-mock-fail-status")
        if fail_status is not None:  # an answer (429 + Retry-After, ...)
            self._add_mock_headers(request)
            return self._render_mock_status(request, fail_status)
        if not flag_header(request, b"x-mock-fail-mid-body", False):
            abort(request)
        else:  # headers and the start of a body, then the reset
            request.setResponseCode(200)
            request.setHeader(b"content-type", JSON_TYPE)
            request.setHeader(b"content-length", b"1000")
            request.write(b'{"partial": ')
            reset_after_flush(request)
        return server.NOT_DONE_YET

    def _apply_options(self, request: server.Request) -> bytes | int | None:
        """The answer the command-line options give a request under /v1, or
        None when they let it through."""
        options = self.options
        if options.require_header is not None:
            name, value = options.require_header
            if request.requestHeaders.getRawHeaders(name) != [value]:
                request.setResponseCode(401)
                request.setHeader(b"content-type", JSON_TYPE)
                return error_body(f"missing or wrong {name.decode('latin-1')} header",
                                  "invalid_request_error", "invalid_api_key")
        if options.fail_status is not None:
            return self._render_mock_status(request, options.fail_status)
        if options.hang:
            request.notifyFinish().addErrback(lambda _: None)
            return server.NOT_DONE_YET
        return None

    @staticmethod
    def _add_mock_headers(request: server.Request) -> None:
        """C{X-Mock-Header: Name: value} (repeatable) adds a response header."""
        for extra in request.requestHeaders.getRawHeaders(b"x-mock-header", []):
            name, _, value = extra.partition(b":")
            if name.strip():
                request.responseHeaders.addRawHeader(name.strip(), value.strip())

    @staticmethod
    def _render_mock_status(request: server.Request, status: int) -> bytes:
        """Answer with the requested error status and an OpenAI error body."""
        if not 100 <= status <= 599:
            raise BadRequest("X-Mock-Status must be between 100 and 599")
        reason = http.RESPONSES.get(status) or _EXTRA_REASONS.get(status, b"Mock Status")
        request.setResponseCode(status, reason)
        request.setHeader(b"content-type", JSON_TYPE)
        if status == 429 and not request.responseHeaders.hasHeader(b"retry-after"):
            request.setHeader(b"retry-after", b"1")
        return error_body(f"mock error {status}", "mock_error", str(status))
