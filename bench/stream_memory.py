#!/usr/bin/env python3
"""Where the memory of an open stream goes: tracemalloc, grouped by line.

Starts the Python mock upstream and genai-proxy (``twistd -n --pidfile=
genaiproxy``, the benchmark's environment) under ``python -X
tracemalloc=FRAMES``, through a launcher that writes tracemalloc snapshots
whenever the proxy gets SIGUSR2: one of the process as it is, one after a
full garbage collection.  It takes them with no stream open, opens
``--streams`` slow chat streams (one event every ``--event-delay`` seconds,
as the open-streams phase holds them), waits until every stream had its
first event and then ``--settle`` seconds more, takes them again, and closes
the streams (with ``--ended``: lets them end, and takes them a third time).
It prints, per open stream: what the proxy's RSS grew by, what tracemalloc
saw allocated, what of it is live after a full collection and what was
cyclic garbage waiting for one, each by line (or, with ``--frames`` above 1
and ``--tracebacks``, the call paths that hold the most).  The difference
between the RSS and the traced figures is what Python's allocator and the C
libraries keep outside tracemalloc's view (the sockets' kernel buffers are
not in the RSS at all).

tracemalloc's own bookkeeping inflates the RSS (by about half): the RSS per
stream printed here is an upper bound; ``--frames 0`` runs the proxy without
tracing and prints the RSS alone, comparable with the open-streams phase's
"RSS per open stream".

Examples::

    python bench/stream_memory.py --streams 2000
    python bench/stream_memory.py --streams 2000 --frames 6 --tracebacks 8
    python bench/stream_memory.py --streams 2000 --ended       # what ended streams leave
    python bench/stream_memory.py --streams 2000 --frames 0    # RSS only
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import math
import os
import selectors
import signal
import socket
import sys
import time
import tracemalloc
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import API_CHAT, HOST, BenchError, SSEResponse, log, stream_request
from bench.launch import ProxySpec, start_genai_proxy, start_mock, venv_bindir
from bench.procs import Session, raise_nofile, rss_kib, run_main

# Runs twistd (the rest of the command line) with a SIGUSR2 handler that
# writes two tracemalloc snapshots: as the process is (FILE.raw), then after
# a full garbage collection (FILE, written last: the script waits for it).
TRACING_LAUNCHER = r"""
import gc, os, runpy, signal, sys, tracemalloc
out = sys.argv.pop(1)
def dump(signum, frame):
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(out + ".raw")
        gc.collect()
        tracemalloc.take_snapshot().dump(out + ".tmp")
    else:
        open(out + ".tmp", "wb").close()
    os.rename(out + ".tmp", out)
signal.signal(signal.SIGUSR2, dump)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = " (default: %(default)s)"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", help="venv with genai-proxy installed (default: the venv of the "
                   "python running this script)")
    p.add_argument("--streams", type=int, default=2000, help="streams held open" + d)
    p.add_argument("--ramp-rate", type=float, default=500,
                   help="new connections per second while opening them" + d)
    p.add_argument("--event-delay", type=float, default=2.0,
                   help="seconds between the events of a stream" + d)
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to wait after every stream had its first event" + d)
    p.add_argument("--body-kb", type=int, default=0,
                   help="pad each request's message to about this many KB (a real client "
                   "sends 50 to 100 KB each turn); 0: the benchmark's short request" + d)
    p.add_argument("--upstream-host", default=HOST,
                   help="how the proxy names the mock in GENAI_BASE_URL: its address, or a "
                   "name such as localhost (connections then go through name resolution)" + d)
    p.add_argument("--frames", type=int, default=1,
                   help="frames tracemalloc keeps per allocation; 0: no tracing, RSS only" + d)
    p.add_argument("--top", type=int, default=30, help="lines listed" + d)
    p.add_argument("--tracebacks", type=int, default=0,
                   help="also list this many call paths (with --frames above 1)" + d)
    p.add_argument("--ended", action="store_true",
                   help="let the streams end (20 s after the snapshot) and take another: "
                   "what ended streams leave for the garbage collector's full passes")
    p.add_argument("--write", metavar="FILE", help="also write the output to FILE")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if args.streams < 1 or args.frames < 0 or args.ramp_rate <= 0:
        p.error("--streams and --ramp-rate must be positive, --frames not negative")
    return args


Snapshots = tuple[tracemalloc.Snapshot, tracemalloc.Snapshot]


