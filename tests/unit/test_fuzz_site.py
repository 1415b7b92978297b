"""Property tests of the whole Site: any bytes a client sends get a safe answer.

The proxy faces clients it does not control (SDKs, browsers, scanners), so
every request, however malformed, must end in one of two ways: a JSON error
the proxy makes itself (C{{"error": {"message", "type", ...}}}), or a request
that reached the upstream well formed: under the base URL, with the
subscription key and without the client's credential, and, when a token is
required, only if the client presented it.  Never a traceback in a body,
never a 500 of the proxy's own, never a crash in its log.

Hypothesis writes raw HTTP/1.1 requests (a client library would refuse most
of them: odd methods, percent-encoded dot segments and slashes, raw UTF-8 in
the target, invalid header names, control bytes and obs-text in values,
malformed and deeply nested JSON, huge numbers, invalid UTF-8) and feeds them
to a channel of the real L{ProxySite}, wired as L{build_service} wires it,
over a L{StringTransport}.  Everything runs in memory on a
L{MemoryReactorClock}: the upstream is treq's L{RequestTraversalAgent}
serving a recording resource (which parses what the proxy sends as a real
Twisted server does), wrapped so that its answers arrive a turn later as a
network's would; time is advanced by hand to bring out the timeout answers.

Two configurations: an open proxy with the defaults, and a shared one with
AUTH_TOKEN, CORS on, GENAI_API_VERSION and a small body limit (so 413 is
reached too).  Sizes are bounded and large payloads are built from small
draws (a nesting depth, a digit count), so that generation stays cheap and
hypothesis' health checks hold on a loaded two-core machine.

The tests named C{test_bug_*} pin down bugs these properties found, kept as
regression tests; the fuzz tests' explicit examples hold the same inputs.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from hypothesis import event, example, given
from support.fuzz_harness import (
    API_SETTINGS,
    FUZZ_SETTINGS,
    Exchange,
    FuzzRequest,
    exchange,
)
from support.fuzz_properties import check_exchange, gpt5_rewrite_allowed, is_json, usage_request_allowed
from support.fuzz_proxy import API_VERSION, BASE, MODELS_YAML, MODES, SUBSCRIPTION, TOKEN, build_proxy
from support.fuzz_strategies import (
    api_requests,
    fuzz_requests,
    post,
)


@pytest.fixture(scope="module")
def models_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A models.yaml (module-scoped: hypothesis wants no per-test fixture)."""
    path: Path = tmp_path_factory.mktemp("fuzz") / "models.yaml"
    path.write_text(MODELS_YAML)
    return str(path)


def run(mode: str, models_path: str, request: FuzzRequest) -> Exchange:
    """One exchange with a fresh proxy of C{mode}, checked for the properties."""
    result = exchange(build_proxy(mode, models_path), request)
    check_exchange(mode, result)
    return result


# The tests.

MODE_PARAMS = pytest.mark.parametrize("mode", sorted(MODES))


@MODE_PARAMS
@FUZZ_SETTINGS
@given(request=fuzz_requests())
@example(request=post(b"/v1/chat/completions", b"[" * 50000))
@example(request=post(b"/v1/chat/completions", b'{"model":"gpt-4.1","n":' + b"9" * 5000 + b"}"))
@example(request=post(b"/v1/responses", b'{"model":"gpt-5","input":"x","stream":"yes"}', framing="chunked"))
@example(request=post(b"/v1/chat/completions", b'{"model":["gpt-5"],"stream":true}'))
@example(request=post(b"/v1/embeddings", b"\xff\xfe\xc3(", (b"Content-Type", b"application/json")))
@example(request=post(b"/v1/../../admin", b""))
@example(request=post(b"/v1/files/%2E%2E/%2e%2E/secret", b"", method=b"GET"))
@example(request=post(b"/v1/a%2Fb/..%2F..%2Fc", b"", method=b"GET"))
@example(request=post(b"/health/../v1/models", b"", method=b"GET"))
@example(request=post(b"/v1/x%00y?q=%00&z=\xc3\xa9", b"", method=b"DELETE"))
@example(request=post(b"/v1/\xc3\xa9t\xc3\xa9", b"", method=b"GET"))
@example(request=post(b"/v1/caf\xa9", b"", method=b"GET"))
@example(request=post(b"/v1/files/..;", b"", method=b"GET"))
@example(request=FuzzRequest(b"HEAD", b"/x\xa9"))
@example(request=post(b"xv1/../admin", b"", method=b"GET"))
@example(request=post(b"/v1/files?a=1#b=2", b"", method=b"GET"))
@example(request=post(b"/v1/chat/completions", b"{}", (b"X:Y", b"1"), (b"X-A", b"\x80\xff")))
@example(request=post(b"/v1/chat/completions", b"{}", (b"Connection", b"Ocp-Apim-Subscription-Key"),
                      (SUBSCRIPTION, b"forged")))
