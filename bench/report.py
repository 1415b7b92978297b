"""The Markdown report: run details, the promises, one section per phase.

L{build} takes the figures the phases returned (plain dicts, keyed by phase
name: ``requests``, ``streaming``, ``open_streams``) and renders what ran
with which software on which machine, the promises table (PASS/FAIL), and
each phase's tables.  Rows of the proxy under test and of the baseline sit
side by side in every table, so one report shows "before" and "after".
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from bench.common import (
    ADDED_P50_CEILING_MS,
    BRIDGE_ADDED_P50_CEILING_MS,
    CHAT_BODY,
    LIMITS_ADDED_P50_CEILING_MS,
    LIMITS_REDIS_ADDED_P50_CEILING_MS,
    LITELLM_FACTOR,
    OPEN_STREAMS_AT_ONCE_FLOOR,
    OPEN_STREAMS_FIRST_EVENT_S,
    OPEN_STREAMS_RSS_CEILING_MB,
    RPS_FLOOR,
    log,
    median,
    percentile,
)
from bench.procs import Session


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


def _mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f} %" if ratio < 0.1 else f"{ratio * 100:.0f} %"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def promises(results: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    """(check, measured, limit, ok) for every promise the results can judge."""
    out: list[tuple[str, str, str, bool]] = []
    req = results.get("requests")
    if req and req.get("rows"):
        rows = {r["key"]: r for r in req["rows"]}
        med = lambda key, kind, f: median([x[f] for x in rows[key][kind]])  # noqa: E731
        direct = med("direct", "latency", "p50_us")
        nginx = med("nginx1", "throughput", "rps") if "nginx1" in rows else None
        lite = "litellm" in rows
        if lite:
            lite_rps = med("litellm", "throughput", "rps")
            lite_added = med("litellm", "latency", "p50_us") - direct
        for r in req["rows"]:
            if r["kind"] not in ("proxy", "baseline"):
                continue
            k, label = r["key"], r["label"]
            added = med(k, "latency", "p50_us") - direct
            rps = med(k, "throughput", "rps")
            out.append((f"{label}: added p50 at 1 connection (vs direct)",
                        f"{added / 1000:+.3f} ms", f"<= {ADDED_P50_CEILING_MS} ms",
                        added / 1000 <= ADDED_P50_CEILING_MS))
            if nginx:
                out.append((f"{label}: req/s at 32 connections / nginx (1 worker)",
                            f"{rps / nginx * 100:.1f} %", f">= {RPS_FLOOR * 100:.0f} %",
                            rps / nginx >= RPS_FLOOR))
            if lite:
                out.append((f"{label}: req/s at 32 connections / LiteLLM's",
                            f"{rps / lite_rps:,.1f}x", f">= {LITELLM_FACTOR:.0f}x",
                            rps >= LITELLM_FACTOR * lite_rps))
                out.append((f"{label}: added p50 / LiteLLM's added p50",
                            f"{added / 1000:+.3f} ms vs {lite_added / 1000:+.3f} ms",
                            f"<= 1/{LITELLM_FACTOR:.0f} "
                            f"({lite_added / LITELLM_FACTOR / 1000:.3f} ms)",
                            added <= lite_added / LITELLM_FACTOR))
        for key, ceiling in (("limits", LIMITS_ADDED_P50_CEILING_MS),
                             ("limits_redis", LIMITS_REDIS_ADDED_P50_CEILING_MS)):
            if key in rows and "proxy" in rows:
                over = med(key, "latency", "p50_us") - med("proxy", "latency", "p50_us")
                out.append((f"{rows[key]['label']}: p50 at 1 connection over the same "
                            f"proxy without limits ({rows['proxy']['label']})",
                            f"{over / 1000:+.3f} ms", f"<= {ceiling} ms",
                            over / 1000 <= ceiling))
    st = results.get("streaming")
    if st:
        for over, passed, bridged in _bridge_pairs(st["paths"]):
            out.append((f"{bridged['label']}: per-event p50 over the passed-through stream "
                        f"({passed['label']})",
                        f"{over:+.3f} ms", f"<= {BRIDGE_ADDED_P50_CEILING_MS} ms",
                        over <= BRIDGE_ADDED_P50_CEILING_MS))
    hold = results.get("open_streams")
    if hold and hold["runs"]:
        n, wanted = hold["plan"]["n"], hold["plan"]["requested"]
        scaled = f" ({n:,} run, {wanted:,} requested)" if n < wanted else ""
        for h in hold["runs"]:
            if h.get("kind") == "direct":
                continue
            label = h["label"]
            end = h.get("end") or ("response.completed" if h.get("bridged") else "[DONE]")
            out.append((f"{label}: {n:,} open streams{scaled} completed with {end}",
                        f"{h['complete']:,} of {n:,}", "all", h["complete"] == n))
            most = h.get("most_open")
            if most is not None and h["ramp_rate"]:
                out.append((f"{label}: {n:,} streams opened at {h['ramp_rate']:,.0f}/s: the "
                            "most open at once", f"{most:,} of {n:,} ({most / n * 100:.1f} %)",
                            f">= {OPEN_STREAMS_AT_ONCE_FLOOR:.0%}",
                            most >= OPEN_STREAMS_AT_ONCE_FLOOR * n))
            worst = h["first_wait_max_s"]
            out.append((f"{label}: {n:,} open streams: longest wait for a first event",
                        "never" if worst is None else f"{worst:.2f} s "
                        f"({h['first_wait_over_1s']} over 1 s)",
                        f"<= {OPEN_STREAMS_FIRST_EVENT_S:g} s",
                        h["with_events"] == n and h["first_wait_over_1s"] == 0))
            peak_mb = h["rss_peak"] * 1024 / 1e6
            out.append((f"{label}: RSS while {n:,} streams are open (peak)",
                        f"{peak_mb:.1f} MB ({_mib(h['rss_peak'])})",
                        f"<= {OPEN_STREAMS_RSS_CEILING_MB:g} MB",
                        peak_mb <= OPEN_STREAMS_RSS_CEILING_MB))
    return out


def _header(info: dict[str, Any], command: str, started: datetime.datetime,
            session: Session, results: dict[str, Any]) -> list[str]:
    lines = ["# genai-proxy benchmark results", ""]
    if session.problems:
        lines += ["> **WARNING: some measurements saw errors; the figures below are suspect:**"]
        lines += [f"> - {p}" for p in session.problems] + [""]
    elapsed = (now() - started).total_seconds()
    lines.append(f"- Date: {started.strftime('%Y-%m-%d %H:%M:%S %Z')} (run took "
                 f"{elapsed:.0f} s); repository at git {info['git'] or 'unknown'}")
    lines.append(f"- Command: `{command}`")
    lines.append(f"- Machine: {info['nproc']} CPUs (nproc), {info['cpu']}, {info['kernel']}; "
                 f"load average (1 min) {info['load_start']:.2f} at start, "
                 f"{os.getloadavg()[0]:.2f} at the end (the benchmark's own load included); "
                 f"RLIMIT_NOFILE soft/hard {info['nofile'][0]}/{info['nofile'][1]} at start")
    for label, v in info["venvs"].items():
        if "error" in v:
            lines.append(f"- {label}: {v['python_path']}: could not inspect ({v['error']})")
            continue
        libs = ", ".join(f"{n} {v[n]}" for n in ("Twisted", "treq", "httptools") if v.get(n))
        lines.append(f"- {label}: genai-proxy {v.get('genai-proxy')} from "
                     f"`{v['python_path']}`: Python {v['python']}, {libs}; {v['source']}")
    lite = results.get("requests", {}).get("litellm_version")
    lines.append(f"- Tools: {info['nginx']}, {info['wrk']}"
                 + (f", LiteLLM {lite}" if lite else ""))
    return lines


def _requests_section(req: dict[str, Any]) -> list[str]:
    rows = req["rows"]
    byk = {r["key"]: r for r in rows}
    med = lambda r, kind, f: median([x[f] for x in r[kind]])  # noqa: E731
    direct = med(byk["direct"], "latency", "p50_us")
    nginx = med(byk["nginx1"], "throughput", "rps") if "nginx1" in byk else float("nan")
    lite = med(byk["litellm"], "throughput", "rps") if "litellm" in byk else None
    out = ["## Request/response: latency at 1 connection, throughput at 32 connections", "",
           f"Settings: {req['rounds']} interleaved round{'s' if req['rounds'] > 1 else ''} "
           f"of {req['duration']} s per wrk run, "
           "median across rounds; 1 connection = `wrk -t1 -c1 --latency`, 32 connections = "
           "`wrk -t2 -c32`; request "
           + (f"{req['body_about']} ({req['body_bytes']:,} bytes)" if "body_about" in req
              else f"POST /v1/chat/completions `{CHAT_BODY.decode()}`") + ". "
           "Upstream of every row: nginx serving a canned chat completion from a file "
           f"(`worker_processes {req['upstream_workers']}`, keep-alive). nginx as a proxy: "
           "`daemon off; master_process on;`, upstream `keepalive 64`, HTTP/1.1, "
           "`proxy_buffering off`, `access_log off`, the subscription header set"
           + (f"; `worker_processes auto` = {req['nginx_auto_workers']} workers here"
              if "nginx_auto_workers" in req else "") + ".", "",
           "| target | p50 (ms) | p99 (ms) | p50 added vs direct (ms) | req/s at 32 conns "
           "| req/s range | vs nginx 1 worker | vs LiteLLM | CPU per request: front / upstream "
           "(µs) | upstream requests per request |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        p50, p99 = med(r, "latency", "p50_us"), med(r, "latency", "p99_us")
        rps = [x["rps"] for x in r["throughput"]]
        front = med(r, "throughput", "front_cpu_us")
        up = [x["upstream_cpu_us"] for x in r["throughput"] if x["upstream_cpu_us"] is not None]
        cpu = f"{front:.0f}" + (f" / {median(up):.0f}" if up else "")
        upr = median([x.get("upstream_per_request", float("nan")) for x in r["throughput"]])
        added = "" if r["key"] == "direct" else f"{(p50 - direct) / 1000:+.3f}"
        vs_lite = f"{median(rps) / lite:,.1f}x" if lite else ""
        out.append(f"| {r['label']} | {_ms(p50)} | {_ms(p99)} | {added} | {median(rps):,.0f} | "
                   f"{min(rps):,.0f}–{max(rps):,.0f} | {_pct(median(rps) / nginx)} | "
                   f"{vs_lite} | {cpu} | {upr:.2f} |")
    out += ["", "p50/p99: wrk's latency percentiles at 1 connection (one request at a time). "
            "req/s: `wrk -t2 -c32` requests per second, median (and range) of the rounds. CPU "
            "per request: CPU time of the process group in front (proxy, nginx workers, "
            "LiteLLM) and of the static upstream during the 32-connection runs, divided by the "
            "requests served. Upstream requests per request: requests the static upstream "
            "counted (nginx stub_status) per request wrk completed, 32-connection runs; 1.00 "
            "means every answer really came from the upstream (a little more: requests still "
            "in flight when wrk stopped).", "",
            "Per round (p50 ms / p99 ms at 1 connection; req/s at 32 connections):", "",
            "| target | " + " | ".join(f"round {i + 1}" for i in range(req["rounds"])) + " |",
            "| --- | " + " | ".join("---" for _ in range(req["rounds"])) + " |"]
    for r in rows:
        cells = [f"{_ms(lat['p50_us'])} / {_ms(lat['p99_us'])}; {thr['rps']:,.0f}"
                 for lat, thr in zip(r["latency"], r["throughput"], strict=False)]
        out.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    out.append("")
    for k, (size, served) in req.get("log_bytes", {}).items():
        out.append(f"- {byk[k]['label']}: log file {size / 1e6:.1f} MB after the load rounds, "
                   f"about {size / max(served, 1):,.0f} bytes per request.")
    for k, stages in req.get("rss", {}).items():
        out.append(f"- {byk[k]['label']}: RSS " + ", ".join(
            f"{stage} {_mib(v)}" for stage, v in stages.items()) + ".")
    return out + [""]


def _bridge_pairs(paths: dict[str, Any]) -> list[tuple[float, dict[str, Any], dict[str, Any]]]:
    """(bridged per-event p50 - passed-through per-event p50 in ms, the
    passed-through path, the bridged path) for each bridged path with
    figures: the passed-through path is the same proxy's default
    configuration (key C{proxy})."""
    passed = paths.get("proxy")
    if not passed or not passed["per_event"]:
        return []
    return [(median(s["per_event"]) - median(passed["per_event"]), passed, s)
            for s in paths.values() if s.get("bridged") and s["per_event"]]


def _streaming_section(st: dict[str, Any]) -> list[str]:
    paths = st["paths"]
    shape = f"{st['events']} events {st['delay'] * 1000:g} ms apart"
    out = [f"## Streaming: delay per event ({st['runs']} streams of {shape} per path)", "",
           "| path | streams | per-event delay p50 (ms) | p99 (ms) | added p50 vs direct (ms) "
           "| added p99 vs direct (ms) | first event p50 (ms) | first event added (ms) "
           "| max gap between events (ms) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    d = paths.get("direct", {})
    d50, d99 = median(d.get("per_event", [])), percentile(d.get("per_event", []), 99)
    f50 = median(d.get("first", []))
    for key, s in paths.items():
        p50, p99, first = median(s["per_event"]), percentile(s["per_event"], 99), median(s["first"])
        rel = key != "direct"
        out.append(f"| {s['label']} | {s['streams']} | {p50:.3f} | {p99:.3f} | "
                   f"{f'{p50 - d50:+.3f}' if rel else ''} | {f'{p99 - d99:+.3f}' if rel else ''} "
                   f"| {first:.3f} | {f'{first - f50:+.3f}' if rel else ''} | "
                   f"{max(s['gaps']) if s['gaps'] else float('nan'):.1f} |")
    out += ["", "Upstream: the Python mock (it time-stamps each event it writes, "
            "CLOCK_MONOTONIC); the client stamps each event's arrival with the same clock. "
            "Per-event delay: mock wrote it -> client had all of it; the difference to direct "
            "is what a hop adds to every event. First event: request sent -> first event. Max "
            f"gap: longest pause between consecutive events at the client (the mock sends one "
            f"every {st['delay'] * 1000:g} ms; much longer would mean events held back).", ""]
    pairs = _bridge_pairs(paths)
    apis = {s.get("api", "responses") for s in paths.values() if s.get("bridged")}
    if "responses" in apis:
        out += ["Bridged: `POST /v1/responses` `{\"model\":\"gpt-4.1\",\"input\":\"hi\","
                "\"stream\":true}` to the proxy under test with `RESPONSES_API=chat`, which "
                "sends the mock a streamed chat request and rewrites its stream into Responses "
                "events (the mock is chat-only: 404 on /v1/responses). Its delay is counted "
                "per upstream content event: the k-th `response.output_text.delta` at the "
                "client against the k-th content event the mock wrote (first event and gaps "
                "likewise count text deltas); the events the bridge adds (created, in_progress, "
                "item and part added and done, completed) are not matched. Each stream must "
                "end with `response.completed`.", ""]
    if "messages" in apis:
        out += ["Messages bridge: `POST /v1/messages` `{\"model\":\"gpt-4.1\","
                "\"max_tokens\":1000,\"stream\":true,\"messages\":[{\"role\":\"user\","
                "\"content\":\"hi\"}]}` (with `x-api-key` and `anthropic-version: 2023-06-01`) "
                "to the proxy under test with `MESSAGES_API=chat`, which sends the mock a "
                "streamed chat request and rewrites its stream into Anthropic Messages events. "
                "Its delay is counted per upstream content event: the k-th `content_block_delta` "
                "with a `text_delta` at the client against the k-th content event the mock wrote "
                "(first event and gaps likewise); the events the bridge adds (message_start, "
                "ping, content_block_start and _stop, message_delta, message_stop) are not "
                "matched. Each stream must end with `message_stop`.", ""]
    if pairs:
        out += ["### Bridges: per event, bridged next to passed through", "",
                "| path | per-event p50 (ms) | p99 (ms) | added p50 vs direct (ms) "
                "| added p99 vs direct (ms) |", "| --- | ---: | ---: | ---: | ---: |"]
        for i, (over, passed, bridged) in enumerate(pairs):
            for s in (passed, bridged) if i == 0 else (bridged,):
                p50, p99 = median(s["per_event"]), percentile(s["per_event"], 99)
                out.append(f"| {s['label']} | {p50:.3f} | {p99:.3f} | {p50 - d50:+.3f} "
                           f"| {p99 - d99:+.3f} |")
            p99_over = percentile(bridged["per_event"], 99) - percentile(passed["per_event"], 99)
            name = "Messages bridge" if bridged.get("api") == "messages" else "bridged"
            out.append(f"| {name} minus passed through | {over:+.3f} | {p99_over:+.3f} | | |")
        out += ["", f"The promise: a bridged stream (Responses or Messages) adds at most "
                f"{BRIDGE_ADDED_P50_CEILING_MS} ms per event at p50 over a passed-through stream "
                "(the same proxy, default configuration, same run).", ""]
    return out


def _open_streams_section(hs: dict[str, Any]) -> list[str]:
    plan, runs = hs["plan"], hs["runs"]
    if not runs:
        return []
    h0 = runs[0]
    out = [f"## Concurrent open streams ({plan['n']:,} at once through one proxy process)", ""]
    if plan["n"] < plan["requested"]:
        out += [f"**Requested {plan['requested']:,} streams, ran {plan['n']:,}.** Each stream "
                f"needs 2 file descriptors in the proxy (client and upstream socket), so "
                f"{plan['requested']:,} streams need about {plan['fds_needed']:,}; the hard "
                f"RLIMIT_NOFILE here is {plan['hard']:,} and could not be raised "
                f"({plan['error'] or 'no error reported'}). {plan['n']:,} is the largest "
                "count, rounded down to a hundred, that fits under it with a margin.", ""]
    out += [f"Each stream: {h0['events']} events {h0['delay']:g} s apart from the Python mock "
            f"upstream (open files soft/hard {hs.get('mock_nofile', '?')}"
            + ("; its cyclic GC off, so that its pauses are not counted against the proxy"
               if hs.get("mock_gc_off") else "") + "), opened from one "
            "non-blocking client at "
            + (f"{h0['ramp_rate']:,.0f} connections/s" if h0["ramp_rate"] else "once")
            + "; each wait for the first event counts from when that stream's request was "
            "sent.", "", "| figure | " + " | ".join(h["label"] for h in runs) + " |",
            "| --- |" + " ---: |" * len(runs)]

    def row(name: str, fmt: Any) -> None:
        out.append(f"| {name} | " + " | ".join(fmt(h) for h in runs) + " |")

    sec = lambda v: "never" if v is None else f"{v:.2f} s"  # noqa: E731
    row("streams that got events / completed (with [DONE]; bridged: response.completed; "
        "Messages: message_stop)",
        lambda h: f"{h['with_events']:,} / {h['complete']:,} of {h['n']:,}")
    if any(h["errors"] for h in runs):
        row("errors", lambda h: ", ".join(f"{v} x {k}" for k, v in h["errors"].items()) or "")
    row("streams the mock started / completed",
        lambda h: f"{h['mock_streams']['streams_started']:,} / "
                  f"{h['mock_streams']['streams_completed']:,}")
    row("time to open them all (last request sent)", lambda h: sec(h["opening_s"]))
    row("time until every stream had its first event", lambda h: sec(h["all_first_s"]))
    row("the most open at once (from first event to end) / N",
        lambda h: "n/a" if h.get("most_open") is None else
        f"{h['most_open']:,} / {h['n']:,} ({h['most_open'] / h['n'] * 100:.1f} %)")
    row("wait for the first event: p50 / p99 / max",
        lambda h: "n/a" if h["first_wait_max_s"] is None else
        f"{h['first_wait_p50_s']:.3f} / {h['first_wait_p99_s']:.3f} / "
        f"{h['first_wait_max_s']:.3f} s")
    row("streams that waited more than 1 s for it", lambda h: f"{h['first_wait_over_1s']}")
    row("connections that took >= 0.9 s to set up", lambda h: f"{h['connect_late']}")
    row("SYNs dropped on full accept queues (TcpExt ListenOverflows, machine)",
        lambda h: "n/a" if h["listen_overflows"] is None else f"{h['listen_overflows']}")
    row("time until all were done", lambda h: f"{h['elapsed_s']:.1f} s")
    row("events/s through the proxy while all are open", lambda h: f"{h['n'] / h['delay']:,.0f}"
        if h["delay"] else "n/a")
    row("CPU time during the phase: proxy / mock / client",
        lambda h: ("– / " if h.get("kind") == "direct" else f"{h['proxy_cpu_s']:.1f} / ")
        + f"{h['mock_cpu_s']:.1f} / {h['client_cpu_s']:.1f} s")
    row("proxy open files soft/hard limit; fds in use once all were open",
        lambda h: f"{h['proxy_nofile']}; {h['fds_all_open'] or 'n/a'}")
    row("proxy RSS before opening them", lambda h: _mib(h["rss_before"]))
    row("proxy RSS once all were open", lambda h: _mib(h["rss_all_open"]))
    row("proxy RSS while holding them (median of samples)",
        lambda h: _mib(h["rss_holding_median"]))
    row("proxy RSS peak", lambda h: _mib(h["rss_peak"]))
    row("proxy RSS 1 s after they ended", lambda h: _mib(h["rss_after"]))
    row("RSS per open stream, (peak - before) / N",
        lambda h: f"{(h['rss_peak'] - h['rss_before']) / h['n']:.1f} KiB")
    return out + [""]


def build(info: dict[str, Any], command: str, started: datetime.datetime,
          results: dict[str, Any], session: Session) -> str:
    """The whole report for the phases in C{results}."""
    lines = _header(info, command, started, session, results)
    lines.append("- Everything runs on this one machine over loopback (127.0.0.1 only): "
                 "clients, upstreams and proxies share the CPUs, so read the figures as "
                 "relative ones on one machine, not as capacity.")
    lines.append("")
    checks = promises(results)
    if checks:
        lines += ["## Promises", "", "| check | measured | limit | result |",
                  "| --- | --- | --- | --- |"]
        lines += [f"| {c} | {m} | {lim} | {_verdict(ok)} |" for c, m, lim, ok in checks]
        lines.append("")
        for c, m, lim, ok in checks:
            log(f"{'PASS' if ok else 'FAIL'}: {c}: {m} ({lim})")
    if results.get("requests", {}).get("rows"):
        lines += _requests_section(results["requests"])
    if results.get("streaming"):
        lines += _streaming_section(results["streaming"])
    if results.get("open_streams"):
        lines += _open_streams_section(results["open_streams"])
    lines += [f"Note: {n}" for n in session.notes] + ([""] if session.notes else [])
    if not session.problems:
        lines += ["Every run completed with zero non-2xx answers and zero socket errors.", ""]
    return "\n".join(lines)
