"""The doctor's limits step: models.yaml's C{limits:} as the daemon reads
it, in one line: who is limited, by what, and where the counts live."""

from __future__ import annotations

from dataclasses import fields
from time import monotonic

from genaiproxy.cli.doctor.report import Report, Step
from genaiproxy.config import ClientLimits, Config, LimitRules, strip_userinfo

__all__ = ["check_limits", "describe_limits"]


def _described(limits: ClientLimits) -> str:
    shown = []
    for item in fields(limits):
        value = getattr(limits, item.name)
        if value is None:
            continue
        shown.append(f"{item.name} [{', '.join(sorted(value))}]" if item.name == "models"
                     else f"{item.name} {value:g}")
    return ", ".join(shown) or "none"


def describe_limits(rules: LimitRules) -> str:
    """What the rules limit: the default's, then each named client's."""
    parts = [f"default: {_described(rules.default)}"]
    parts += [f"{name}: {_described(limits)}" for name, limits in sorted(rules.clients.items())]
    return "; ".join(parts)


def check_limits(report: Report, rules: LimitRules, config: Config) -> None:
    """A pass line for limits that load (the configuration step refused
    the file otherwise); none when no client is limited."""
    started = monotonic()
    if not rules.active:
        return
    where = (f"shared in Redis {strip_userinfo(config.limits_redis_url)}"
             if config.limits_redis_url else "in process")
    unpriced = "" if rules.prices else "; no model has a price (budgets count nothing)"
    report.add(Step("limits", "pass", f"{describe_limits(rules)}; counted {where}{unpriced}",
                    started))
