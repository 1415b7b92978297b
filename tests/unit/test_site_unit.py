"""The site's answers that no resource gives, and its token verdict, in memory."""

from __future__ import annotations

import json

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from genaiproxy.config.credentials import ClientTokens
from genaiproxy.server.channel import ClientLimits
from genaiproxy.server.site import AccessPolicy, ProxySite

TOKEN = b"tok-site-unit"


class Verdict(Resource):
    """A leaf that answers with the site's token verdict on its request."""

    isLeaf = True

    def __init__(self, public: bool) -> None:
        super().__init__()
        self.public = public

    def render_GET(self, request) -> bytes:
        return json.dumps({"authorized": request.authorized,
                           "client": request.client_name}).encode()


def exchange(raw: bytes, token: str = "") -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The status line, headers (lower-cased names) and body of the answer
    to C{raw}, from a site whose clients need C{token} (none: open)."""
    tokens = ClientTokens()
    tokens.set_single(token)
    root = Resource()
    root.putChild(b"open", Verdict(public=True))
    root.putChild(b"guarded", Verdict(public=False))
    anthropic = Verdict(public=False)
    anthropic.anthropic = True  # type: ignore[attr-defined]
    root.putChild(b"anthropic", anthropic)
    site = ProxySite(root, AccessPolicy(tokens, ()), ClientLimits())
    site.reactor = Clock()  # type: ignore[assignment]
    transport = StringTransport()
    channel = site.buildProtocol(None)
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(b": ") for line in lines)}
    return status, headers, body


def test_options_star_is_answered_by_the_proxy():
    """C{OPTIONS *} gets an empty 200 with the proxy's Server header, a
    request id and a date (twisted.web would answer it with its own)."""
    status, headers, body = exchange(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == b"HTTP/1.1 200 OK"
    assert headers[b"server"].startswith(b"genai-proxy/")
    assert headers[b"x-request-id"] and headers[b"date"]
    assert headers[b"content-length"] == b"0" and body == b""


def test_another_method_on_star_is_a_json_405():
    """Any other method on C{*} is a JSON 405 that allows OPTIONS only."""
    status, headers, body = exchange(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 405 ")
    assert headers[b"allow"] == b"OPTIONS" and headers[b"x-request-id"]
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


@pytest.mark.parametrize(("token", "authorization", "authorized"), [
    ("", b"", True),
    ("", b"Bearer whatever", True),
    (TOKEN.decode(), b"", False),
    (TOKEN.decode(), b"Bearer wrong", False),
    (TOKEN.decode(), b"Bearer " + TOKEN, True),
])
def test_a_public_resource_reads_the_sites_token_verdict(token, authorization, authorized):
    """The site checks the token of every request it resolves, public ones
    included, and records the verdict: a public resource (the /health
    probe of every upstream) shows more to a client with a valid token
    without checking it again.  A public request names no client."""
    header = b"Authorization: " + authorization + b"\r\n" if authorization else b""
    status, _, body = exchange(b"GET /open HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n", token)
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body) == {"authorized": authorized, "client": ""}


def test_a_guarded_resource_needs_the_token_and_names_its_client():
    """A guarded resource is reached only with the token, and its request
    names the client the token belongs to."""
    raw = b"GET /guarded HTTP/1.1\r\nHost: x\r\n"
    status, headers, _ = exchange(raw + b"\r\n", TOKEN.decode())
    assert status.startswith(b"HTTP/1.1 401 ") and headers[b"www-authenticate"]
    status, _, body = exchange(raw + b"Authorization: Bearer " + TOKEN + b"\r\n\r\n", TOKEN.decode())
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body) == {"authorized": True, "client": "default"}


@pytest.mark.parametrize("headers", [
    b"x-api-key: " + TOKEN + b"\r\n",
    b"Authorization: Bearer " + TOKEN + b"\r\n",
    b"Authorization: Bearer " + TOKEN + b"\r\nx-api-key: " + TOKEN + b"\r\n",
    b"Authorization: Bearer stale\r\nx-api-key: " + TOKEN + b"\r\n",
])
def test_the_token_may_come_as_x_api_key(headers):
    """The Anthropic SDKs and Claude Code send the token as x-api-key, as a
    Bearer token, or both: each is accepted."""
    raw = b"GET /guarded HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    status, _, body = exchange(raw, TOKEN.decode())
    assert status == b"HTTP/1.1 200 OK"
    assert json.loads(body)["client"] == "default"


def test_an_anthropic_resources_errors_are_in_anthropics_shape():
    """A request of the Messages API that is refused gets Anthropic's error
    shape, with the type its status means, and a request-id header."""
    status, headers, body = exchange(b"GET /anthropic HTTP/1.1\r\nHost: x\r\n"
                                     b"x-api-key: wrong\r\n\r\n", TOKEN.decode())
    assert status.startswith(b"HTTP/1.1 401 ")
    document = json.loads(body)
    assert document["type"] == "error" and document["error"]["type"] == "authentication_error"
    assert document["error"]["message"]
    assert headers[b"request-id"] == headers[b"x-request-id"]


@pytest.mark.parametrize(("code", "kind"), [
    (400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
    (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"),
    (500, "api_error"), (502, "api_error"), (503, "overloaded_error"), (504, "api_error"),
    (529, "overloaded_error"), (422, "invalid_request_error"),
])
def test_each_status_has_its_anthropic_error_type(code, kind):
    """An OpenAI-style error (or an APIM portal's) keeps its message in
    Anthropic's shape, with the type Anthropic uses for the status."""
    from genaiproxy.api.errors import anthropic_error

    assert anthropic_error(code, {"error": {"message": "m", "type": "x"}}) == {
        "type": "error", "error": {"type": kind, "message": "m"}}
    assert anthropic_error(code, {"statusCode": code, "message": "Resource not found"})[
        "error"]["message"] == "Resource not found"
