"""models.yaml's C{limits:} section and its models' C{price}: what each
client may use, read and checked with the rest of the file.

L{parse_limits} turns the section into L{LimitRules}: the limits of each
named client (its own entry over the default's) and of every other client
(the default's), and the price of each model.  A mistake (an unknown key,
a negative number, a model the file does not have, a price without a
number) raises L{LimitsError}, which refuses the whole file: the last good
one stays in service.  The keys are declared in
L{genaiproxy.config.models_keys}.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from genaiproxy.config.models_keys import LIMIT_KEYS, PRICE_KEYS

__all__ = ["DEFAULT_CLIENT", "NO_LIMITS", "ClientLimits", "LimitRules", "LimitsError", "Price",
           "parse_limits"]

DEFAULT_CLIENT = "default"
"""The client a request is counted as when its token names none (with
C{AUTH_TOKEN}, or no token at all)."""

_LIMIT_NAMES = frozenset(key.name for key in LIMIT_KEYS)
_PRICE_NAMES = frozenset(key.name for key in PRICE_KEYS)
# The limits whose value may have decimals (money); the others are counts.
_AMOUNTS = frozenset({"budget_per_day", "budget_per_month"})


class LimitsError(ValueError):
    """The C{limits:} section, or a model's C{price}, cannot be used; the
    message names the key and the value at fault."""


@dataclass(frozen=True)
class ClientLimits:
    """What one client may use; None: no limit of that kind.

    @ivar models: the model ids it may ask for (None: any).
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    concurrent_requests: int | None = None
    tokens_per_day: int | None = None
    budget_per_day: float | None = None
    budget_per_month: float | None = None
    models: frozenset[str] | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit applies (else the client is not counted)."""
        return any(getattr(self, item.name) is not None for item in fields(self))

    def merged(self, own: Mapping[str, Any]) -> ClientLimits:
        """These limits, with the keys C{own} sets replaced."""
        return replace(self, **own)


@dataclass(frozen=True)
class Price:
    """What a million tokens of a model cost (in the budgets' currency)."""

    input: float
    output: float
    cached_input: float

    def cost(self, usage: Mapping[str, int]) -> float:
        """What an answer's tokens (L{genaiproxy.api.usage_of}'s counts) cost."""
        read = usage.get("input", 0)
        cached = min(usage.get("cached", 0), read)
        return ((read - cached) * self.input + cached * self.cached_input
                + usage.get("output", 0) * self.output) / 1_000_000


@dataclass(frozen=True)
class LimitRules:
    """The limits in service: each client's, and the models' prices.

    @ivar default: the limits of a client without an entry of its own.
    @ivar clients: the named clients' (theirs over the default's).
    @ivar prices: by model id.
    """

    default: ClientLimits = ClientLimits()
    clients: Mapping[str, ClientLimits] = field(default_factory=dict)
    prices: Mapping[str, Price] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any client is limited at all (else nothing is counted)."""
        return self.default.limited or any(limits.limited for limits in self.clients.values())

    def of(self, client: str) -> ClientLimits:
        """The limits of C{client} (a name, or L{DEFAULT_CLIENT})."""
        return self.clients.get(client, self.default)


NO_LIMITS = LimitRules()


def parse_limits(section: Any, entries: list[dict[str, Any]]) -> LimitRules:
    """The rules of a C{limits:} C{section} (None when absent) and of the
    C{price} of the model C{entries}.

    @raise LimitsError: a mistake in either.
    """
    prices = {entry["id"]: _price(entry["id"], entry["price"])
              for entry in entries if entry.get("price") is not None}
    if section is None:
        return LimitRules(prices=prices)
    if not isinstance(section, dict):
        raise LimitsError("limits: must be a mapping with default: and clients:")
    unknown = sorted(map(str, section.keys() - {"default", "clients"}))
    if unknown:
        raise LimitsError(f"limits: unknown key {unknown[0]!r} (expected default: and clients:)")
    model_ids = {entry["id"] for entry in entries}
    default = ClientLimits().merged(_own("limits.default", section.get("default"), model_ids))
    clients_section = section.get("clients") or {}
    if not isinstance(clients_section, dict):
        raise LimitsError("limits.clients: must be a mapping of client names to limits")
    clients = {str(name): default.merged(_own(f"limits.clients.{name}", own, model_ids))
               for name, own in clients_section.items()}
    return LimitRules(default, clients, prices)


def _own(where: str, entry: Any, model_ids: set[str]) -> dict[str, Any]:
    """The limits an entry sets, checked."""
    if entry is None:
        return {}
    if not isinstance(entry, dict):
        raise LimitsError(f"{where}: must be a mapping of limits")
    own: dict[str, Any] = {}
    for key, value in entry.items():
        if key not in _LIMIT_NAMES:
            raise LimitsError(f"{where}: unknown key {str(key)!r} (expected one of "
                              f"{', '.join(sorted(_LIMIT_NAMES))})")
        if key == "models":
            own[key] = _models(where, value, model_ids)
        else:
            own[key] = _number(f"{where}.{key}", value, whole=key not in _AMOUNTS)
    return own


def _models(where: str, value: Any, model_ids: set[str]) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise LimitsError(f"{where}.models: must be a list of model ids")
    for model_id in value:
        if model_id not in model_ids:
            raise LimitsError(f"{where}.models: {model_id!r} is not a model of this file")
    return frozenset(value)


def _number(where: str, value: Any, whole: bool) -> Any:
    """A count (whole) or an amount, not negative; YAML's C{true} is neither."""
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not 0 <= value < math.inf:
        wanted = "a whole number" if whole else "a number"
        raise LimitsError(f"{where}: must be {wanted}, 0 or more, not {str(value)[:40]!r}")
    return value


def _price(model_id: str, value: Any) -> Price:
    where = f"model {model_id!r}: price"
    if not isinstance(value, dict):
        raise LimitsError(f"{where} must be a mapping such as {{input: 1.25, output: 10.0}}")
    unknown = sorted(map(str, value.keys() - _PRICE_NAMES))
    if unknown:
        raise LimitsError(f"{where}: unknown key {unknown[0]!r}")
    for key in ("input", "output"):
        if key not in value:
            raise LimitsError(f"{where}: {key} is required (per million tokens)")
    numbers = {key: float(_number(f"{where}.{key}", item, whole=False))
               for key, item in value.items()}
    numbers.setdefault("cached_input", numbers["input"])
    return Price(**numbers)
