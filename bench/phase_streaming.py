#!/usr/bin/env python3
"""Streaming phase: the delay each streamed event picks up on its way through.

This phase needs the Python mock upstream (not the static nginx): the
benchmark's launcher makes it time-stamp each SSE event it writes
(CLOCK_MONOTONIC, system-wide on Linux), and a raw-socket client stamps each
event's arrival with the same clock.  Paths: direct to the mock, genai-proxy
under test (default and LOG_BODIES=false), the baseline's two when
``--baseline-venv`` is given, nginx (1 worker) as a proxy, and the proxy under
test bridged: with ``RESPONSES_API=chat``, sent a streamed Responses request
(``POST /v1/responses``) that it answers through the mock's chat completions,
rewriting the chat stream into Responses events (``--no-stream-bridged``
leaves it out), and the proxy under test as a Messages bridge: with
``MESSAGES_API=chat``, sent a streamed Anthropic Messages request (``POST
/v1/messages``) that it answers the same way, in Messages events
(``--no-stream-messages`` leaves it out).  With either, the mock is
chat-only, as the bridges' gateways are.  Streams are read one at a time, the
path rotating from one stream to the next.

A bridged stream's delay is measured per upstream content event: the k-th
``response.output_text.delta`` (Messages: the k-th ``content_block_delta``
with a ``text_delta``) the client gets is matched with the k-th content event
the mock wrote; the events the bridge adds (Responses: created, in_progress,
item and part added and done, completed; Messages: message_start, ping,
content_block_start and _stop, message_delta, message_stop) are not matched.
A bridged stream is complete only when it ends with ``response.completed``
(Messages: ``message_stop``).

Run alone: ``python bench/phase_streaming.py --stream-runs 5``.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import API_MESSAGES, SSEResponse, log, read_stream, stream_request
from bench.launch import bridged_spec, proxy_specs, start_genai_proxy, start_mock, venv_bindir
from bench.nginx import start_nginx_proxy
from bench.phase import phase_main
from bench.procs import Session, find_tool


def add_arguments(p: argparse.ArgumentParser) -> None:
    """This phase's options."""
    d = " (default: %(default)s)"
    g = p.add_argument_group("streaming per-event delay phase")
    g.add_argument("--stream-runs", type=int, default=10,
                   help="streams read per path for the per-event delay" + d)
    g.add_argument("--stream-events", type=int, default=20, help="events per timed stream" + d)
    g.add_argument("--stream-delay", type=float, default=0.02,
                   help="seconds between events of a timed stream" + d)
    g.add_argument("--stream-bridged", action=argparse.BooleanOptionalAction, default=True,
                   help="also read streamed Responses requests through the proxy under test "
                   "with RESPONSES_API=chat (the Responses bridge), beside the passed-through "
                   "chat streams (default: yes)")
    g.add_argument("--stream-messages", action=argparse.BooleanOptionalAction, default=True,
                   help="also read streamed Anthropic Messages requests through the proxy "
                   "under test with MESSAGES_API=chat (the Messages bridge), beside the "
                   "passed-through chat streams (default: yes)")


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.stream_runs < 1 or args.stream_events < 2:
        p.error("--stream-runs must be >= 1, --stream-events >= 2")


def _read_stamps(path: Path) -> dict[str, list[float]]:
    stamps: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        tag, _, value = line.partition(" ")
        if value:
            stamps.setdefault(tag, []).append(float(value))
    return stamps


def measure(session: Session, keys: list[str], stamp_file: Path, runs_per_path: int,
            events: int, delay: float) -> dict[str, dict[str, Any]]:
    """Read C{runs_per_path} streams through each of C{keys}; return per path
    the per-event delays, first-event times and gaps, in ms."""
    log(f"streaming: {runs_per_path} streams x {events} events {delay * 1000:g} ms apart "
        f"per path: {', '.join(keys)}")
    runs: dict[str, list[tuple[str, float, SSEResponse]]] = {k: [] for k in keys}
    timeout = events * delay + 10
    for k in range(runs_per_path):
        for key in keys[k % len(keys):] + keys[:k % len(keys)]:
            tag = f"{key}-{k}-{uuid.uuid4().hex[:8]}"
            target = session.targets[key]
            request = stream_request(events, delay, tag, target.api)
            try:
                sent, parsed = read_stream(target.port, request, timeout, target.api)
            except OSError as e:  # refused, reset: counted as a broken stream below
                log(f"stream through {target.label} failed: {e}")
                sent, parsed = time.monotonic(), SSEResponse(target.api)
            runs[key].append((tag, sent, parsed))
    time.sleep(0.2)  # let the mock's line-buffered stamp writes land
    stamps = _read_stamps(stamp_file)
    out: dict[str, dict[str, Any]] = {}
    for key in keys:
        per_event: list[float] = []  # mock wrote it -> client has it, ms
        first: list[float] = []  # request sent -> first content event at the client, ms
        gaps: list[float] = []  # arrival gap between consecutive content events, ms
        bad = 0
        for tag, sent, parsed in runs[key]:
            # The k-th event carrying upstream content (bridged: the k-th text
            # delta) against the k-th content event the mock wrote; a bridged
            # stream is complete when it ended with response.completed or
            # message_stop.
            arrivals = parsed.content[:events]
            written = stamps.get(tag, [])[:events]
            if parsed.status != 200 or not parsed.complete or len(arrivals) < events:
                bad += 1
                continue
            first.append((arrivals[0] - sent) * 1000)
            gaps.extend((b - a) * 1000 for a, b in zip(arrivals, arrivals[1:], strict=False))
            if len(written) == len(arrivals):
                per_event.extend((a - w) * 1000 for a, w in zip(arrivals, written, strict=False))
        if bad:
            session.problem(f"streaming through {session.targets[key].label}: {bad} of "
                            f"{len(runs[key])} streams incomplete or not 200")
        out[key] = {"label": session.targets[key].label, "kind": session.targets[key].kind,
                    "bridged": session.targets[key].bridged,
                    "api": session.targets[key].api.name,
                    "end": session.targets[key].api.end_name,
                    "streams": len(runs[key]) - bad, "per_event": per_event, "first": first,
                    "gaps": gaps}
    if not out.get("direct", {}).get("per_event"):
        session.notes.append("The mock wrote no event time-stamps (its internals changed?): "
                             "the per-event delay could not be measured.")
    return out


def run(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    """Start the mock, the proxies and nginx, measure, stop them."""
    nginx = find_tool("nginx", args.nginx, "/usr/sbin/nginx")
    specs = (proxy_specs(args) + ([bridged_spec(args)] if args.stream_bridged else [])
             + ([bridged_spec(args, API_MESSAGES)] if args.stream_messages else []))
    try:
        mock = start_mock(session, venv_bindir(args.venv) / "python",
                          chat_only=args.stream_bridged or args.stream_messages)
        log(f"mock upstream on port {mock.target.port}")
        for spec in specs:
            start_genai_proxy(session, spec, f"http://127.0.0.1:{mock.target.port}")
        start_nginx_proxy(session, nginx, "nginx1", "nginx (1 worker)", "1", mock.target.port)
        keys = list(session.targets)
        paths = session.repeat_if_disturbed(
            "the streaming measurement",
            lambda: measure(session, keys, mock.stamps, args.stream_runs, args.stream_events,
                            args.stream_delay))
    finally:
        session.stop_all()
    return {"phase": "streaming", "runs": args.stream_runs, "events": args.stream_events,
            "delay": args.stream_delay, "paths": paths}


def main(argv: list[str] | None = None) -> int:
    return phase_main(__doc__ or "", "streaming", add_arguments, check_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
