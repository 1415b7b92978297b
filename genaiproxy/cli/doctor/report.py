"""The steps C{genai-proxy doctor} took, and how they read on a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from time import monotonic

MARKS = {"pass": "✓", "fail": "✗", "skip": "–"}


@dataclass
class Step:
    """One step: C{status} is pass, fail or skip."""

    name: str
    status: str
    detail: str
    started: float = field(repr=False)
    cause: str = ""  # for a failure: its most likely cause
    fix: str = ""  # and the setting that fixes it
    upstream: str = ""
    duration_ms: float = 0.0

    def __post_init__(self) -> None:
        self.duration_ms = round((monotonic() - self.started) * 1000, 1)


@dataclass
class Report:
    """Every step, in order, under the upstream it concerns."""

    version: str
    steps: list[Step] = field(default_factory=list)
    _upstream: str = ""
    _headings: dict[int, str] = field(default_factory=dict)

    def section(self, heading: str) -> None:
        """The steps added from now on concern the upstream in C{heading}."""
        self._upstream = heading.split(":", 1)[0].removeprefix("upstream ")
        self._headings[len(self.steps)] = heading

    def add(self, step: Step) -> Step:
        step.upstream = step.upstream or self._upstream
        self.steps.append(step)
        return step

    @property
    def ok(self) -> bool:
        """True when no step failed."""
        return all(step.status != "fail" for step in self.steps)


def render_text(report: Report) -> str:
    """The report for a person: a line a step, the fix under each failure."""
    lines = [f"genai-proxy doctor {report.version}"]
    width = max((len(step.name) for step in report.steps), default=10)
    for index, step in enumerate(report.steps):
        if index in report._headings:
            lines.append(report._headings[index])
        timing = f"  ({step.duration_ms:g} ms)" if step.status != "skip" else ""
        lines.append(f"  {MARKS[step.status]} {step.name:<{width}}  {step.detail}{timing}")
        if step.cause:
            lines.append(f"      cause: {step.cause}")
        if step.fix:
            lines.append(f"      fix:   {step.fix}")
    failed = sum(step.status == "fail" for step in report.steps)
    lines.append("all steps passed" if not failed else
                 f"{failed} step{'s' if failed > 1 else ''} failed")
    return "\n".join(lines) + "\n"
