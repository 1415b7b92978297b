"""A fault run: a few thousand mixed requests through the real daemon, then
a check that it is back where it started.

Each request alone is covered by a focused test elsewhere (test_failures,
test_streams, test_client_limits, test_access). This one sends them all
together, interleaved, with bounded concurrency: whole answers and streams,
gzip, upstream error statuses and rate limits, upstream resets and hangs,
clients that leave mid-stream or mid-download or give up waiting (on a hang,
on a spooled upload, during a Retry-After wait), uploads within and over the
body limit (declared and chunked), missing and wrong tokens, and raw-socket
misbehaviour (garbage, over-long lines, half a head, a body cut off or
stalled, pipelined streams, an idle keep-alive connection). What the mix
can break that a single request cannot is the bookkeeping: a request left in
the in-flight set, a descriptor (client socket, upstream socket, spooled
upload) never closed, a crash on an odd interleaving, a secret that reaches
the log on some error path.

So, per request, only cheap checks (the outcome is one expected for its kind,
error answers are OpenAI-shaped JSON); afterwards, the daemon must be quiet:

- open descriptors: every one but the pooled upstream connections is the same
  as at the baseline taken after a warm-up. The upstream pool keeps idle
  keep-alive connections (up to 256 per origin, for 50 s), so those are
  counted apart and must each be a live idle connection: established on both
  ends (the mock's count of open connections agrees) with no upstream stream
  still running;
- in flight: 0, as the daemon itself reports on SIGTERM (``shutdown_started``),
  with nothing to cut (``shutdown_finished``) and exit status 0;
- the log: no line holds the upstream key or a client token (nor the wrong
  token a client presented), and no event is a crash.

The mix comes from a fixed seed, so a failure names a reproducible plan. All
of it runs on loopback; it takes some 15 to 35 s on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ProxyProcess, run_mock_upstream, run_proxy
from support.fault_requests import (
    BODY_LIMIT,
    CHAT,
    CONCURRENCY,
    EXPECTED_ERROR_EVENTS,
    KEEPALIVE_SEC,
    KEY,
    REQUESTS,
    SEED,
    TOKENS,
    WRONG_TOKEN,
    chat_body,
)
from support.fault_traffic import KINDS, plan, run_all

# TCP states in /proc/net/tcp.
ESTABLISHED, LISTEN = "01", "0A"


@dataclass(frozen=True)
class FdCensus:
    """The daemon's open descriptors, sorted by what they are."""

    total: int
    clients: int  # connections of clients to the proxy's port
    upstream: int  # established connections to the upstream (pooled when idle)
    upstream_closing: int  # upstream connections in any other state (CLOSE_WAIT: a leak)
    other: int  # everything else: listening socket, log, reactor, files

    def settled(self, baseline: FdCensus) -> bool:
        return not self.clients and not self.upstream_closing and self.other == baseline.other


def tcp_sockets(pid: int) -> dict[str, tuple[int, int, str]]:
    """inode -> (local port, remote port, state) of the TCP sockets seen by C{pid}."""
    sockets = {}
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            sockets[inode] = (int(local.rsplit(":", 1)[1], 16),
                              int(remote.rsplit(":", 1)[1], 16), state)
    return sockets


def fd_targets(pid: int) -> list[str]:
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:  # closed while listed
            continue
    return targets


def census(pid: int, proxy_port: int, upstream_port: int) -> FdCensus:
    targets = fd_targets(pid)
    sockets = tcp_sockets(pid)
    counts: Counter[str] = Counter()
    for target in targets:
        inode = target[len("socket:["):-1] if target.startswith("socket:[") else ""
        local, remote, state = sockets.get(inode, (0, 0, ""))
        if local == proxy_port and state != LISTEN:
            counts["clients"] += 1
        elif remote == upstream_port:
            counts["upstream" if state == ESTABLISHED else "upstream_closing"] += 1
        else:
            counts["other"] += 1
    return FdCensus(len(targets), counts["clients"], counts["upstream"],
                    counts["upstream_closing"], counts["other"])


