#!/usr/bin/env python3
"""genai-proxy's whole benchmark: every phase, one Markdown report.

Runs, one after the other and each with processes of its own (all on
127.0.0.1, all stopped at the end, on failure and on Ctrl-C):

1. request/response latency and throughput (``phase_requests``): direct to a
   static nginx upstream, genai-proxy, the baseline, nginx as a proxy, LiteLLM;
2. per-event delay of streamed answers (``phase_streaming``), passed through
   and bridged (a Responses request through ``RESPONSES_API=chat``, a
   Messages request through ``MESSAGES_API=chat``);
3. concurrent open streams held by one proxy process (``phase_open_streams``);

then prints the report (``--write FILE`` also saves it; ``--json FILE`` saves
the raw figures).  Each phase also runs alone: ``python bench/phase_requests.py
--help``.  See bench/README.md.

Usage: ``python bench/run_bench.py --write bench/RESULTS.md``, with the python
of the venv where genai-proxy is installed (or ``--venv DIR``), optionally
``--baseline-venv DIR`` for a before/after comparison.

Exit status: 0 when every measurement ran cleanly (whether the promises pass
or not), 1 when a run saw errors, 2 when the benchmark could not be set up,
130 when interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the "bench" package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import phase_open_streams, phase_requests, phase_streaming, report
from bench.common import BenchError, log
from bench.info import gather_info
from bench.procs import Session, add_common_arguments, command_line, run_main

PHASES = {"requests": phase_requests, "streaming": phase_streaming,
          "open_streams": phase_open_streams}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p)
    p.add_argument("--phases", default="requests,streaming,open_streams",
                   help="comma-separated phases to run (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also save the raw figures as JSON")
    for module in PHASES.values():
        module.add_arguments(p)
    args = p.parse_args(argv)
    args.phase_list = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(args.phase_list) - set(PHASES)
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}; known: {', '.join(PHASES)}")
    if args.streams == 0 and "open_streams" in args.phase_list:
        args.phase_list.remove("open_streams")
    for module in PHASES.values():
        module.check_arguments(p, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body(session: Session) -> str:
        info = gather_info(args)
        started = report.now()
        results: dict[str, Any] = {}
        for name in args.phase_list:
            log(f"=== phase {name}")
            try:
                results[name] = PHASES[name].run(session, args)
            except BenchError as e:  # report the phases that ran; exit status 1
                session.problem(f"phase {name} failed: {e}")
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"info": info, "command": command_line(), "started": started.isoformat(),
                 "results": results, "problems": session.problems, "notes": session.notes},
                indent=1, default=str))
            log(f"raw figures written to {args.json}")
        return report.build(info, command_line(), started, results, session)

    return run_main(args, body)


if __name__ == "__main__":
    sys.exit(main())