@example(request=FuzzRequest(b"GET", b"/v1/models", headers=((b"Host", b"x"),)))
@example(request=FuzzRequest(b"POST", b"/v1/chat/completions",
                             headers=((b"Authorization", b"Bearer " + TOKEN + b"x"),), body=b"{}"))
@example(request=FuzzRequest(b"GET", b"/health?secret=1", headers=((b"Host", b"x"),), body=b"zz"))
@example(request=FuzzRequest(b"OPTIONS", b"/v1/chat/completions", headers=(
    (b"Origin", b"https://app.example"), (b"Access-Control-Request-Method", b"P\x01\xffST"))))
@example(request=FuzzRequest(b"POST", b"/v1/files", headers=(
    (b"Authorization", b"Bearer " + TOKEN),), body=b"x" * 30000, framing="chunked", cuts=(7,)))
def test_any_request_gets_a_json_error_or_reaches_the_upstream_well_formed(
        mode: str, models_path: str, request: FuzzRequest) -> None:
    """Whatever a client sends, it gets complete, well-framed answers: a JSON
    error with error.message and error.type, a local answer, or the
    upstream's answer to a well-formed request (under the base URL, no dot
    segment, the key set, no client credential, the token presented when
    one is required, the body as sent unless a gpt-5 rewrite, still JSON).
    Never a 500, a traceback, a logged crash or a hung connection."""
    result = run(mode, models_path, request)
    # The mix of outcomes, shown by --hypothesis-show-statistics.
    if result.received:
        chunked = any(a.header(b"transfer-encoding") for a in result.answers)
        event("forwarded, answer streamed" if chunked else "forwarded")
    else:
        event(f"answered {result.answers[0].status}" if result.answers else "closed without an answer")


@MODE_PARAMS
@API_SETTINGS
@given(request=api_requests())
@example(request=post(b"/v1/chat/completions", b'{"model":"gpt-5","max_tokens":8,"temperature":0.2}'))
@example(request=post(b"/v1/responses", b'{"model":"GPT-5-mini","max_tokens":8,"stream":true}'))
@example(request=post(b"/v1/embeddings", b'{"input":"\\ud800"}'))
def test_well_formed_api_requests_with_the_token_reach_the_upstream_intact(
        mode: str, models_path: str, request: FuzzRequest) -> None:
    """A well-formed request to a forwarded route, with the token, reaches the
    upstream once, whatever its body: same method, path and query (plus the
    configured api-version), the client's own headers, and the body byte for
    byte (a gpt-5 request may be rewritten, into JSON)."""
    result = run(mode, models_path, request)
    if mode == "token" and len(request.body) > 20_000:  # MAX_REQUEST_BODY_MB
        assert [a.status for a in result.answers] == [413] and not result.received
        return
    assert len(result.received) == 1, result.answers
    sent = result.received[0]
    path, _, query = request.target.partition(b"?")
    if mode == "token":
        extra = b"api-version=" + API_VERSION
        query = query + b"&" + extra if query else extra
    assert sent.url == BASE + path + (b"?" + query if query else b"")
    # The client's own headers go as they are (but Accept, which a gpt-5 stream gets set).
    gpt5 = gpt5_rewrite_allowed(request.body) and path in (b"/v1/chat/completions", b"/v1/responses")
    for name, value in request.headers:
        if name.lower() not in (b"host", b"authorization") and not (gpt5 and name.lower() == b"accept"):
            assert value in sent.headers.getRawHeaders(name, []), (name, value)
    if sent.body != request.body:
        assert gpt5 or usage_request_allowed(request.body, path), "the body changed on its way"


# Bugs the properties above found (fixed in 44e23ef, 48605ad and after),
# kept as regression tests: each docstring says what went wrong.


@MODE_PARAMS
def test_bug_head_on_a_post_only_route_is_a_json_405_not_a_500(mode: str, models_path: str) -> None:
    """Was: HEAD /v1/chat/completions (or /v1/responses) answers 500 with
    Twisted's HTML "Processing Failed": JSONResource.render finds
    twisted.web.resource.Resource.render_HEAD, which calls a render_GET that
    Forwarded does not have for POST-only routes."""
    for target in (b"/v1/chat/completions", b"/v1/responses"):
        result = run(mode, models_path, post(target, b"", method=b"HEAD", framing="none"))
        assert [a.status for a in result.answers] == [405]
        assert b"HEAD" not in (result.answers[0].header(b"allow") or b"")