def daemon_pid(proxy: ProxyProcess, proxy_port: int) -> int:
    """twistd's pid, checked to be the process that holds the listening socket
    (with -n twistd does not fork: it is the daemon)."""
    pid = proxy.process.pid
    command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert any(part.endswith(b"twistd") for part in command) and b"genaiproxy" in command
    listening = {inode for inode, (local, _, state) in tcp_sockets(pid).items()
                 if local == proxy_port and state == LISTEN}
    assert listening & {t[len("socket:["):-1] for t in fd_targets(pid)}, "not the listener"
    return pid


def mock_stats(mock_url: str) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(mock_url + "/_mock/stats", trust_env=False).json()
    return stats


def streams_running(stats: dict[str, int]) -> int:
    """Upstream streams neither completed, cancelled nor dropped."""
    return stats["streams_started"] - (stats["streams_completed"] + stats["streams_cancelled"]
                                       + stats["streams_dropped"])


def wait_until_quiet(pid: int, proxy_port: int, mock_url: str, baseline: FdCensus,
                     timeout: float = 45.0) -> tuple[FdCensus, dict[str, int]]:
    """Poll until the daemon's descriptors are back to the baseline (besides
    idle pooled upstream connections) and no upstream stream runs; return the
    last census and mock counters, settled or not."""
    upstream_port = int(mock_url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while True:
        now = census(pid, proxy_port, upstream_port)
        stats = mock_stats(mock_url)
        # The mock counts our own connection asking for its stats, too.
        pooled_agree = stats["open_connections"] - 1 == now.upstream
        if (now.settled(baseline) and pooled_agree and not streams_running(stats)) \
                or time.monotonic() > deadline:
            return now, stats
        time.sleep(0.25)


def daemon(mock_url: str, tokens_file: Path) -> contextlib.AbstractContextManager[ProxyProcess]:
    """The daemon with small limits and timeouts, so that faults end quickly."""
    return run_proxy(
        mock_url,
        AUTH_TOKENS_FILE=str(tokens_file),
        MAX_REQUEST_BODY_MB="1",
        REQUEST_TIMEOUT="2",  # a hang ends in 2 x 2 s (one retry)
        MAX_RETRIES="1",
        RETRY_BACKOFF_SEC="0.01",
        KEEPALIVE_TIMEOUT=f"{KEEPALIVE_SEC:g}",
        HEADER_TIMEOUT="2",
        MAX_HEADER_LINE_BYTES="8192",
        SHUTDOWN_GRACE_SEC="3",  # a stuck request would hold the stop this long
        LOG_STREAM_MAX_BYTES="16",  # chunk previews are logged too
    )


def steady_census(pid: int, proxy_port: int, upstream_port: int,
                  timeout: float = 20.0) -> FdCensus:
    """The baseline: a census with no client connection and no closing
    upstream one, the same twice half a second apart."""
    deadline = time.monotonic() + timeout
    last = census(pid, proxy_port, upstream_port)
    while True:
        time.sleep(0.5)
        now = census(pid, proxy_port, upstream_port)
        if now == last and not now.clients and not now.upstream_closing:
            return now
        assert time.monotonic() < deadline, f"no steady baseline: {last} then {now}"
        last = now


def warm_up(url: str) -> None:
    """A few ordinary requests, so that the log, the upstream pool and a
    spooled upload have all been used before the baseline is taken."""
    token = {"Authorization": f"Bearer {TOKENS['alice-laptop']}"}
    with httpx.Client(trust_env=False, timeout=30, headers=token) as client:
        for _ in range(3):
            assert client.post(url + CHAT, json=chat_body()).status_code == 200
            assert client.post(url + CHAT, json=chat_body(True)).status_code == 200
            assert client.post(url + "/v1/files", content=b"w" * 200_000).status_code == 200
            assert client.post(url + "/v1/files",
                               content=b"w" * (BODY_LIMIT + 1)).status_code == 413
        assert client.post(url + CHAT, json=chat_body(),
                           headers={"Authorization": "Bearer nope"}).status_code == 401


def log_problems(lines: list[str]) -> list[str]:
    """Lines that hold a secret, and events that are crashes."""
    secrets = [KEY, WRONG_TOKEN, *TOKENS.values()]
    problems = [f"secret in: {line[:300]}" for line in lines if any(s in line for s in secrets)]
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            problems.append(f"not a JSON line: {line[:300]}")
            continue
        crashed = "traceback" in event or (
            event.get("level") in ("ERROR", "CRITICAL")
            and event.get("event") not in EXPECTED_ERROR_EVENTS)
        if crashed:
            problems.append(f"crash: {line[:600]}")
    return problems


def shutdown_events(lines: list[str]) -> dict[str, dict[str, Any]]:
    events = {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") in ("shutdown_started", "shutdown_finished"):
            events[event["event"]] = event
    return events


@pytest.mark.timeout(600)
def test_fault_run_leaves_the_daemon_as_it_found_it(tmp_path: Path) -> None:
    """Thousands of mixed requests (streams, errors, upstream resets and hangs,
    clients leaving, oversized bodies, broken heads) each get an answer of
    their kind; afterwards nothing is in flight, the daemon's descriptors are
    back to their baseline (plus idle pooled upstream connections, each live),
    and no log line holds the key or a token."""
    tokens_file = tmp_path / "tokens.yaml"
    tokens_file.write_text("".join(f"{name}: {token}\n" for name, token in TOKENS.items()))
    steps = plan(REQUESTS, SEED)
    with run_mock_upstream("--event-delay", "0.02") as (mock_url, _), \
            daemon(mock_url, tokens_file) as proxy:
        port = int(proxy.url.rsplit(":", 1)[1])
        upstream_port = int(mock_url.rsplit(":", 1)[1])
        pid = daemon_pid(proxy, port)
        warm_up(proxy.url)
        baseline = steady_census(pid, port, upstream_port)

        started = time.monotonic()
        problems = asyncio.run(run_all(proxy.url, steps))
        took = time.monotonic() - started
        assert not problems, f"{len(problems)} unexpected outcomes:\n" + "\n".join(problems[:20])

        after, stats = wait_until_quiet(pid, port, mock_url, baseline)
        print(f"\nfault run: {len(steps)} requests in {took:.1f} s; "
              f"by kind: {dict(sorted(Counter(s.kind for s in steps).items()))}\n"
              f"fds baseline: {baseline}\nfds after:    {after}\nmock: {stats}")
        assert after.clients == 0, f"client connections left open: {after}"
        assert after.upstream_closing == 0, f"upstream connections not closed: {after}"
        assert after.other == baseline.other, f"descriptors leaked: {baseline} -> {after}"
        assert streams_running(stats) == 0, f"upstream streams still running: {stats}"
        assert stats["open_connections"] - 1 == after.upstream, (after, stats)
        # Idle pooled connections: about as many as were in use at once.
        assert after.upstream <= CONCURRENCY * 2, after

        logged = len(proxy.lines)
        assert proxy.stop() == 0
        shutdown = shutdown_events(proxy.lines[logged:])
        assert shutdown["shutdown_started"]["in_flight"] == 0, shutdown
        assert shutdown["shutdown_finished"]["cut"] == 0, shutdown
        assert shutdown["shutdown_finished"]["connections_closed"] == 0, shutdown

    problems = log_problems(proxy.lines)
    assert not problems, f"{len(problems)} log problems:\n" + "\n".join(problems[:10])
    seen = Counter(step.kind for step in steps)
    assert set(seen) == set(KINDS), f"kinds never drawn: {set(KINDS) - set(seen)}"
