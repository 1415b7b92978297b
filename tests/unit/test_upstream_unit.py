"""The retry chain, error classification, URLs and outgoing headers, driven by a Clock."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet import defer, error
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent
from zope.interface import implementer

from genaiproxy.config.environment import load_config
from genaiproxy.upstream.client import UpstreamClient
from genaiproxy.upstream.failures import UpstreamError, classify
from genaiproxy.upstream.retry import RetryingCall, retry_after_seconds
from genaiproxy.upstream.urls import as_sent, join_url, target_safe

ENV = {
    "GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
    "GENAI_API_KEY": "key-1234567",
    "GENAI_BASE_URL": "http://upstream.invalid/genai",
}


class ScriptedAttempts:
    """An attempt function whose Deferreds the test fires by hand."""

    def __init__(self) -> None:
        self.pending: list[Deferred[Any]] = []
        self.cancelled = 0

    def __call__(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred(lambda _: self._cancel())
        self.pending.append(d)
        return d

    def _cancel(self) -> None:
        self.cancelled += 1

    def fail_last(self, exception: Exception) -> None:
        self.pending[-1].errback(Failure(exception))


def make_call(attempts: ScriptedAttempts, clock: Clock, retries: int = 2, backoff: float = 0.5):
    log: list[tuple[int, float, str]] = []
    call = RetryingCall(attempts, clock, retries, backoff,
                        lambda n, delay, problem: log.append((n, delay, problem.kind)))
    return call, call.start(), log


def test_retries_with_exponential_backoff_then_succeeds():
    clock, attempts = Clock(), ScriptedAttempts()
    call, result, log = make_call(attempts, clock)
    attempts.fail_last(error.ConnectionRefusedError())
    assert log == [(1, 0.5, "connect_error")]
    clock.advance(0.49)
    assert len(attempts.pending) == 1, "retried before the backoff ended"
    clock.advance(0.01)
    assert len(attempts.pending) == 2
    attempts.fail_last(ResponseNeverReceived([Failure(error.ConnectionLost())]))
    assert log[-1] == (2, 1.0, "connection_lost")
    clock.advance(1.0)
    attempts.pending[-1].callback("answer")
    assert result.result == "answer"


def test_gives_up_after_max_retries():
    clock, attempts = Clock(), ScriptedAttempts()
    call, result, log = make_call(attempts, clock, retries=2)
    for _ in range(3):
        attempts.fail_last(error.ConnectionRefusedError())
        clock.advance(10)
    assert len(attempts.pending) == 3
    failure = []
    result.addErrback(failure.append)
    assert failure[0].check(UpstreamError) and failure[0].value.kind == "connect_error"
    assert [n for n, _, _ in log] == [1, 2]


def test_zero_retries_fails_at_once():
    clock, attempts = Clock(), ScriptedAttempts()
    call, result, log = make_call(attempts, clock, retries=0)
    attempts.fail_last(error.ConnectionRefusedError())
    assert log == [] and result.called
    result.addErrback(lambda f: None)


def test_other_errors_are_not_retried():
    clock, attempts = Clock(), ScriptedAttempts()
    call, result, log = make_call(attempts, clock)
    attempts.fail_last(ValueError("bad URL"))
    failures = []
    result.addErrback(failures.append)
    assert log == [] and failures[0].value.kind == "request_error"
    assert not failures[0].value.retryable


def test_cancel_during_attempt_cancels_it():
    clock, attempts = Clock(), ScriptedAttempts()
    call, result, log = make_call(attempts, clock)
    result.addErrback(lambda f: f.trap(defer.CancelledError))
    result.cancel()
    assert attempts.cancelled == 1
    assert log == []


def test_cancel_during_backoff_stops_retrying():
    clock, attempts = Clock(), ScriptedAttempts()
    call, result, log = make_call(attempts, clock)
    attempts.fail_last(error.ConnectionRefusedError())
    result.addErrback(lambda f: f.trap(defer.CancelledError))
    result.cancel()
    clock.advance(100)
    assert len(attempts.pending) == 1
    assert not clock.getDelayedCalls()


def asked_wait(value: Any) -> float | None:
    """Test hook: an answer C{("wait", seconds)} asks for that wait."""
    return value[1] if value[0] == "wait" else None


def make_waiting_call(attempts: ScriptedAttempts, clock: Clock, retries: int = 2):
    waits: list[tuple[int, float]] = []
    call = RetryingCall(attempts, clock, retries, 0.5, lambda *_: None,
                        wait_asked=asked_wait, on_wait=lambda n, wait, _: waits.append((n, wait)))
    return call.start(), waits


def test_answer_asking_a_wait_is_retried_after_exactly_that_wait():
    clock, attempts = Clock(), ScriptedAttempts()
    result, waits = make_waiting_call(attempts, clock)
    attempts.pending[-1].callback(("wait", 3.0))
    assert waits == [(1, 3.0)]
    clock.advance(2.9)
    assert len(attempts.pending) == 1
    clock.advance(0.1)
    assert len(attempts.pending) == 2
    attempts.pending[-1].callback(("ok", None))
    assert result.result == ("ok", None)


def test_answer_asking_a_wait_is_delivered_when_retries_are_spent():
    clock, attempts = Clock(), ScriptedAttempts()
    result, waits = make_waiting_call(attempts, clock, retries=1)
    attempts.pending[-1].callback(("wait", 1.0))
    clock.advance(1)
    attempts.pending[-1].callback(("wait", 1.0))
    assert result.result == ("wait", 1.0) and waits == [(1, 1.0)]


def test_cancel_during_an_asked_wait_stops_it():
    clock, attempts = Clock(), ScriptedAttempts()
    result, waits = make_waiting_call(attempts, clock)
    attempts.pending[-1].callback(("wait", 5.0))
    result.addErrback(lambda f: f.trap(defer.CancelledError))
    result.cancel()
    clock.advance(100)
    assert len(attempts.pending) == 1 and not clock.getDelayedCalls()


@pytest.mark.parametrize("headers, wait", [
    ({b"retry-after": [b"7"]}, 7.0),
    ({b"retry-after": [b"Thu, 01 Jan 1970 00:01:40 GMT"]}, 40.0),  # now = 60
    ({b"retry-after": [b"Thu, 01 Jan 1970 00:00:10 GMT"]}, 0.0),  # in the past
    ({b"retry-after-ms": [b"250"], b"retry-after": [b"1"]}, 0.25),
    ({b"retry-after-ms": [b"soon"], b"retry-after": [b"2"]}, 2.0),
    ({b"retry-after": [b"whenever"]}, None),
    ({}, None),
])
def test_retry_after_forms(headers, wait):
    """Seconds, an HTTP date, or OpenAI's retry-after-ms (which wins)."""
    assert retry_after_seconds(Headers(headers), now=60.0) == wait


