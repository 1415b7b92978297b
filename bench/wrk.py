"""wrk runs: the POST script, one run's figures, and error accounting.

wrk sends ``POST /v1/chat/completions`` with the benchmark's small JSON body
(a Lua script sets method, body and Content-Type), and a ``done`` hook prints
the summary as one JSON line, which is parsed here.  Around each run the CPU
time of the process group in front (proxy, nginx workers, LiteLLM) and of the
upstream is read, and (with the static nginx upstream) its request counter,
so that each figure can be checked against what the upstream really served.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import CHAT_BODY, PATH, BenchError
from bench.procs import Session, Target, group_cpu_seconds

LUA = r"""
wrk.method = "POST"
wrk.path = "%(path)s"
wrk.body = [==[%(body)s]==]
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\"requests\":%%d,\"duration_us\":%%d,\"bytes\":%%d," ..
    "\"p50_us\":%%d,\"p90_us\":%%d,\"p99_us\":%%d,\"max_us\":%%d,\"mean_us\":%%.1f," ..
    "\"connect\":%%d,\"read\":%%d,\"write\":%%d,\"status\":%%d,\"timeout\":%%d}\n",
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def write_lua(session: Session, path: str = PATH, body: bytes = CHAT_BODY) -> Path:
    """The POST script of C{body} to C{path}, in the session's temporary
    directory (the body in a Lua long string: no escaping)."""
    script = session.path("post.lua")
    script.write_text(LUA % {"path": path, "body": body.decode()})
    return script


def run_wrk(session: Session, wrk: str, lua: Path, target: Target, threads: int, conns: int,
            duration: int, latency: bool, what: str, upstream: Target | None = None,
            upstream_count: Callable[[], int] | None = None) -> dict[str, Any]:
    """One wrk run against C{target}, repeated once if a process died meanwhile.

    Returns wrk's figures plus ``rps``, CPU microseconds per request of the
    front and of the upstream, and ``upstream_per_request`` (requests the
    upstream served per request wrk completed) when C{upstream_count} is given.
    A run with errors is recorded as a problem of the session."""
    session.revive(f"the pause before {what} on {target.label}")
    result = _once(wrk, lua, target, threads, conns, duration, latency, what, upstream,
                   upstream_count)
    if session.revive(f"{what} on {target.label}"):
        result = _once(wrk, lua, target, threads, conns, duration, latency,
                       what + " (repeated)", upstream, upstream_count)
        if session.revive(f"{what} (repeated) on {target.label}"):
            raise BenchError(f"processes keep dying during {what}")
    problem = result.pop("_problem", None)
    if problem:
        session.problem(problem)
    return result


def _once(wrk: str, lua: Path, target: Target, threads: int, conns: int, duration: int,
          latency: bool, what: str, upstream: Target | None,
          upstream_count: Callable[[], int] | None) -> dict[str, Any]:
    argv = [wrk, f"-t{threads}", f"-c{conns}", f"-d{duration}s", "--timeout", "5s", "-s",
            str(lua)]
    if latency:
        argv.append("--latency")
    argv.append(target.url)
    same = upstream is None or upstream.proc.pid == target.proc.pid
    cpu_front = group_cpu_seconds(target.proc.pid)
    cpu_up = 0.0 if same else group_cpu_seconds(upstream.proc.pid)  # type: ignore[union-attr]
    count = upstream_count() if upstream_count else 0
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    count = (upstream_count() - count - 1) if upstream_count else 0  # -1: the status request
    cpu_front = group_cpu_seconds(target.proc.pid) - cpu_front
    if not same:
        cpu_up = group_cpu_seconds(upstream.proc.pid) - cpu_up  # type: ignore[union-attr]
    line = next((text for text in done.stdout.splitlines() if text.startswith("BENCHJSON ")),
                None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed on {target.label} ({what}), status {done.returncode}:\n"
                         f"{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(line[len("BENCHJSON "):])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    requests = max(result["requests"], 1)
    result["front_cpu_us"] = cpu_front / requests * 1e6
    result["upstream_cpu_us"] = None if same else cpu_up / requests * 1e6
    if upstream_count:
        result["upstream_per_request"] = count / requests
    # wrk counts answers with status >= 400 as "Non-2xx or 3xx responses".
    errors = {k: result[k] for k in ("status", "connect", "read", "write", "timeout")
              if result[k]}
    if errors or result["requests"] == 0:
        detail = ", ".join(f"{k}={v}" for k, v in errors.items()) or "no requests completed"
        result["_problem"] = (f"{target.label}, {what}: {detail} (of {result['requests']} "
                              "requests; 'status' = non-2xx answers)")
    return result
