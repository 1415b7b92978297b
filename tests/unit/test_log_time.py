"""The time of a log line: UTC to the millisecond, exactly as
C{datetime.isoformat} writes it, though the date and time of day are
formatted only once per second."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.observe import LinesObserver


def _expected(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def _logged_time(observer: LinesObserver, when: float) -> str:
    line = observer.render({"log_namespace": "genaiproxy.x", "log_format": "tick",
                            "log_time": when})
    return str(json.loads(line)["time"])


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
def test_time_is_datetimes_to_the_millisecond(times: list[float]) -> None:
    """Any sequence of times (the same second again, another second, going
    back) is written as datetime writes each."""
    observer = LinesObserver(io.StringIO())
    for when in times:
        assert _logged_time(observer, when) == _expected(when)


def test_rounding_at_the_edges() -> None:
    """A time a hair before the next second or millisecond rounds as
    datetime rounds it (to the microsecond, half to even, then cut)."""
    observer = LinesObserver(io.StringIO())
    for when in (0.0, 1.9999995, 1.9999994, 5.0005, 1e9 + 0.9999999, 1800000000.0469995,
                 1800000000.9999996):
        assert _logged_time(observer, when) == _expected(when)
