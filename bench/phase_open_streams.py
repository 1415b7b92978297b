#!/usr/bin/env python3
"""Concurrent open streams phase: many slow streams held open in one proxy process.

The issue's promise: 10,000 concurrent open streams in one process all
complete with ``data: [DONE]``, no stream waits more than 1 s for its first
event, and the proxy's RSS stays <= 350 MB while they are open.

Each stream costs the proxy two file descriptors (the client's socket and its
upstream socket), so N streams need 2N + a few.  The phase raises its own
RLIMIT_NOFILE (inherited by every process it starts) to 2N + ``--fd-margin``,
the hard limit included; when the hard limit cannot be raised (no
CAP_SYS_RESOURCE, e.g. in a container) it runs with the largest N that fits
under the hard limit, rounded down to a hundred, and the report says so.

Streams come from the Python mock upstream (``X-Mock-Events`` events
``X-Mock-Event-Delay`` seconds apart).  One non-blocking client (selectors,
epoll) opens the connections at ``--ramp-rate`` per second (0: all at once)
and holds them; each stream's wait for its first event is measured from the
moment its request was sent.  Unless ``--hold-events`` says otherwise, each
stream lasts the opening ramp plus 10 s, so that all N are open together for
about 10 s.  The most streams open at one moment (each counted from its
first event to its end) says whether the proxy kept up with the ramp.  The
proxy's RSS is sampled every 0.25 s.

The defaults (500 new streams/s, one event every 5 s) keep this phase about
holding many streams, not about event throughput (``phase_streaming`` measures
the per-event cost): on a 2-CPU machine where the client, the mock and the
proxy, all Python, share the CPUs, one event per second on 10,000 streams is
10,000 events/s, which saturates them before anything else is measured.  The
mock's cyclic GC is off (``--no-mock-gc-off`` keeps it): its full collections
with thousands of streams open pause it for 0.3 s and more, which would be
counted against the proxy.  A first column holds the same streams directly
against the mock (``--no-streams-direct`` skips it): the floor of the client
and the mock.

``--streams-bridged`` adds a column: the same N streams as streamed Responses
requests (``POST /v1/responses``) through a fresh proxy under test with
``RESPONSES_API=chat``, which answers them through the mock's chat
completions (the mock is then chat-only); each must end with
``response.completed`` instead of ``data: [DONE]``, and its wait for the
first event counts to the first ``response.output_text.delta``.  Its RSS sits
beside the passed-through streams' of the same run.  ``--streams-messages``
does the same with streamed Anthropic Messages requests (``POST
/v1/messages``) through a fresh proxy under test with ``MESSAGES_API=chat``:
each must end with ``message_stop``, and the first event counted is the first
``content_block_delta`` with a ``text_delta``.

Run alone: ``python bench/phase_open_streams.py --streams 500``.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import resource
import selectors
import socket
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    API_MESSAGES,
    HOST,
    OPEN_STREAMS_WANTED,
    listen_overflows,
    log,
    median,
    percentile,
    stream_request,
)
from bench.launch import (
    bridged_spec,
    limits_spec,
    proxy_specs,
    start_genai_proxy,
    start_mock,
    venv_bindir,
)
from bench.open_streams import Conn, hold_events, mock_stats, plan_streams
from bench.phase import phase_main
from bench.procs import (
    Session,
    group_cpu_seconds,
    process_nofile,
    rss_kib,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """This phase's options."""
    d = " (default: %(default)s)"
    g = p.add_argument_group("concurrent open streams phase")
    g.add_argument("--streams", type=int, default=OPEN_STREAMS_WANTED,
                   help="streams held open at once through each proxy, 0 to skip; fewer when "
                   "the open-files limit does not allow that many" + d)
    g.add_argument("--hold-events", type=int, default=0,
                   help="events per held stream; 0: enough that every stream outlasts the "
                   "opening ramp by 10 s, at least 5" + d)
    g.add_argument("--hold-delay", type=float, default=5.0,
                   help="seconds between events of a held stream" + d)
    g.add_argument("--ramp-rate", type=float, default=500,
                   help="new connections per second while opening them, 0 for all at once" + d)
    g.add_argument("--fd-margin", type=int, default=40,
                   help="file descriptors a proxy needs besides 2 per stream" + d)
    g.add_argument("--streams-direct", action=argparse.BooleanOptionalAction, default=True,
                   help="also hold the streams directly against the mock, without a proxy: "
                   "what the client and the mock contribute (default: yes)")
    g.add_argument("--mock-gc-off", action=argparse.BooleanOptionalAction, default=True,
                   help="turn the mock's cyclic garbage collector off, so that its pauses "
                   "with thousands of streams open are not counted against the proxy "
                   "(default: yes)")
    g.add_argument("--streams-baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also hold the streams through the baseline when --baseline-venv is "
                   "given (default: yes)")
    g.add_argument("--streams-bridged", action=argparse.BooleanOptionalAction, default=False,
                   help="also hold them as bridged Responses streams: POST /v1/responses "
                   "through the proxy under test with RESPONSES_API=chat, after the "
                   "passed-through chat streams (default: no)")
    g.add_argument("--streams-messages", action=argparse.BooleanOptionalAction, default=False,
                   help="also hold them as bridged Anthropic Messages streams: POST "
                   "/v1/messages through the proxy under test with MESSAGES_API=chat, after "
                   "the passed-through chat streams (and the Responses ones) (default: no)")
    g.add_argument("--streams-limits", action=argparse.BooleanOptionalAction, default=False,
                   help="also hold them through the proxy under test with models.yaml's "
                   "limits (every kind counted, none reached: bench/common.py's "
                   "LIMITS_MODELS), in process (default: no)")


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.streams < 0 or args.hold_events < 0 or args.hold_delay < 0 or args.ramp_rate < 0:
        p.error("--streams, --hold-events, --hold-delay and --ramp-rate must not be negative")


