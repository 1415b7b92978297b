#!/usr/bin/env python3
"""Where one request's CPU goes: a cProfile file summed up by part.

Reads a profile written by ``bench/profile_proxy.py --out FILE`` and adds
each function's own time to the part of the request path it belongs to
(twisted.web's request parsing and our channel and site; routing and the
gpt-5 rules; JSON; log events; metrics; treq and Agent; Headers; the pool;
Deferreds; the reactor and sockets; the limits; our forwarding), then
divides by the requests served.  Helpers that serve every part (json, the
``re`` module, builtins such as ``isinstance``) are charged to the part that
called them, following cProfile's per-caller times up to a caller that has a
part of its own, so that a log event's JSON encoding counts as logging and a
body's parse as JSON.  cProfile slows every call down severalfold: the
shares are what to read, the microseconds only as their scale.

    python bench/profile_proxy.py --duration 10 --out /tmp/small.prof
    python bench/cpu_breakdown.py /tmp/small.prof
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections import defaultdict
from collections.abc import Callable

Func = tuple[str, int, str]

# Parts, in the order the table lists them; each is a test on (file, name).
PARTS: list[tuple[str, Callable[[str, str], bool]]] = [
    ("limits (genaiproxy/limits)", lambda f, n: "/genaiproxy/limits/" in f),
    ("log events (ours and twisted.logger)", lambda f, n: "/genaiproxy/observe/log" in f
     or "/twisted/logger/" in f or f.endswith("forwarding/request_event.py")
     or "/twisted/python/log.py" in f and n not in ("callWithLogger", "callWithContext")),
    ("metrics (prometheus_client, ours)", lambda f, n: "/prometheus_client/" in f
     or f.endswith("observe/metrics.py")),
    ("routing and the gpt-5 rules", lambda f, n: f.endswith(("api/normalize.py",
                                                             "api/routes.py",
                                                             "config/routing.py"))),
    ("the pool (HTTPConnectionPool)", lambda f, n: f.endswith("twisted/web/client.py") and n in {
        "getConnection", "_getConnection", "_putConnection", "_newConnection",
        "_removeConnection", "closeCachedConnections", "quiescentCallback"}),
    ("Headers (twisted.web.http_headers)", lambda f, n: f.endswith("web/http_headers.py")),
    ("treq and Agent (client side)", lambda f, n: "/treq/" in f
     or f.endswith(("twisted/web/client.py", "twisted/web/_newclient.py", "web/iweb.py"))
     or "/genaiproxy/upstream/" in f),
    ("request parsing, our channel and site (twisted.web server)",
     lambda f, n: f.endswith(("twisted/web/http.py", "twisted/web/server.py",
                              "twisted/web/resource.py", "twisted/protocols/basic.py",
                              "twisted/protocols/policies.py", "/uuid.py"))
     or "/genaiproxy/server/" in f),
    ("our forwarding (call, answer, stream)", lambda f, n: "/genaiproxy/forwarding/" in f
     or "/genaiproxy/api/" in f),
    ("Deferreds", lambda f, n: f.endswith(("twisted/internet/defer.py",
                                          "twisted/python/failure.py"))),
    ("reactor, sockets, timers", lambda f, n: "/twisted/internet/" in f
     or f.endswith(("twisted/python/context.py", "twisted/python/log.py"))
     or n.startswith(("<method 'send'", "<method 'recv'", "<method 'poll'",
                      "<method 'modify'"))),
]
OTHER = "other (start-up included)"
JSON = "JSON parse and re-serialisation of bodies and answers"
# Helpers charged to whoever called them.
_SHARED_FILES = ("/json/", "/re/", "/enum.py", "/abc.py", "/typing.py", "/functools.py",
                 "/dataclasses.py", "/urllib/parse.py", "/copy.py", "/codecs.py",
                 "/twisted/python/compat.py", "/twisted/python/components.py",
                 "/zope/interface/")


def _shared(func: Func) -> bool:
    file, _, name = func
    if file == "~":  # builtins, except the system calls, which are the reactor's
        return not name.startswith(("<method 'send'", "<method 'recv'", "<method 'poll'",
                                    "<method 'modify'"))
    return any(part in file for part in _SHARED_FILES)


def part_of(func: Func) -> str | None:
    file, _, name = func
    for part, test in PARTS:
        if test(file, name):
            return part
    return None


def breakdown(stats: pstats.Stats) -> dict[str, float]:
    """Own seconds by part, helpers charged to their callers."""
    table = stats.stats  # type: ignore[attr-defined]
    totals: defaultdict[str, float] = defaultdict(float)

    def settle(func: Func, seconds: float, json: bool) -> None:
        part = part_of(func) or OTHER
        if json and part != PARTS[1][0]:  # JSON but for a log event's: the bodies'
            part = JSON
        totals[part] += seconds

    def charge(func: Func, seconds: float, depth: int, json: bool) -> None:
        json = json or "/json/" in func[0]
        if not _shared(func) or depth > 8:
            settle(func, seconds, json)
            return
        callers = table[func][4] if func in table else {}
        spent = sum(stat[2] for stat in callers.values()) or 0.0
        if not callers or spent <= 0:
            settle(func, seconds, json)
            return
        for caller, stat in callers.items():
            charge(caller, seconds * stat[2] / spent, depth + 1, json)

    for func, (_, _, own, _, _) in table.items():
        if own > 0:
            charge(func, own, 0, False)
    return dict(totals)


def requests_in(stats: pstats.Stats) -> int:
    """The requests the proxy served: calls of twisted.web's Request.process."""
    for (file, _, name), (_, calls, _, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if file.endswith("twisted/web/server.py") and name == "process":
            return calls
    raise SystemExit("no twisted.web Request.process in this profile")


def markdown(totals: dict[str, float], requests: int) -> str:
    whole = sum(totals.values())
    lines = [f"{requests:,} requests; {whole / requests * 1e6:,.0f} µs of profiled CPU a "
             "request (cProfile's own slowdown included)", "",
             "| part | µs a request (profiled) | share |", "| --- | ---: | ---: |"]
    order = [part for part, _ in PARTS] + [JSON, OTHER]
    for part in sorted(order, key=lambda p: -totals.get(p, 0.0)):
        seconds = totals.get(part, 0.0)
        lines.append(f"| {part} | {seconds / requests * 1e6:,.1f} | "
                     f"{seconds / whole * 100:.1f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profile", help="a cProfile file (bench/profile_proxy.py --out)")
    p.add_argument("--requests", type=int, help="requests served (default: counted)")
    args = p.parse_args(argv)
    stats = pstats.Stats(args.profile)
    sys.stdout.write(markdown(breakdown(stats), args.requests or requests_in(stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