@pytest.mark.parametrize(
    "failure, kind, retryable",
    [
        (error.ConnectionRefusedError(), "connect_error", True),
        (error.DNSLookupError("no such host"), "connect_error", True),
        (error.TimeoutError(), "connect_timeout", True),
        (defer.TimeoutError(), "read_timeout", True),
        (ResponseNeverReceived([Failure(error.ConnectionDone())]), "connection_lost", True),
        (ResponseNeverReceived([Failure(ValueError("bad status line"))]), "protocol_error", True),
        (KeyError("other"), "request_error", False),
    ],
)
def test_classify(failure, kind, retryable):
    problem = classify(Failure(failure))
    assert (problem.kind, problem.retryable) == (kind, retryable)


@given(
    base=st.sampled_from(["http://h", "http://h/", "http://h/genai", "http://h/genai/", "https://h:8443/a/b//"]),
    path=st.sampled_from(["/v1/models", "v1/models", "//v1/models", "/"]),
    query=st.sampled_from([b"", b"a=1", b"api-version=2024&x=%20"]),
)
def test_join_url_has_single_slashes(base, path, query):
    url = join_url(base, path, query).decode()
    scheme, _, rest = url.partition("://")
    location = rest.split("?")[0]
    assert "//" not in location
    assert location.startswith(base.partition("://")[2].rstrip("/"))
    assert url.endswith("?" + query.decode()) if query else "?" not in url


