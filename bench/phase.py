"""The command line every phase module shares: parse, run the phase, report."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from bench import report
from bench.info import gather_info
from bench.procs import Session, add_common_arguments, command_line, run_main

_EPILOG = ("Prints a Markdown report; exit status 0 whether the promises pass or not, "
           "1 when runs saw errors, 2 on set-up failure, 130 on Ctrl-C.")


def phase_main(
    doc: str,
    key: str,
    add_arguments: Callable[[argparse.ArgumentParser], None],
    check_arguments: Callable[[argparse.ArgumentParser, argparse.Namespace], None],
    run: Callable[[Session, argparse.Namespace], dict[str, Any]],
    argv: list[str] | None,
) -> int:
    """Run one phase alone with its own and the common options; C{key}
    names its result in the report."""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=_EPILOG)
    add_common_arguments(p)
    add_arguments(p)
    args = p.parse_args(argv)
    check_arguments(p, args)

    def body(session: Session) -> str:
        info = gather_info(args)
        started = report.now()
        result = run(session, args)
        return report.build(info, command_line(), started, {key: result}, session)

    return run_main(args, body)
