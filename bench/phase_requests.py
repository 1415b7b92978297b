#!/usr/bin/env python3
"""Request/response phase: latency at 1 connection, throughput at 32 connections.

Every row forwards ``POST /v1/chat/completions`` to the same static nginx
upstream (canned answer from a file; see L{bench.nginx}), which is not the
bottleneck, so the rows compare what sits in between:

* direct to the static upstream;
* genai-proxy under test (``--venv``), default configuration (LOG_BODIES=true)
  and LOG_BODIES=false; the same two from ``--baseline-venv`` when given;
* nginx with ``worker_processes 1`` as a proxy (the denominator of the
  throughput promise) and, unless ``--no-nginx-auto``, ``worker_processes auto``;
* LiteLLM's proxy (unless ``--no-litellm``), the peer users pick instead;
* with ``--stack-floor``, a forwarder of a few lines on twisted.web and treq
  alone (L{bench.stack_floor}): the stack's own cost of a request.

Each target gets a 1 s warm-up at 32 and at 1 connection, then ``--rounds``
interleaved rounds (the order rotates each round) of ``wrk -t1 -c1 --latency``
and ``wrk -t2 -c32`` for ``--duration`` seconds each; the report takes the
median across rounds.  Same workload for every row.

Run alone: ``python bench/phase_requests.py --rounds 1 --duration 2``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx as nginx_mod
from bench.bodies import WORKLOADS
from bench.common import BenchError, log
from bench.launch import (
    limits_spec,
    proxy_specs,
    quiet_spec,
    start_genai_proxy,
    start_redis,
)
from bench.litellm_peer import DEFAULT_VENV, start_litellm
from bench.phase import phase_main
from bench.procs import (
    ProcessGone,
    Session,
    find_tool,
    process_nofile,
    rss_kib,
)
from bench.stack_floor import start_stack_floor
from bench.wrk import run_wrk, write_lua


def add_arguments(p: argparse.ArgumentParser) -> None:
    """This phase's options."""
    d = " (default: %(default)s)"
    g = p.add_argument_group("request/response phase")
    g.add_argument("--rounds", type=int, default=3, help="interleaved rounds of wrk runs" + d)
    g.add_argument("--duration", type=int, default=5, help="seconds per wrk run" + d)
    g.add_argument("--no-nginx-auto", dest="nginx_auto", action="store_false",
                   help="skip nginx with worker_processes auto (measured by default)")
    g.add_argument("--upstream-workers", default="1",
                   help="worker_processes of the static nginx upstream" + d)
    g.add_argument("--litellm-venv", type=Path, default=DEFAULT_VENV,
                   help="venv for the LiteLLM peer, created and filled on first use" + d)
    g.add_argument("--no-litellm", dest="litellm", action="store_false",
                   help="skip the LiteLLM row")
    g.add_argument("--body", choices=sorted(WORKLOADS), default="small",
                   help="the request every row sends: the small chat request, or the 64 KB "
                        "ones real clients send (bench/bodies.py)" + d)
    g.add_argument("--limits", action=argparse.BooleanOptionalAction, default=False,
                   help="also a row of the proxy under test with models.yaml's limits: "
                        "every kind counted for its client, none reached" + d)
    g.add_argument("--limits-redis", action=argparse.BooleanOptionalAction, default=False,
                   help="also that row with the limits kept in a local redis-server "
                        "(LIMITS_REDIS_URL)" + d)
    g.add_argument("--quiet-row", action=argparse.BooleanOptionalAction, default=False,
                   help="also a row of the proxy under test with LOG_LEVEL=warn and "
                        "LOG_BODIES=false: what the request and response events cost" + d)
    g.add_argument("--stack-floor", action=argparse.BooleanOptionalAction, default=False,
                   help="also a row of a forwarder of a few lines on twisted.web and treq "
                        "alone (bench/stack_floor.py): what the stack costs by itself" + d)


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.rounds < 1 or args.duration < 1:
        p.error("--rounds and --duration must be >= 1")


def _rss(session: Session, key: str, stage: str, rss: dict[str, dict[str, int]]) -> None:
    target = session.targets.get(key)
    if target is not None and target.kind in ("proxy", "baseline", "litellm"):
        try:
            rss.setdefault(key, {})[stage] = rss_kib(target.proc.pid)
        except ProcessGone:
            pass