def test_headers_for_injects_key_and_drops_credentials():
    from twisted.internet.testing import MemoryReactorClock

    client = UpstreamClient(load_config(ENV), MemoryReactorClock())
    incoming = Headers({
        b"Authorization": [b"Bearer t"],
        b"OCP-APIM-SUBSCRIPTION-KEY": [b"forged"],
        b"Connection": [b"close, X-Secret-Hop"],
        b"X-Secret-Hop": [b"1"],
        b"Host": [b"127.0.0.1:8111"],
        b"Content-Length": [b"10"],
        b"X-Kept": [b"yes"],
    })
    out = client.headers_for(incoming, "rid-1")
    assert out.getRawHeaders(b"ocp-apim-subscription-key") == [b"key-1234567"]
    for name in (b"authorization", b"connection", b"x-secret-hop", b"host", b"content-length"):
        assert not out.hasHeader(name), name
    assert out.getRawHeaders(b"x-kept") == [b"yes"]
    assert out.getRawHeaders(b"x-request-id") == [b"rid-1"]


def test_no_injection_without_subscription():
    from twisted.internet.testing import MemoryReactorClock

    env = {**ENV, "GENAI_SUBSCRIPTION_NAME": "", "GENAI_API_KEY": ""}
    client = UpstreamClient(load_config(env), MemoryReactorClock())
    out = client.headers_for(Headers({b"X-A": [b"1"]}), "rid")
    assert [name for name, _ in out.getAllRawHeaders()] == [b"X-A", b"X-Request-Id"]


@implementer(IAgent)
class HangingAgent:
    """An agent whose requests never answer (until cancelled)."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes]] = []
        self.cancelled = 0

    def request(self, method, uri, headers=None, bodyProducer=None):
        self.requests.append((method, uri))
        return Deferred(lambda _: setattr(self, "cancelled", self.cancelled + 1))


def test_call_times_out_each_attempt_and_retries():
    """Each attempt gets REQUEST_TIMEOUT to bring headers, then is retried."""
    reactor = MemoryReactorClock()
    agent = HangingAgent()
    env = {**ENV, "REQUEST_TIMEOUT": "5", "MAX_RETRIES": "1", "RETRY_BACKOFF_SEC": "0.5"}
    client = UpstreamClient(load_config(env), reactor, agent=agent)
    retries: list[str] = []
    result = client.call(b"POST", client.request_url("/x"), Headers(), b"{}",
                         lambda n, d, p: retries.append(p.kind))
    reactor.advance(4.9)
    assert agent.cancelled == 0
    reactor.advance(0.1)
    assert agent.cancelled == 1 and retries == ["read_timeout"]
    reactor.advance(0.5)
    assert agent.requests == [(b"POST", b"http://upstream.invalid/genai/x")] * 2
    reactor.advance(5)
    failures = []
    result.addErrback(failures.append)
    assert failures[0].value.kind == "read_timeout"


@given(st.binary(max_size=64))
@example(b"a#b")
def test_target_safe_leaves_printable_ascii_and_encodes_the_rest(raw):
    """Only bytes a request target may not carry (and "#", which would start
    a fragment) are percent-encoded, and decoding gives back the original."""
    from urllib.parse import unquote_to_bytes

    safe = target_safe(raw)
    assert all(0x21 <= byte <= 0x7E for byte in safe) and b"#" not in safe
    if all(0x21 <= byte <= 0x7E and byte != ord("#") for byte in raw):
        assert safe == raw
    if b"%" not in raw:
        assert unquote_to_bytes(safe) == raw


def test_as_sent_urls_render_unchanged():
    """treq's to_uri().to_text() of an as_sent URL is the URL itself."""
    url = b"https://gw.example.com/genai/v1/x?ids=[1,2]&api-version=2024-10-21"
    assert as_sent(url).to_uri().to_text().encode("ascii") == url