def snapshot(pid: int, path: Path, timeout: float = 300.0) -> Snapshots | None:
    """Ask the proxy (pid) for its tracemalloc snapshots, as it is and after
    a full collection; None when it is not tracing."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise BenchError("the proxy wrote no tracemalloc snapshot")
        time.sleep(0.1)
    if not path.stat().st_size:
        return None
    raw = Path(str(path) + ".raw")
    return tracemalloc.Snapshot.load(str(raw)), tracemalloc.Snapshot.load(str(path))


class Streams:
    """The client's side of the streams: sockets, what is left to send,
    what each answer holds so far."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.socks: list[socket.socket] = []
        self.pending: dict[socket.socket, bytes] = {}
        self.parsed: dict[socket.socket, SSEResponse] = {}

    def close(self) -> None:
        for sock in self.socks:
            if sock.fileno() >= 0:
                self.sel.unregister(sock)
                sock.close()

    def read_to_the_end(self, timeout: float) -> None:
        """Read every stream until its [DONE] (or its end)."""
        deadline = time.monotonic() + timeout
        left = sum(1 for sock in self.socks if not self.parsed[sock].complete)
        while left:
            if time.monotonic() > deadline:
                raise BenchError(f"{left} streams did not end within {timeout:g} s")
            for key, _ in self.sel.select(timeout=0.1):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                data = ready.recv(65536)
                response = self.parsed[ready]
                if data:
                    response.feed(data, time.monotonic())
                if not data or response.complete:
                    self.sel.unregister(ready)
                    ready.close()
                    left -= 1


