#!/usr/bin/env python3
"""Profile genai-proxy under load: where does each request's time go?

Starts the static nginx upstream and genai-proxy under cProfile
(``python -m cProfile -o OUT twistd -n --pidfile= genaiproxy ...``, the same
environment as the benchmark), warms up for 1 s, runs ``wrk -t2 -c32`` (by
default) for ``--duration`` seconds, stops the proxy with SIGTERM (cProfile
writes its file when twistd returns), and prints the top ``--top`` functions
by cumulative time and by own time (pstats).  The profile covers the proxy's
whole life: start-up, warm-up and the measured run; the per-request part
dominates after a few seconds of load.  cProfile slows the proxy down
severalfold, so the req/s printed here are not the benchmark's.  With
``--limits process`` the proxy counts models.yaml's limits (every kind, as
the benchmark's rows with limits), with ``--limits redis`` in a local
redis-server (``LIMITS_REDIS_URL``).

Examples::

    python bench/profile_proxy.py --duration 10
    python bench/profile_proxy.py --venv /tmp/venv-after --log-bodies false --out /tmp/after.prof
    python bench/profile_proxy.py --limits redis --connections 1
    python bench/profile_proxy.py --target floor   # twisted.web and treq alone
    python -m pstats /tmp/after.prof        # browse it afterwards
"""

from __future__ import annotations

import argparse
import io
import pstats
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import nginx as nginx_mod
from bench.bodies import WORKLOADS
from bench.common import LIMITS_MODELS, BenchError, log
from bench.launch import ProxySpec, start_genai_proxy, start_redis, venv_bindir
from bench.procs import Session, find_tool, run_main
from bench.stack_floor import start_stack_floor
from bench.wrk import run_wrk, write_lua


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = " (default: %(default)s)"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--venv", help="venv with genai-proxy installed (default: the venv of the "
                   "python running this script)")
    p.add_argument("--log-bodies", choices=("true", "false"), default="true",
                   help="LOG_BODIES for the proxy" + d)
    p.add_argument("--duration", type=int, default=10, help="seconds of wrk load" + d)
    p.add_argument("--connections", type=int, default=32, help="wrk connections" + d)
    p.add_argument("--threads", type=int, default=2, help="wrk threads" + d)
    p.add_argument("--body", choices=sorted(WORKLOADS), default="small",
                   help="the request wrk sends (bench/bodies.py)" + d)
    p.add_argument("--limits", choices=("none", "process", "redis"), default="none",
                   help="models.yaml's limits (every kind, none reached), counted in the "
                        "process or in a local redis-server" + d)
    p.add_argument("--target", choices=("genai-proxy", "floor"), default="genai-proxy",
                   help="profile genai-proxy, or the forwarder of a few lines on twisted.web "
                        "and treq alone (bench/stack_floor.py)" + d)
    p.add_argument("--top", type=int, default=30, help="functions listed per ordering" + d)
    p.add_argument("--out", type=Path, help="keep the profile in this file (default: a "
                   "temporary file, removed unless --keep-tmp)")
    p.add_argument("--upstream-workers", default="1",
                   help="worker_processes of the static nginx upstream" + d)
    p.add_argument("--nginx", help="nginx binary (default: from PATH, else /usr/sbin/nginx)")
    p.add_argument("--wrk", help="wrk binary (default: from PATH, else /usr/bin/wrk)")
    p.add_argument("--write", metavar="FILE", help="also write the output to FILE")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)
    if args.duration < 1 or args.connections < 1 or args.threads < 1:
        p.error("--duration, --connections and --threads must be >= 1")
    if args.threads > args.connections:
        args.threads = args.connections
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(session: Session) -> str:
        nginx = find_tool("nginx", args.nginx, "/usr/sbin/nginx")
        wrk = find_tool("wrk", args.wrk, "/usr/bin/wrk")
        bindir = venv_bindir(args.venv)
        if not (bindir / "twistd").exists():
            raise BenchError(f"no twistd in {bindir}")
        out = (args.out or session.path("proxy.prof")).resolve()
        out.unlink(missing_ok=True)
        upstream = nginx_mod.start_static_upstream(session, nginx, args.upstream_workers)
        profiler = [str(bindir / "python"), "-m", "cProfile", "-o", str(out)]
        if args.target == "floor":  # (no settings of genai-proxy's apply)
            proxy = start_stack_floor(session, upstream.port, wrapper=profiler)
        else:
            limits = "" if args.limits == "none" else f", limits in {args.limits}"
            spec = ProxySpec("proxy", f"genai-proxy (LOG_BODIES={args.log_bodies}{limits}) "
                             "under cProfile", "proxy", bindir, args.log_bodies == "true",
                             models=None if args.limits == "none" else LIMITS_MODELS,
                             settings={"LIMITS_REDIS_URL": start_redis(session)}
                             if args.limits == "redis" else None)
            proxy = start_genai_proxy(session, spec, f"http://127.0.0.1:{upstream.port}",
                                      timeout=60, wrapper=profiler)
        workload = WORKLOADS[args.body]
        lua = write_lua(session, workload.path, workload.body)

        def count() -> int:
            return nginx_mod.upstream_requests(upstream.port)

        log("warm-up: 1 s")
        run_wrk(session, wrk, lua, proxy, args.threads, args.connections, 1, False, "warm-up",
                upstream, count)
        log(f"profiling: wrk -t{args.threads} -c{args.connections} for {args.duration} s")
        result = run_wrk(session, wrk, lua, proxy, args.threads, args.connections,
                         args.duration, True, "profiled run", upstream, count)
        session.stop(proxy.proc, proxy.label, grace=60)
        if not out.exists():
            raise BenchError(f"the proxy left no profile at {out} (see {session.tmp})")
        text = io.StringIO()
        stats = pstats.Stats(str(out), stream=text)
        stats.strip_dirs()
        requests = result["requests"]
        head = [f"# {proxy.label} under cProfile" if args.target == "floor"
                else f"# genai-proxy under cProfile: {proxy.label}", "",
                f"- twistd: `{bindir / 'twistd'}`; profile: "
                + (f"`{out}`" if args.out or args.keep_tmp
                   else "temporary, removed at the end (`--out FILE` keeps it)"),
                f"- load: `wrk -t{args.threads} -c{args.connections} -d{args.duration}s` POST "
                f"/v1/chat/completions against the static nginx upstream; {requests:,} requests, "
                f"{result['rps']:,.0f} req/s under the profiler, p50 {result['p50_us'] / 1000:.3f}"
                f" ms; proxy CPU {result['front_cpu_us']:.0f} µs per request (profiler "
                "included); plus 1 s of warm-up before", ""]
        for order, title in (("cumulative", "cumulative time"), ("tottime", "own time (tottime)")):
            text.write(f"\n## Top {args.top} by {title}\n\n```\n")
            stats.sort_stats(order).print_stats(args.top)
            text.write("```\n")
        return "\n".join(head) + text.getvalue()

    return run_main(args, body)


if __name__ == "__main__":
    sys.exit(main())
