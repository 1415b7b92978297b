"""The doctor's limits step: models.yaml's C{limits:} as the daemon reads
it, in one line: who is limited, by what, and where the counts live."""

from __future__ import annotations

from dataclasses import fields
from time import monotonic
from typing import Any

from genaiproxy.cli.doctor.report import Report, Step
from genaiproxy.config import ClientLimits, Config, ConfigError, LimitRules, strip_userinfo
from genaiproxy.limits.redis_store import redis_windows
from genaiproxy.observe import ProxyMetrics

__all__ = ["check_limits", "check_redis", "describe_limits"]


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


async def check_redis(reactor: Any, report: Report, config: Config) -> None:
    """With C{LIMITS_REDIS_URL}: Redis answers a PING, logged in with the
    password of C{LIMITS_REDIS_PASSWORD_FILE}, as the daemon would."""
    if not config.limits_redis_url:
        return
    started = monotonic()
    shown = strip_userinfo(config.limits_redis_url)
    try:
        store = redis_windows(config, ProxyMetrics("doctor", lambda: 0.0), reactor)
    except ConfigError as e:
        report.add(Step("redis", "fail", str(e), started,
                        fix="correct LIMITS_REDIS_PASSWORD_FILE"))
        return
    store.connect()
    try:
        await store.ping(3.0)
    except Exception as e:  # noqa: BLE001 (any failure is the answer: said, not raised)
        reason = str(e) or type(e).__name__
        report.add(Step("redis", "fail", f"{shown} did not answer: {reason[:200]}", started,
                        cause="Redis is down or unreachable from here, or refused the "
                              "password (LIMITS_REDIS_PASSWORD_FILE)",
                        fix="check LIMITS_REDIS_URL and the password; the daemon would "
                            f"meanwhile do as LIMITS_REDIS_FAILURE={config.limits_redis_failure}"
                            " says"))
    else:
        report.add(Step("redis", "pass", f"{shown} answered, logged in", started))
    finally:
        await store.disconnect()
