"""The properties every exchange with the Site must have (see
tests/test_fuzz_site.py): a JSON error the proxy made itself, or a request
that reached the upstream well formed, under the base URL, with the key,
without the client's credential, and rewritten only as docs/reference/endpoints.md says."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from support.fuzz_answers import _TARGET_RE, _TOKEN_RE, Answer
from support.fuzz_harness import Exchange, FuzzRequest
from support.fuzz_proxy import (
    API_VERSION,
    BASE,
    KEY,
    OPEN_PROBES,
    SUBSCRIPTION,
    UPSTREAM,
    UPSTREAM_BODY,
    Received,
)


def strict_json(body: bytes) -> Any:
    """C{body} as JSON by the RFC (no NaN or Infinity), or ValueError."""
    def reject(constant: str) -> Any:
        raise ValueError(constant)

    return json.loads(body, parse_constant=reject)


def is_json(body: bytes) -> bool:
    """Whether C{body} is JSON by the RFC."""
    try:
        strict_json(body)
    except (ValueError, RecursionError):
        return False
    return True


def _payload(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def gpt5_rewrite_allowed(body: bytes) -> bool:
    """Whether the proxy may rewrite C{body} (a gpt-5 request; see docs/reference/endpoints.md)."""
    payload = _payload(body)
    model = payload.get("model") if isinstance(payload, dict) else None
    return isinstance(model, str) and model[:5].lower() == "gpt-5"


def usage_request_allowed(body: bytes, path: bytes) -> bool:
    """Whether the proxy may add C{stream_options} to C{body} (a streamed
    chat request, with STREAM_USAGE on as by default; see docs/reference/metrics.md)."""
    payload = _payload(body)
    return (path.split(b"?")[0].endswith(b"/v1/chat/completions") and isinstance(payload, dict)
            and payload.get("stream") is True)


def check_proxy_error(answer: Answer, head: bool) -> None:
    """An answer the proxy made itself: JSON, with error.message and error.type."""
    content_type = answer.header(b"content-type") or b""
    assert content_type.startswith(b"application/json"), answer
    if head and not answer.body:
        return
    document = json.loads(answer.body)
    error = document["error"]
    assert isinstance(error["message"], str) and error["message"].strip(), document
    assert isinstance(error["type"], str) and error["type"], document


_LOOPBACK_ORIGIN = re.compile(rb"https?://(localhost|127\.0\.0\.1|\[::1\])(:[^/]*)?(/.*)?", re.IGNORECASE)


def origin_may_use(mode: str, origin: bytes | None) -> bool:
    """Whether a request with this Origin may be forwarded (docs/how-to/access-and-tokens.md):
    none, one on this machine, or (token mode) the allowed one.  A loose
    test: it only has to hold for every request that is forwarded."""
    if origin is None or _LOOPBACK_ORIGIN.fullmatch(origin):
        return True
    return mode == "token" and origin.rstrip(b"/") == b"https://app.example"


def check_forwarded(mode: str, request: FuzzRequest, sent: Received) -> None:
    """A request that reached the upstream did so well formed, with the key,
    without the client's credentials, and only with the token when one is
    required."""
    assert _TARGET_RE.fullmatch(sent.url), f"URL not a valid request target: {sent.url!r}"
    # What the proxy asked for is what the upstream got; but for a ";" that
    # ends the path, which Twisted's Agent drops: that is for its own test,
    # test_bug_trailing_semicolon_is_cut_off_upstream, to catch.
    url_path, question, url_query = sent.url.partition(b"?")
    assert sent.url == UPSTREAM + sent.uri or (
        url_path.endswith(b";") and url_path[:-1] + question + url_query == UPSTREAM + sent.uri), (
        sent.url, sent.uri)
    assert sent.url.startswith(BASE + b"/"), sent.url
    path, _, _ = sent.uri.partition(b"?")
    assert path.startswith(b"/genai/"), sent.uri
    # Decoded as the upstream will (%76%31 is v1): /genai/ itself, or below /genai/v1/.
    segments = [unquote_to_bytes(s) for s in path.split(b"/")[2:]]
    assert segments == [b""] or segments[0] == b"v1" and len(segments) > 1, sent.uri
    assert not {b".", b".."} & set(segments), f"a dot segment went upstream: {sent.uri!r}"
    assert not any(b"/" in s for s in segments), f"an encoded slash went upstream: {sent.uri!r}"
    # treq upper-cases the method (a lower-case one is another method by the RFC).
    assert sent.method == request.method.upper()
    for headers in (sent.agent_headers, sent.headers):
        assert headers.getRawHeaders(b"authorization") is None
        assert headers.getRawHeaders(b"proxy-authorization") is None
        assert headers.getRawHeaders(SUBSCRIPTION) == [KEY]
        for name, values in headers.getAllRawHeaders():
            assert _TOKEN_RE.fullmatch(name), name
            for value in values:
                assert not set(value) & set(b"\r\n\x00"), (name, value)
    assert origin_may_use(mode, request.header(b"origin")), "forwarded for a foreign web page"
    if mode == "token" and request.method == b"OPTIONS":  # CORS on: preflights are answered here
        assert not (request.header(b"origin") and request.header(b"access-control-request-method"))
    with_version = {url + b"?api-version=" + API_VERSION for url in OPEN_PROBES}
    probe = sent.url in OPEN_PROBES or sent.url in with_version
    if mode == "token" and not request.carries_token:
        assert probe, f"forwarded without the token: {sent.url!r}"
        assert sent.method in (b"GET", b"HEAD") and sent.body == b""
    client_body = request.sent_body
    if client_body is None or sent.body == client_body:
        return
    if probe:
        assert sent.body == b"", "an open probe forwarded a body"
        return
    assert gpt5_rewrite_allowed(client_body) or usage_request_allowed(client_body, sent.url), (
        "the body changed", client_body[:200], sent.body[:200])
    if is_json(client_body):
        assert is_json(sent.body), f"JSON rewritten into something else: {sent.body[:200]!r}"


def check_exchange(mode: str, result: Exchange) -> None:
    """The properties every exchange has, whatever was sent."""
    request = result.request
    head = request.method == b"HEAD"
    assert not result.crashes, "\n".join(result.crashes)
    assert result.answers or result.closed, "no answer, and the connection left open"
    assert len(result.received) <= 1, result.received
    for answer in result.answers:
        assert answer.status != 500, answer
        assert b"Traceback" not in answer.body and b'File "' not in answer.body, answer
        if answer.header(b"x-upstream-status") is not None:
            assert len(result.received) == 1, answer
            assert (answer.status, answer.header(b"x-upstream-status")) == (200, b"200"), answer
            assert answer.body == (b"" if head else UPSTREAM_BODY), answer
        elif answer.status >= 400:
            check_proxy_error(answer, head)
    if result.received:
        assert any(a.header(b"x-upstream-status") for a in result.answers), (
            "the upstream answered but the client did not get it", result.answers)
        check_forwarded(mode, request, result.received[0])
