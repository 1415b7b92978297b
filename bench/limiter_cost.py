#!/usr/bin/env python3
"""The limiter's own work for one request, in process: admit, the
x-ratelimit-* headers, spend the answer's tokens, release; every kind of
limit of bench/common.py's LIMITS_MODELS counted, none reached.

    python bench/limiter_cost.py --requests 50000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock

from bench.common import LIMITS_MODELS
from genaiproxy.config import parse_limits, parse_models_document
from genaiproxy.limits import Admission, Limiter
from genaiproxy.observe import ProxyMetrics


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=50000, help="requests timed (default: 50000)")
    args = p.parse_args(argv)
    entries, _, section = parse_models_document(LIMITS_MODELS, 0)
    clock = Clock()
    clock.advance(time.time())
    limiter = Limiter(clock, ProxyMetrics("bench", lambda: 0.0))
    limiter.set_rules(parse_limits(section, entries))
    usage = {"input": 10, "output": 5}
    started = time.perf_counter()
    for _ in range(args.requests):
        admission = limiter.admit("default")
        assert isinstance(admission, Admission) and admission.refused_by is None
        limiter.headers(admission)
        limiter.spend("default", "gpt-4.1", usage)
        limiter.release("default", admission)
    spent = time.perf_counter() - started
    print(f"{spent / args.requests * 1e6:.1f} µs of the limiter's work a request "
          f"({args.requests:,} requests)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