def hold(session: Session, key: str, n: int, events: int, delay: float, ramp_rate: float,
         mock_port: int, mock_pgid: int) -> dict[str, Any]:
    """Open C{n} streams through target C{key}, hold them, measure; return figures."""
    target = session.targets[key]
    pid = target.proc.pid
    log(f"holding {n} streams ({events} events {delay:g} s apart, opened at "
        f"{ramp_rate:g}/s) through {target.label}")
    bridged = target.bridged
    request = stream_request(events, delay, api=target.api)
    end = target.api.end_name
    time.sleep(0.5)
    rss_before = rss_kib(pid)
    mock_before = mock_stats(mock_port)
    sel = selectors.DefaultSelector()
    conns: list[Conn] = []
    overflows_before = listen_overflows()
    cpu_before = group_cpu_seconds(pid)
    mock_cpu_before = group_cpu_seconds(mock_pgid)
    own_before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.monotonic()
    ramp_s = n / ramp_rate if ramp_rate > 0 else 0.0
    deadline = start + ramp_s + events * delay + 20
    samples: list[tuple[float, int]] = []
    all_first_at = first_done_at = all_sent_at = None
    rss_all_open: int | None = None
    fds_all_open: int | None = None
    open_count = sent_count = first_count = 0
    # Streams that had their first event and have not ended, and the most at once.
    live = most_live = 0

    def close(conn: Conn, error: str = "") -> None:
        nonlocal open_count, live
        if conn.open:
            sel.unregister(conn.sock)
            conn.sock.close()
            conn.open, conn.error = False, error
            open_count -= 1
            if conn.first is not None:
                live -= 1

    try:
        next_sample = start
        while time.monotonic() < deadline:
            now = time.monotonic()
            due = n if ramp_rate <= 0 else min(n, int((now - start) * ramp_rate) + 1)
            for _ in range(min(due - len(conns), 500)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                conn = Conn(sock, request, time.monotonic(), target.api)
                code = sock.connect_ex((HOST, target.port))
                if code not in (0, errno.EINPROGRESS):
                    conn.open, conn.error = False, os.strerror(code)
                    sock.close()
                else:
                    sel.register(sock, selectors.EVENT_WRITE, conn)
                    open_count += 1
                conns.append(conn)
            if len(conns) == n and open_count == 0:
                break
            for sel_key, mask in sel.select(timeout=0.005 if len(conns) < n else 0.1):
                conn = sel_key.data
                if mask & selectors.EVENT_WRITE and conn.pending:
                    err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        close(conn, os.strerror(err))
                        continue
                    if conn.connected is None:
                        conn.connected = time.monotonic()
                    try:
                        sent = conn.sock.send(conn.pending)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        close(conn, str(e))
                        continue
                    conn.pending = conn.pending[sent:]
                    if not conn.pending:
                        conn.sent = time.monotonic()
                        sent_count += 1
                        sel.modify(conn.sock, selectors.EVENT_READ, conn)
                elif mask & selectors.EVENT_READ:
                    try:
                        data = conn.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        close(conn, str(e))
                        continue
                    if not data:
                        close(conn, "" if conn.parsed.complete else f"closed before {end}")
                        continue
                    arrived = time.monotonic()
                    conn.parsed.feed(data, arrived)
                    if conn.first is None and conn.parsed.content:  # bridged: a text delta
                        conn.first = arrived
                        first_count += 1
                        live += 1
                        most_live = max(most_live, live)
                    if conn.parsed.complete or conn.parsed.body_ended:
                        conn.done = arrived
                        close(conn)
                        if first_done_at is None:
                            first_done_at = arrived
            now = time.monotonic()
            if all_sent_at is None and sent_count == n:
                all_sent_at = now
            if all_first_at is None and first_count == n:
                all_first_at = now
                rss_all_open = rss_kib(pid)
                try:
                    fds_all_open = len(os.listdir(f"/proc/{pid}/fd"))
                except OSError:
                    pass
            if now >= next_sample:
                samples.append((now - start, rss_kib(pid)))
                next_sample = now + 0.25
    finally:
        for conn in conns:
            close(conn, "still open at the deadline")
        sel.close()
    elapsed = time.monotonic() - start
    cpu = group_cpu_seconds(pid) - cpu_before
    mock_cpu = group_cpu_seconds(mock_pgid) - mock_cpu_before
    own = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = own.ru_utime + own.ru_stime - own_before.ru_utime - own_before.ru_stime
    time.sleep(1.0)
    rss_after = rss_kib(pid)
    overflows_after = listen_overflows()
    mock_after = mock_stats(mock_port)

    waits = [c.first - c.sent for c in conns if c.first is not None and c.sent is not None]
    by_second: dict[int, list[float]] = {}  # worst wait per second of sending (for --json)
    for c in conns:
        if c.first is not None and c.sent is not None:
            by_second.setdefault(int(c.sent - start), []).append(c.first - c.sent)
    errors: dict[str, int] = {}
    for c in conns:
        if c.error:
            errors[c.error] = errors.get(c.error, 0) + 1
    complete = sum(1 for c in conns if c.parsed.status == 200 and c.parsed.complete
                   and len(c.parsed.content) >= events)
    with_events = sum(1 for c in conns if c.parsed.events)
    holding = [rss for t, rss in samples if all_first_at is not None
               and t >= all_first_at - start
               and (first_done_at is None or t <= first_done_at - start)]
    if with_events < n:
        session.problem(f"open streams through {target.label}: only {with_events} of {n} "
                        "streams got any event")
    if complete < n:
        session.problem(f"open streams through {target.label}: only {complete} of {n} "
                        f"completed ({', '.join(f'{v} x {k}' for k, v in errors.items())})")
    return {
        "key": key, "kind": target.kind, "bridged": bridged, "api": target.api.name,
        "end": end,
        "label": (f"{target.label} (no proxy: RSS and CPU are the mock's)"
                  if target.kind == "direct" else target.label),
        "n": n, "events": events, "delay": delay,
        "ramp_rate": ramp_rate, "with_events": with_events, "complete": complete,
        "errors": errors,
        "most_open": most_live,
        "opening_s": None if all_sent_at is None else all_sent_at - start,
        "all_first_s": None if all_first_at is None else all_first_at - start,
        "first_wait_p50_s": median(waits) if waits else None,
        "first_wait_p99_s": percentile(waits, 99) if waits else None,
        "first_wait_max_s": max(waits) if waits else None,
        "first_wait_over_1s": sum(1 for w in waits if w > 1.0),
        "first_wait_by_second": {k: [len(v), round(median(v), 4), round(max(v), 4)]
                                 for k, v in sorted(by_second.items())},
        "connect_late": sum(1 for c in conns
                            if c.connected is not None and c.connected - c.opened >= 0.9),
        "listen_overflows": None if overflows_before is None or overflows_after is None
        else overflows_after - overflows_before,
        "elapsed_s": elapsed,
        "proxy_cpu_s": cpu, "mock_cpu_s": mock_cpu, "client_cpu_s": client_cpu,
        "rss_before": rss_before, "rss_all_open": rss_all_open,
        "rss_holding_median": int(median(holding)) if holding else None,
        "rss_peak": max([rss for _, rss in samples] + [rss_all_open or 0]),
        "rss_after": rss_after, "fds_all_open": fds_all_open,
        "proxy_nofile": process_nofile(pid),
        "mock_streams": {k: mock_after.get(k, 0) - mock_before.get(k, 0)
                         for k in ("streams_started", "streams_completed")},
    }


def run(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    """Start the mock and each default-configuration proxy in turn, hold the
    streams through it, stop it; return the figures."""
    if args.streams == 0:
        return {"phase": "open_streams", "plan": {}, "runs": []}
    plan = plan_streams(args.streams, args.fd_margin)
    if plan["n"] < plan["requested"]:
        log(f"open streams: {plan['requested']} requested, running {plan['n']} "
            f"(hard RLIMIT_NOFILE {plan['hard']}; {plan['error']})")
    result: dict[str, Any] = {"phase": "open_streams", "plan": plan, "runs": [],
                              "mock_gc_off": args.mock_gc_off}
    events = hold_events(plan["n"], args.hold_events, args.hold_delay, args.ramp_rate)
    specs = [s for s in proxy_specs(args, with_nolog=False)
             if s.kind == "proxy" or args.streams_baseline]
    if args.streams_bridged:
        specs.append(bridged_spec(args))
    if args.streams_messages:
        specs.append(bridged_spec(args, API_MESSAGES))
    if args.streams_limits:
        specs.append(limits_spec(args))
    try:
        mock = start_mock(session, venv_bindir(args.venv) / "python", gc_off=args.mock_gc_off,
                          chat_only=args.streams_bridged or args.streams_messages)
        result["mock_nofile"] = process_nofile(mock.target.proc.pid)
        if args.streams_direct:
            result["runs"].append(session.repeat_if_disturbed(
                "the open-streams measurement (direct)",
                lambda: hold(session, "direct", plan["n"], events, args.hold_delay,
                             args.ramp_rate, mock.target.port, mock.target.proc.pid)))
        for spec in specs:
            target = start_genai_proxy(session, spec, f"http://127.0.0.1:{mock.target.port}")
            result["runs"].append(session.repeat_if_disturbed(
                "the open-streams measurement",
                functools.partial(hold, session, spec.key, plan["n"], events, args.hold_delay,
                                  args.ramp_rate, mock.target.port, mock.target.proc.pid)))
            session.stop(target.proc, target.label)
            del session.targets[spec.key]
    finally:
        session.stop_all()
    return result


def main(argv: list[str] | None = None) -> int:
    return phase_main(__doc__ or "", "open_streams", add_arguments, check_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