@MODE_PARAMS
def test_bug_gpt5_rewrite_of_a_lone_surrogate_escape_is_forwarded(mode: str, models_path: str) -> None:
    """Was: a gpt-5 chat request that is rewritten (max_tokens here) and holds
    a lone surrogate escape (valid JSON text, e.g. half an emoji cut by a
    client) answers 500: prepare_body re-serialises with ensure_ascii=False,
    and encoding the lone surrogate to UTF-8 raises UnicodeEncodeError."""
    body = b'{"model":"gpt-5","max_tokens":16,"messages":[{"role":"user","content":"\\ud83d"}]}'
    result = run(mode, models_path, post(b"/v1/chat/completions", body))
    assert [a.status for a in result.answers] == [200]
    assert len(result.received) == 1


@MODE_PARAMS
def test_bug_gpt5_rewrite_keeps_a_huge_number_json(mode: str, models_path: str) -> None:
    """Was: a gpt-5 request that is rewritten and holds a number beyond a
    double (1e999, valid JSON) goes upstream as "Infinity", which is not
    JSON: prepare_body parses it to float('inf') and json.dumps writes it
    with allow_nan=True."""
    body = b'{"model":"gpt-5","max_tokens":16,"top_p":1e999,"messages":[]}'
    result = run(mode, models_path, post(b"/v1/chat/completions", body))
    assert len(result.received) == 1
    assert is_json(result.received[0].body), result.received[0].body


@MODE_PARAMS
def test_bug_raw_bytes_0x7f_to_0xb0_in_a_v1_path_are_not_a_500(mode: str, models_path: str) -> None:
    """Was: "GET /v1/caf\\xa9 HTTP/1.1" answers 500 (Twisted's HTML
    "Processing Failed"): Twisted's request-line check rejects target bytes
    "c <= 32 or c > 176", a decimal 176 where octal 0o176 ("~") was meant,
    so bytes 0x7f-0xb0 get through, and Passthrough.render's
    request.path.decode("ascii") raises UnicodeDecodeError."""
    result = run(mode, models_path, post(b"/v1/caf\xa9", b"", method=b"GET"))
    assert [a.status for a in result.answers] != [500]


@MODE_PARAMS
def test_bug_trailing_semicolon_sends_a_dot_segment_upstream(mode: str, models_path: str) -> None:
    """Was: "GET /v1/..;" passes Passthrough's dot-segment check ("..;" is
    not ".."), and Twisted's Agent then sends the path as "/genai/v1/..":
    URI.originForm re-joins path and ";params" with urlunparse, which drops
    an empty parameter.  The upstream resolves it to /genai/, outside /v1
    (and "/v1/files/x;" reaches it as "/v1/files/x").  A 404, or the path
    forwarded as sent, would do."""
    for target in (b"/v1/..;", b"/v1/files/%2e%2e;"):
        run(mode, models_path, post(target, b"", method=b"GET"))


@MODE_PARAMS
def test_bug_target_without_its_leading_slash_leaves_v1_upstream(mode: str, models_path: str) -> None:
    """Was: "GET xv1/../admin HTTP/1.1" reaches the upstream as
    "/genai/xv1/../admin", that is /genai/admin.  twisted.web resolves a
    target by dropping its first byte, whatever it is (postpath =
    path[1:].split("/")), so "xv1/..." is routed to /v1's passthrough;
    Passthrough.render splits request.path itself, takes "xv1" for the
    "v1" segment it skips, checks only what follows ("..", "admin" ->
    "admin"), and forwards request.path as it came."""
    for target in (b"xv1/../admin", b"*v1/%2e%2e/admin"):
        run(mode, models_path, post(target, b"", method=b"GET"))


@MODE_PARAMS
def test_bug_hash_in_the_query_cuts_it_short_upstream(mode: str, models_path: str) -> None:
    """Was (minor): "GET /v1/files?a=1#b=2" is accepted (Twisted's parser
    takes any printable byte) and its query forwarded as it is, but
    Twisted's Agent parses the URL again and drops "#b=2" as a fragment:
    the upstream gets "?a=1", and in token mode the api-version the proxy
    appends after it ("?a=1#b=2&api-version=...") is lost too.  urls.py's
    target_safe could percent-encode "#" like the other bytes a request
    target may not hold (as 44e23ef does)."""
    run(mode, models_path, post(b"/v1/files?a=1#b=2", b"", method=b"GET"))


def test_bug_head_with_a_raw_high_byte_breaks_the_json_log(models_path: str) -> None:
    """Was: "HEAD /x\\xa9 HTTP/1.1" (a byte Twisted lets through, see
    above) gets a 404 whose body twisted.web drops, logging "HEAD request
    {slf} ... is returning a message body" under the ProxyRequest's
    namespace (genaiproxy.server.site.ProxyRequest).  LinesObserver renders it as
    one of its own events; str(request) decodes the URI as ASCII and raises
    UnicodeDecodeError, a ValueError, so render falls back to
    repr(record), which raises again: the event, and in the service the
    whole batch being written with it, is lost."""
    result = exchange(build_proxy("open", models_path), FuzzRequest(b"HEAD", b"/x\xa9"))
    assert not result.crashes, "\n".join(result.crashes)