def run(session: Session, args: argparse.Namespace) -> dict[str, Any]:
    """Start the targets, measure, stop them; return the figures."""
    nginx = find_tool("nginx", args.nginx, "/usr/sbin/nginx")
    wrk = find_tool("wrk", args.wrk, "/usr/bin/wrk")
    workload = WORKLOADS[args.body]
    lua = write_lua(session, workload.path, workload.body)
    rss: dict[str, dict[str, int]] = {}
    result: dict[str, Any] = {"phase": "requests", "rounds": args.rounds,
                              "duration": args.duration,
                              "upstream_workers": args.upstream_workers,
                              "body": workload.name, "body_about": workload.about,
                              "body_bytes": len(workload.body)}
    try:
        upstream = nginx_mod.start_static_upstream(session, nginx, args.upstream_workers)
        log(f"static upstream (nginx) on port {upstream.port}")
        base_url = f"http://127.0.0.1:{upstream.port}"
        specs = proxy_specs(args)
        if args.limits:
            specs.append(limits_spec(args))
        if args.limits_redis:
            specs.append(limits_spec(args, start_redis(session)))
        if args.quiet_row:
            specs.append(quiet_spec(args))
        for spec in specs:
            start_genai_proxy(session, spec, base_url)
            _rss(session, spec.key, "at start", rss)
        if args.stack_floor:
            start_stack_floor(session, upstream.port)
        result["proxy_nofile"] = {k: process_nofile(t.proc.pid)
                                  for k, t in session.targets.items() if k != "direct"}
        nginx_mod.start_nginx_proxy(session, nginx, "nginx1", "nginx (1 worker)", "1",
                                    upstream.port)
        if args.nginx_auto:
            t = nginx_mod.start_nginx_proxy(session, nginx, "nginx_auto",
                                            "nginx (worker_processes auto)", "auto",
                                            upstream.port)
            result["nginx_auto_workers"] = nginx_mod.nginx_workers(t)
        if args.litellm:
            try:
                t = start_litellm(session, args.litellm_venv, upstream.port)
                result["litellm_version"] = t.label.split()[1]
                _rss(session, "litellm", "at start", rss)
            except BenchError as e:  # measure the rest; the report says what is missing
                session.problem(f"no LiteLLM row: {e}")
                session.targets.pop("litellm", None)
        order = list(session.targets)
        log("all targets answer: " + ", ".join(f"{t.label} :{t.port}"
                                                for t in session.targets.values()))

        def count() -> int:
            return nginx_mod.upstream_requests(upstream.port)

        def wrk_run(key: str, conns: int, duration: int, what: str) -> dict[str, Any]:
            threads, latency = (1, True) if conns == 1 else (2, False)
            return run_wrk(session, wrk, lua, session.targets[key], threads, conns, duration,
                           latency, what, upstream=upstream, upstream_count=count)

        log("warm-up: 1 s at 32 connections and 1 s at 1 connection per target")
        for key in order:
            wrk_run(key, 32, 1, "warm-up c32")
            wrk_run(key, 1, 1, "warm-up c1")
            _rss(session, key, "after warm-up", rss)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            k: {"latency": [], "throughput": []} for k in order}
        for rnd in range(args.rounds):
            shift = rnd % len(order)
            rotated = order[shift:] + order[:shift]
            for kind, conns in (("latency", 1), ("throughput", 32)):
                for key in rotated:
                    log(f"round {rnd + 1}/{args.rounds}: {session.targets[key].label}, "
                        f"{conns} connection{'s' if conns > 1 else ''}, {args.duration} s")
                    runs[key][kind].append(wrk_run(key, conns, args.duration,
                                                   f"round {rnd + 1} c{conns}"))
        for key in order:
            _rss(session, key, "after load rounds", rss)
        result["rows"] = [{"key": k, "label": session.targets[k].label,
                           "kind": session.targets[k].kind, **runs[k]} for k in order]
        result["rss"] = rss
        result["log_bytes"] = {}
        for k in order:
            log_file: Path | None = session.targets[k].log_file
            if log_file is not None and log_file.exists():
                served = sum(r["requests"] for r in runs[k]["latency"] + runs[k]["throughput"])
                result["log_bytes"][k] = [log_file.stat().st_size, served]
    finally:
        session.stop_all()
    return result


def main(argv: list[str] | None = None) -> int:
    return phase_main(__doc__ or "", "requests", add_arguments, check_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
