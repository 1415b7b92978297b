"""The retry chain: one outer Deferred around the attempts of one upstream call.

Backoff waits run on an injected clock (C{task.deferLater}), so tests drive
them with a L{twisted.internet.task.Clock}.  Besides failures, an answer
can ask to be tried again later (a 429 or 503 with C{Retry-After}): the
C{wait_asked} hook says how long, and the chain waits that long and retries
while retries remain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http_headers import Headers

from genaiproxy.upstream.failures import UpstreamError, classify

OnRetry = Callable[[int, float, UpstreamError], None]
# The answer of an attempt -> seconds it asks to wait before another, or None.
WaitAsked = Callable[[Any], "float | None"]
# (retry number, wait, the answer that asked for it)
OnWait = Callable[[int, float, Any], None]


def retry_after_seconds(headers: Headers, now: float) -> float | None:
    """The wait an answer asks for: C{retry-after-ms}, else C{Retry-After}
    in seconds or as an HTTP date (relative to C{now}); None when it asks none."""
    millis = headers.getRawHeaders(b"retry-after-ms")
    if millis:
        try:
            return max(float(millis[-1]), 0.0) / 1000
        except ValueError:
            pass
    given = headers.getRawHeaders(b"retry-after")
    if not given:
        return None
    value = given[-1].strip()
    if value.isdigit():
        return float(value)
    try:
        return max(http.stringToDatetime(value) - now, 0.0)
    except (ValueError, IndexError, KeyError):
        return None


class RetryingCall:
    """Run C{attempt} until it succeeds, retrying retryable failures with backoff.

    Retry I{n} (from 0) waits C{backoff_sec * 2**n}.  C{result} fires with the
    first successful attempt's value, or fails with the last L{UpstreamError}.
    Cancelling C{result} cancels whatever is in flight: the attempt (closing
    its connection) or the backoff wait.
    """

    def __init__(
        self,
        attempt: Callable[[], Deferred[Any]],
        clock: IReactorTime,
        max_retries: int,
        backoff_sec: float,
        on_retry: OnRetry,
        wait_asked: WaitAsked | None = None,
        on_wait: OnWait | None = None,
    ) -> None:
        self._attempt_fn = attempt
        self._wait_asked = wait_asked
        self._on_wait = on_wait
        self._clock = clock
        self._max_retries = max_retries
        self._backoff_sec = backoff_sec
        self._on_retry = on_retry
        self._retries = 0
        self._current: Deferred[Any] | None = None
        self._cancelled = False
        self.result: Deferred[Any] = Deferred(self._cancel)

    def start(self) -> Deferred[Any]:
        """Make the first attempt; return L{result}."""
        self._attempt()
        return self.result

    def _attempt(self) -> None:
        current = self._current = defer.maybeDeferred(self._attempt_fn)
        current.addCallbacks(self._succeeded, self._failed)

    def _succeeded(self, value: Any) -> None:
        self._current = None
        if self._cancelled:
            return
        if self._wait_asked is not None and self._retries < self._max_retries:
            delay = self._wait_asked(value)
            if delay is not None:
                self._retries += 1
                if self._on_wait is not None:
                    self._on_wait(self._retries, delay, value)
                self._retry_after(delay)
                return
        self.result.callback(value)

    def _retry_after(self, delay: float) -> None:
        waiting = self._current = task.deferLater(self._clock, delay, self._attempt)
        waiting.addErrback(lambda f: f.trap(defer.CancelledError))

    def _failed(self, failure: Failure) -> None:
        self._current = None
        if self._cancelled:
            return
        problem = classify(failure)
        if not problem.retryable or self._retries >= self._max_retries:
            self.result.errback(problem)
            return
        delay = self._backoff_sec * 2**self._retries
        self._retries += 1
        self._on_retry(self._retries, delay, problem)
        self._retry_after(delay)

    def _cancel(self, _: Deferred[Any]) -> None:
        self._cancelled = True
        if self._current is not None:
            self._current.cancel()
