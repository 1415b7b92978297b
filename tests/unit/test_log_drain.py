"""How the log observer writes the events it gathered while the reactor runs
(L{genaiproxy.observe.logs.LinesObserver} with a clock): after a short
delay, a slice per reactor turn, each slice cut short once its lines are
long (a request logged with its 64 KB body), never so short that a busy
proxy falls behind."""

from __future__ import annotations

import io
import json
from threading import get_ident

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger
from twisted.python import threadable

from genaiproxy.observe import LinesObserver

BODY = "x" * 40_000  # two such lines pass the 64 KB of a slice


class Stream(io.StringIO):
    """A text sink that counts the writes made to it."""

    writes = 0

    def write(self, text: str, /) -> int:
        if text:
            self.writes += 1
        return super().write(text)


@pytest.fixture
def on_reactor_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's thread is the reactor's, as the proxy's events are."""
    monkeypatch.setattr(threadable, "ioThread", get_ident())


def observed(events: int, body: str) -> tuple[MemoryReactorClock, Stream, LinesObserver]:
    """A running clock, a stream, and an observer that gathered C{events}
    events, each with C{body}."""
    clock = MemoryReactorClock()
    clock.running = True
    stream = Stream()
    observer = LinesObserver(stream, clock=clock, flush_delay=0.05)
    log = Logger(namespace="genaiproxy.test", observer=observer)
    for number in range(events):
        log.info("request", number=number, body=body)
    return clock, stream, observer


def turn(clock: MemoryReactorClock) -> None:
    """Run the one call the observer scheduled, as the reactor's next turn
    would (the clock's advance would run the turns it schedules as well)."""
    [call] = clock.getDelayedCalls()
    run = call.func, call.args, call.kw
    call.cancel()
    run[0](*run[1], **run[2])


def written(stream: Stream) -> list[int]:
    """The numbers of the events written so far, in order."""
    return [json.loads(line)["number"] for line in stream.getvalue().splitlines()]


def test_events_are_written_after_the_delay_in_order(on_reactor_thread: None) -> None:
    """Gathered events are not written when logged, but once the delay
    passes: eight short lines in one write, in the order they were logged."""
    clock, stream, _ = observed(8, "short")
    clock.advance(0.049)
    assert written(stream) == []
    clock.advance(0.001)
    assert written(stream) == list(range(8)) and stream.writes == 1


def test_a_slice_ends_once_its_lines_are_long(on_reactor_thread: None) -> None:
    """Eight events of 40 KB each go out two a turn (a slice stops once its
    lines pass 64 KB), not all eight at once: each turn stays short."""
    clock, stream, _ = observed(8, BODY)
    turn(clock)
    assert written(stream) == [0, 1]
    turn(clock)
    assert written(stream) == [0, 1, 2, 3]
    for _ in range(2):
        turn(clock)
    assert written(stream) == list(range(8)) and stream.writes == 4
    assert not clock.getDelayedCalls()


def test_a_long_backlog_goes_a_sixteenth_at_least_each_turn(on_reactor_thread: None) -> None:
    """Behind 160 long events, a turn writes ten of them (a sixteenth of
    what waits), however long their lines: the backlog shrinks by a share
    each turn rather than two events at a time."""
    clock, stream, _ = observed(160, BODY)
    turn(clock)
    assert written(stream) == list(range(10))


def test_flush_writes_everything_at_once(on_reactor_thread: None) -> None:
    """flush (at shutdown) writes every gathered event in one go, and leaves
    no turn scheduled."""
    clock, stream, observer = observed(8, BODY)
    observer.flush()
    assert written(stream) == list(range(8)) and stream.writes == 1
    assert not clock.getDelayedCalls()


def test_an_event_that_cannot_be_shown_does_not_stop_the_others(on_reactor_thread: None) -> None:
    """An event whose time is not a number (or any field that cannot be
    shown) is written as unserializable_log_event, naming its fields but
    not their values, and the events after it are written as usual."""
    clock, stream, observer = observed(1, "short")
    observer({"log_format": "request", "log_namespace": "genaiproxy.test",
              "log_time": "not a time", "secret": "hunter2"})
    Logger(namespace="genaiproxy.test", observer=observer).info("request", number=2)
    clock.advance(0.05)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("number") for line in lines] == [0, None, 2]
    assert lines[1]["event"] == "unserializable_log_event" and lines[1]["of"] == "request"
    assert lines[1]["fields"] == ["secret"] and "hunter2" not in stream.getvalue()
    assert not clock.getDelayedCalls()
