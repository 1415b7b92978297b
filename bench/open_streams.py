"""The pieces of the open-streams phase (L{bench.phase_open_streams}): how
many streams the open-files limit allows, one client connection's state,
the mock's counters, and how many events a held stream lasts."""

from __future__ import annotations

import json
import math
import resource
import socket
import urllib.request
from typing import Any

from bench.common import HOST, SSEResponse, StreamAPI
from bench.procs import raise_nofile

__all__ = ["Conn", "hold_events", "mock_stats", "plan_streams"]


def plan_streams(wanted: int, margin: int) -> dict[str, Any]:
    """Raise the open-files limit for C{wanted} streams, or find how many fit."""
    need = 2 * wanted + margin
    soft, error = raise_nofile(need)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = wanted if soft >= need else max(100, (soft - margin) // 2 // 100 * 100)
    return {"requested": wanted, "n": min(n, wanted), "fds_needed": need, "soft": soft,
            "hard": hard, "error": error}


class Conn:
    __slots__ = ("sock", "parsed", "pending", "open", "error", "opened", "connected", "sent",
                 "first", "done")

    def __init__(self, sock: socket.socket, request: bytes, opened: float,
                 api: StreamAPI) -> None:
        self.sock = sock
        self.parsed = SSEResponse(api)
        self.pending = request
        self.open = True
        self.error = ""
        self.opened = opened
        self.connected: float | None = None
        self.sent: float | None = None
        self.first: float | None = None
        self.done: float | None = None


def mock_stats(port: int) -> dict[str, int]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{HOST}:{port}/_mock/stats", timeout=5) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


def hold_events(n: int, events: int, delay: float, ramp_rate: float) -> int:
    """Events per stream: C{events}, or when 0 enough to outlast the ramp by 10 s."""
    if events:
        return events
    ramp_s = n / ramp_rate if ramp_rate > 0 else 0.0
    return max(5, math.ceil((ramp_s + 10) / max(delay, 0.001)))
