"""The limits of every client, enforced.

A L{Limiter} holds the rules in service (models.yaml's C{limits:}, swapped
whole on a reload while the windows' counts stay) and the windows: this
process's (L{MemoryWindows}) or, when C{LIMITS_REDIS_URL} is set, the ones
shared with every replica (L{SharedWindows}), with this process's standing
in while Redis is away (C{LIMITS_REDIS_FAILURE=open}).

Each forwarded request is let through or refused before it goes upstream
(L{admit}); its answer's tokens are counted once known (L{spend}), and its
concurrency slot is given back at its end (L{release}).  The proxy's own
refusals (L{refusal}) are answered at once: never retried, never sent to a
fallback, never counted as an upstream's failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import partial
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from genaiproxy.api import error_document
from genaiproxy.config import DEFAULT_CLIENT, NO_LIMITS, ClientLimits, LimitRules
from genaiproxy.limits.memory import MemoryWindows
from genaiproxy.limits.windows import Admission, format_reset
from genaiproxy.observe import ProxyMetrics

__all__ = ["Limiter", "SharedWindows"]

log = Logger(namespace="genaiproxy.limits")

# How each limit's refusal is told: the error's type and code, and the unit
# its limit is counted in.
_TOLD = {
    "requests_per_minute": ("requests", "rate_limit_exceeded", "requests a minute"),
    "tokens_per_minute": ("tokens", "rate_limit_exceeded", "tokens a minute"),
    "concurrent_requests": ("requests", "rate_limit_exceeded", "requests at once"),
    "tokens_per_day": ("insufficient_quota", "insufficient_quota", "tokens a day (UTC)"),
    "budget_per_day": ("insufficient_quota", "insufficient_quota", "a day (UTC)"),
    "budget_per_month": ("insufficient_quota", "insufficient_quota", "a month (UTC)"),
}


class SharedWindows(Protocol):
    """Windows kept where several proxies share them (Redis)."""

    def admit(self, name: str, limits: ClientLimits) -> Deferred[Admission]:
        """L{MemoryWindows.admit}, for every replica at once."""

    def spend(self, name: str, limits: ClientLimits, tokens: int, cost: float) -> None:
        """L{MemoryWindows.spend}, for every replica at once."""

    def release(self, name: str, lease: str) -> None:
        """Give a concurrency slot back."""

    @property
    def available(self) -> bool:
        """Whether the store answers (else this process's windows stand in)."""


def _header_pairs(admission: Admission) -> list[tuple[bytes, bytes]]:
    pairs = []
    for kind, window in (("requests", admission.requests), ("tokens", admission.tokens)):
        if window is not None:
            pairs += [(b"x-ratelimit-limit-" + kind.encode(), b"%d" % window.limit),
                      (b"x-ratelimit-remaining-" + kind.encode(), b"%d" % window.remaining),
                      (b"x-ratelimit-reset-" + kind.encode(),
                       format_reset(window.reset).encode())]
    return pairs


class Limiter:
    """Enforces models.yaml's C{limits:} for every client.

    @ivar rules: the rules in service.
    @ivar active: whether they limit any client.
    @ivar priced: whether they price any model.
    @ivar memory: this process's windows.
    @ivar shared: the windows shared through Redis, when configured.
    @ivar closed: with a shared store: refuse (503) rather than serve while
        it is away.
    """

    def __init__(self, clock: IReactorTime, metrics: ProxyMetrics) -> None:
        self._clock = clock
        self._metrics = metrics
        self.rules: LimitRules = NO_LIMITS
        # Whether any client is limited (else requests pass uncounted), and
        # whether any model has a price: read on every request, so kept.
        self.active = False
        self.priced = False
        self.memory = MemoryWindows()
        self.shared: SharedWindows | None = None
        self.closed = False
        # The budgets on /metrics: (client, window) read when it is.
        self._budgets_shown: set[tuple[str, str]] = set()

    def set_rules(self, rules: LimitRules) -> None:
        """Take new rules into service; the windows keep their counts."""
        self.rules = rules
        self.active = rules.active
        self.priced = bool(rules.prices)

    @staticmethod
    def client_of(name: str) -> str:
        """The client a request counts as: its token's name, or
        L{DEFAULT_CLIENT}."""
        return name or DEFAULT_CLIENT

    def models_of(self, client: str) -> frozenset[str] | None:
        """The models C{client} may use (None: any)."""
        return self.rules.of(client).models

    def admit(self, client: str) -> Admission | Deferred[Admission]:
        """Let a request of C{client} through, or say which limit refuses
        it (a Deferred when the windows are shared)."""
        limits = self.rules.of(client)
        shared = self.shared
        if shared is not None and shared.available:
            return shared.admit(client, limits).addErrback(self._store_failed, client, limits)
        if shared is not None and self.closed:
            return Admission("limits_store", "", 5.0)
        return self.memory.admit(client, limits, self._clock.seconds())

    def _store_failed(self, failure: Failure, client: str, limits: ClientLimits) -> Admission:
        """Redis failed during the request: refuse (closed) or count it here."""
        if self.closed:
            return Admission("limits_store", "", 5.0)
        return self.memory.admit(client, limits, self._clock.seconds())

    def _show_budget(self, client: str, limits: ClientLimits) -> None:
        """Put what is left of C{client}'s budgets on /metrics (once it
        spent), read each time /metrics is: a new day or month shows at
        once, not at the client's next request."""
        for window, limit in (("day", limits.budget_per_day),
                              ("month", limits.budget_per_month)):
            if limit is not None and (client, window) not in self._budgets_shown:
                self._budgets_shown.add((client, window))
                self._metrics.child(self._metrics.budget_remaining, client, window).set_function(
                    partial(self._budget_left, client, window))

    def _budget_left(self, client: str, window: str) -> float:
        """What is left of C{client}'s budget for C{window} (NaN: a reload
        took that budget away)."""
        limits = self.rules.of(client)
        limit = limits.budget_per_day if window == "day" else limits.budget_per_month
        if limit is None:
            return math.nan
        day, month = self.memory.money(client, self._clock.seconds())
        return max(limit - (day if window == "day" else month), 0.0)

    def spend(self, client: str, model: str | None, usage: Mapping[str, int]) -> None:
        """Count an answer's tokens (and their cost, by its model's price)."""
        limits = self.rules.of(client)
        tokens = usage.get("input", 0) + usage.get("output", 0)
        price = self.rules.prices.get(model or "")
        cost = price.cost(usage) if price is not None else 0.0
        if cost:
            self._metrics.child(self._metrics.cost, client, self._metrics.model_label(model)).inc(cost)
        if not limits.limited:
            return
        now = self._clock.seconds()
        self.memory.spend(client, limits, tokens, cost, now)
        if self.shared is not None and self.shared.available:
            self.shared.spend(client, limits, tokens, cost)
        self._show_budget(client, limits)

    def release(self, client: str, admission: Admission) -> None:
        """A request let through has ended: its concurrency slot is free."""
        if not admission.shared:
            self.memory.release(client)
        elif admission.lease is not None and self.shared is not None:
            self.shared.release(client, admission.lease)

    @staticmethod
    def headers(admission: Admission) -> list[tuple[bytes, bytes]]:
        """OpenAI's C{x-ratelimit-*} headers for an answer to a limited client."""
        return _header_pairs(admission)

    def refusal(self, client: str, admission: Admission) -> tuple[int, dict[str, Any], int]:
        """The status, the error document and the C{Retry-After} seconds of
        a refused request; logged (C{limited}) and counted."""
        limit = admission.refused_by or ""
        wait = max(math.ceil(admission.retry_after), 1)
        self._metrics.limited.labels(client, limit).inc()
        if limit == "limits_store":
            log.warn("limited", client=client, limit=limit, window="")
            return 503, error_document(
                "the limits store (Redis) cannot be reached and LIMITS_REDIS_FAILURE is "
                f"closed; try again in {wait} s", "service_unavailable",
                "limits_store_unavailable"), wait
        limits = self.rules.of(client)
        error_type, code, unit = _TOLD[limit]
        value = getattr(limits, limit)
        message = (f"client {client!r} is over its limit {limit} ({value:g} {unit}; used "
                   f"{admission.used:.4g}); it resets in {wait} s")
        log.warn("limited", client=client, limit=limit, window=admission.window,
                 retry_after=wait)
        return 429, error_document(message, error_type, code), wait

    def refused_model(self, client: str, model: str) -> dict[str, Any]:
        """The 403 error document of a model outside C{client}'s list."""
        self._metrics.limited.labels(client, "models").inc()
        log.warn("limited", client=client, limit="models", window="", model=model)
        allowed = ", ".join(sorted(self.models_of(client) or ()))
        return error_document(f"client {client!r} may not use the model {model!r} "
                              f"(its models: {allowed})", "permission_error",
                              "model_not_allowed", param="model")

    def clients(self) -> set[str]:
        """The limited clients to show: those named in the rules (the
        default's, when it limits) and those seen since the start."""
        named = {name for name, limits in self.rules.clients.items() if limits.limited}
        if self.rules.default.limited:
            named |= {DEFAULT_CLIENT} | {name for name in self.memory.names()
                                         if name not in self.rules.clients}
        return named

    def use(self, client: str) -> tuple[ClientLimits, dict[str, float]]:
        """C{client}'s limits and what it uses of them, as this process
        counted (for the status page)."""
        limits = self.rules.of(client)
        return limits, self.memory.use(client, limits, self._clock.seconds())