@MODE_PARAMS
def test_bug_asterisk_target_gets_a_json_error(mode: str, models_path: str) -> None:
    """Was: "GET * HTTP/1.1" (any method but OPTIONS) is answered by
    twisted.web's Request.process itself (_handleStar), before the Site:
    a 405 without a body or Content-Type, with "Server: TwistedWeb/<version>"
    and no X-Request-ID, instead of the proxy's JSON error."""
    result = run(mode, models_path, FuzzRequest(b"GET", b"*", headers=((b"Host", b"x"),)))
    assert result.answers[0].header(b"server") == b"genai-proxy/0.1.0"
    assert result.answers[0].header(b"x-request-id")


def test_bug_upstream_answer_before_the_upload_is_sent_reads_a_closed_file(models_path: str) -> None:
    """Was: when the upstream answers a spooled upload (a chunked body, or
    one of 100 kB and more) before the proxy has sent all of it (a gateway's
    early 401 or 413), the proxy relays the answer and finishes the client's
    request, and twisted.web closes the spool file; Twisted's client goes on
    sending the body (state TRANSMITTING_AFTER_RECEIVING_RESPONSE), and
    FileBodyProducer reads the closed file: "ValueError: read of closed
    file", logged with "Error writing request, but not in valid state to
    finalize request"."""
    proxy = build_proxy("open", models_path, early_rejection=True)
    proxy.hold_uploads = True  # the upload is still under way when the answer comes
    request = post(b"/v1/files", b"x" * 200_000, (b"Content-Type", b"application/octet-stream"))
    result = exchange(proxy, request)
    assert [a.status for a in result.answers] == [413]
    assert not result.crashes, "\n".join(result.crashes)


def test_bug_an_upstream_answer_that_arrives_at_once_crashes_the_forward(models_path: str) -> None:
    """Was (latent): ForwardCall.start assumes the upstream call has not
    finished when upstream.call() returns.  When it has (an agent that
    answers at once, as treq's RequestTraversalAgent does, or an attempt
    that fails at once and is not retried), _respond or _failed sets
    self._call to None before start() calls self._call.addErrback:
    AttributeError, a 500, and a RuntimeError for writing after finish."""
    proxy = build_proxy("open", models_path)
    proxy.agent.immediate = True
    result = exchange(proxy, post(b"/v1/chat/completions", b"{}"))
    assert not result.crashes, "\n".join(result.crashes)
    assert [a.status for a in result.answers] == [200]


def test_bug_early_refusals_carry_no_x_request_id(models_path: str) -> None:
    """Was (README vs behaviour): README says "Every answer carries
    X-Request-ID", but the channel's own refusals (400 for what is not
    HTTP/1.1, 408, 414, 431), written by ProxyChannel.refuse before any
    request exists, had none (fixed in 48605ad)."""
    for request in (FuzzRequest(b"GET", b"/v1/models", version=b"HTTP/9.9"),
                    FuzzRequest(b"GET", b"/v1/" + b"x" * 20000)):
        result = run("open", models_path, request)
        assert [a.status for a in result.answers] in ([400], [414])
        assert result.answers[0].header(b"x-request-id"), result.answers[0]


@MODE_PARAMS
def test_bug_trailing_semicolon_is_cut_off_upstream(mode: str, models_path: str) -> None:
    """Was (minor): "GET /v1/files/x;" was forwarded, but reached the
    upstream as "/genai/v1/files/x": Twisted's Agent splits the last
    segment's ";params" off (urlparse) and, when they are empty, does not
    put the ";" back (URI.originForm's urlunparse).  44e23ef stopped "..;"
    from becoming ".."; this is the path sent as it came (a trailing ";"
    percent-encoded will do)."""
    result = run(mode, models_path, post(b"/v1/files/x;", b"", method=b"GET"))
    for sent in result.received:  # as sent, or percent-encoded
        assert unquote_to_bytes(sent.uri.partition(b"?")[0]) == b"/genai/v1/files/x;", sent.uri


def test_bug_lower_case_method_goes_upstream_in_upper_case(models_path: str) -> None:
    """Was (minor): methods are case-sensitive (RFC 9110), and README says
    other /v1 paths are forwarded "with its method", but "delete" went
    upstream as "DELETE": treq's HTTPClient.request upper-cases every method.
    Refusing a method that is not upper case will do."""
    result = run("open", models_path, post(b"/v1/files/file-1", b"", method=b"delete"))
    assert [r.method for r in result.received] in ([], [b"delete"])