def open_streams(port: int, n: int, ramp_rate: float, delay: float, settle: float,
                 body_kb: int, ended: bool) -> Streams:
    """Open C{n} streams through the proxy, read until each had its first
    event and C{settle} seconds more; return them, still open (with
    C{ended}, about to end: each has events for 20 s more)."""
    api = API_CHAT
    if body_kb:
        body = {"model": "gpt-4.1", "stream": True,
                "messages": [{"role": "user", "content": "word " * (body_kb * 1000 // 5)}]}
        api = dataclasses.replace(API_CHAT, body=json.dumps(body).encode())
    # Enough events to outlast the opening, the settling and the snapshot.
    request = stream_request(math.ceil((n / ramp_rate + settle + (20 if ended else 60)) / delay),
                             delay, api=api)
    streams = Streams()
    sel, socks, pending, parsed = streams.sel, streams.socks, streams.pending, streams.parsed
    start = time.monotonic()
    all_first: float | None = None
    with_event = 0
    deadline = start + n / ramp_rate + 60
    while all_first is None or time.monotonic() < all_first + settle:
        now = time.monotonic()
        if now > deadline:
            raise BenchError(f"only {with_event} of {n} streams got an event within 60 s")
        due = min(n, int((now - start) * ramp_rate) + 1)
        while len(socks) < due:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            if sock.connect_ex((HOST, port)) not in (0, errno.EINPROGRESS):
                raise BenchError("could not connect to the proxy")
            socks.append(sock)
            pending[sock], parsed[sock] = request, SSEResponse()
            sel.register(sock, selectors.EVENT_WRITE)
        for key, mask in sel.select(timeout=0.01):
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            if mask & selectors.EVENT_WRITE:
                sent = ready.send(pending[ready])
                pending[ready] = pending[ready][sent:]
                if not pending[ready]:
                    sel.modify(ready, selectors.EVENT_READ)
            else:
                data = ready.recv(65536)
                if not data:
                    raise BenchError("the proxy closed a stream")
                response = parsed[ready]
                had = bool(response.events)
                response.feed(data, time.monotonic())
                if not had and response.events:
                    with_event += 1
                    if with_event == n:
                        all_first = time.monotonic()
                        log(f"all {n} streams had their first event after "
                            f"{all_first - start:.1f} s")
    return streams


def _where(frame: tracemalloc.Frame) -> str:
    """A frame's file, from the package or site-packages on, and line."""
    name = frame.filename
    for marker in ("/site-packages/", "/genaiproxy/", "/lib/python3"):
        if marker in name:
            name = name[name.index(marker) + 1:]
            break
    return f"{name}:{frame.lineno}"


def _table(stats: list[tracemalloc.StatisticDiff], n: int, top: int) -> list[str]:
    out = ["| bytes/stream | blocks/stream | line |", "| ---: | ---: | --- |"]
    for s in sorted(stats, key=lambda s: -s.size_diff)[:top]:
        out.append(f"| {s.size_diff / n:,.0f} | {s.count_diff / n:,.2f} | "
                   f"{_where(s.traceback[0])} |")
    return out


def report(before: Snapshots, during: Snapshots, n: int, top: int,
           tracebacks: int) -> list[str]:
    """Per open stream: what is live after a full collection, by line (and
    call path); what was cyclic garbage waiting for one, by line."""
    raw = during[0].compare_to(before[0], "lineno")
    live = during[1].compare_to(before[1], "lineno")
    raw_total, live_total = sum(s.size_diff for s in raw), sum(s.size_diff for s in live)
    out = [f"traced by tracemalloc: {raw_total / n:,.0f} B per stream "
           f"({sum(s.count_diff for s in raw) / n:,.1f} blocks), of which "
           f"{live_total / n:,.0f} B live after a full garbage collection and "
           f"{(raw_total - live_total) / n:,.0f} B cyclic garbage waiting for one", "",
           "Live after a full collection, by line:", ""]
    out += _table(live, n, top)
    garbage = during[0].compare_to(during[1], "lineno")
    out += ["", "Cyclic garbage waiting for a full collection, by line "
            "(the snapshot as it was, minus the one after collecting):", ""]
    out += _table(garbage, n, max(5, top // 3))
    if tracebacks:
        out += ["", f"Top {tracebacks} call paths of the live memory (innermost last):", ""]
        paths = during[1].compare_to(before[1], "traceback")
        for s in sorted(paths, key=lambda s: -s.size_diff)[:tracebacks]:
            out.append(f"- {s.size_diff / n:,.0f} B/stream, {s.count_diff / n:,.2f} blocks: "
                       + " < ".join(_where(f) for f in reversed(s.traceback)))
    return out


def report_ended(before: Snapshots, ended: Snapshots, n: int, top: int) -> list[str]:
    """Per stream, once they all ended: what is still held, and what is
    cyclic garbage that only a full collection frees."""
    kept = ended[1].compare_to(before[1], "lineno")
    garbage = ended[0].compare_to(ended[1], "lineno")
    out = ["", "## Once they all ended", "",
           f"still live after a full collection: {sum(s.size_diff for s in kept) / n:,.0f} B "
           f"per stream; cyclic garbage waiting for one: "
           f"{sum(s.size_diff for s in garbage) / n:,.0f} B per stream", "",
           "Cyclic garbage the ended streams left, by line:", ""]
    return out + _table(garbage, n, top)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(session: Session) -> str:
        soft, error = raise_nofile(2 * args.streams + 100)
        if soft < 2 * args.streams + 100:
            raise BenchError(f"open-files limit {soft} is too low for {args.streams} streams "
                             f"({error})")
        bindir = venv_bindir(args.venv)
        python = bindir / "python"
        mock = start_mock(session, python, gc_off=True)
        dump = session.path("snapshot.bin")
        wrapper = [str(python)] + ([f"-Xtracemalloc={args.frames}"] if args.frames else []) + [
            "-c", TRACING_LAUNCHER, str(dump)]
        spec = ProxySpec("proxy", "genai-proxy (default) under tracemalloc", "proxy", bindir, None)
        proxy = start_genai_proxy(session, spec, f"http://{args.upstream_host}:{mock.target.port}",
                                  wrapper=wrapper)
        pid = proxy.proc.pid
        time.sleep(1.0)
        before = snapshot(pid, dump)
        rss_before = rss_kib(pid)
        streams = open_streams(proxy.port, args.streams, args.ramp_rate, args.event_delay,
                               args.settle, args.body_kb, args.ended)
        rss_open = rss_kib(pid)
        during = snapshot(pid, dump)
        ended = None
        if args.ended:
            streams.read_to_the_end(120)
            time.sleep(1.0)
            ended = snapshot(pid, dump)
        streams.close()
        n = args.streams
        lines = [f"# Memory of {n:,} open streams through genai-proxy", "",
                 f"upstream http://{args.upstream_host}:PORT; "
                 f"tracemalloc frames: {args.frames or 'off'}; request body "
                 f"{f'about {args.body_kb} KB' if args.body_kb else 'the benchmark one'}; "
                 "one event every "
                 f"{args.event_delay:g} s; snapshot {args.settle:g} s after every stream had "
                 "its first event", "",
                 f"proxy RSS: {rss_before / 1024:,.1f} MiB before, {rss_open / 1024:,.1f} MiB "
                 f"with them open: {(rss_open - rss_before) / n:,.2f} KiB per stream", ""]
        if before is not None and during is not None:
            lines += report(before, during, n, args.top, args.tracebacks)
        if before is not None and ended is not None:
            lines += report_ended(before, ended, n, args.top)
        text = "\n".join(lines)
        if args.write:
            Path(args.write).write_text(text + "\n")
        return text

    return run_main(args, body)


if __name__ == "__main__":
    sys.exit(main())
