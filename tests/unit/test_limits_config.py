"""models.yaml's limits: section and the models' prices (unit:
L{genaiproxy.config.limits}, and L{genaiproxy.config.models.ModelCatalog}
keeping the last good file when they are wrong)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from genaiproxy.config import (
    DEFAULT_CLIENT,
    ClientLimits,
    LimitsError,
    ModelCatalog,
    Price,
    parse_limits,
    parse_models_document,
)

ENTRIES = [{"id": "gpt-5", "price": {"input": 1.25, "output": 10.0, "cached_input": 0.125}},
           {"id": "gpt-4.1-mini"}, {"id": "text-embedding-3-small"}]
SECTION = {
    "default": {"requests_per_minute": 120, "tokens_per_minute": 400000,
                "concurrent_requests": 16, "tokens_per_day": 5000000, "budget_per_day": 20,
                "budget_per_month": 200},
    "clients": {"ci-runner": {"requests_per_minute": 600,
                              "models": ["gpt-4.1-mini", "text-embedding-3-small"]}},
}


def test_a_client_entry_replaces_the_keys_it_names_and_inherits_the_others():
    """ci-runner: its own requests_per_minute and models, the default's
    other limits; a client without an entry: the default's."""
    rules = parse_limits(SECTION, ENTRIES)
    ci = rules.of("ci-runner")
    assert ci.requests_per_minute == 600 and ci.tokens_per_minute == 400000
    assert ci.budget_per_month == 200
    assert ci.models == frozenset({"gpt-4.1-mini", "text-embedding-3-small"})
    assert rules.of("alice") == rules.default == rules.of(DEFAULT_CLIENT)
    assert rules.default.models is None and rules.active


def test_no_limits_section_limits_nobody_but_prices_are_read():
    """A file without limits: behaves as before (no client is limited); the
    prices are kept for the cost metric."""
    rules = parse_limits(None, ENTRIES)
    assert not rules.active and not rules.of("alice").limited
    assert rules.prices == {"gpt-5": Price(1.25, 10.0, 0.125)}


def test_a_price_counts_cached_input_at_its_own_rate():
    """Per million tokens: the uncached input, the cached input, the output;
    cached_input left out costs as input."""
    price = Price(1.25, 10.0, 0.125)
    assert price.cost({"input": 1_000_000, "cached": 400_000, "output": 100_000}) == (
        pytest.approx(0.6 * 1.25 + 0.4 * 0.125 + 0.1 * 10.0))
    assert parse_limits(None, [{"id": "m", "price": {"input": 2, "output": 3}}]).prices["m"] == (
        Price(2.0, 3.0, 2.0))


@pytest.mark.parametrize("section, entries, named", [
    ({"default": {"requests_per_minute": -1}}, ENTRIES, "limits.default.requests_per_minute"),
    ({"default": {"requets_per_minute": 5}}, ENTRIES, "'requets_per_minute'"),
    ({"default": {"tokens_per_day": 1.5}}, ENTRIES, "limits.default.tokens_per_day"),
    ({"default": {"budget_per_day": True}}, ENTRIES, "budget_per_day"),
    ({"default": {"budget_per_day": float("nan")}}, ENTRIES, "budget_per_day"),
    ({"clients": {"ci": {"models": ["gpt-6"]}}}, ENTRIES, "'gpt-6' is not a model"),
    ({"clients": {"ci": {"models": "gpt-5"}}}, ENTRIES, "limits.clients.ci.models"),
    ({"clients": ["ci"]}, ENTRIES, "limits.clients"),
    ({"per_client": {}}, ENTRIES, "'per_client'"),
    (None, [{"id": "m", "price": {"input": "cheap", "output": 1}}], "price.input"),
    (None, [{"id": "m", "price": {"output": 1}}], "input is required"),
    (None, [{"id": "m", "price": 3}], "model 'm': price"),
])
def test_bad_limits_are_refused_with_the_key_named(section, entries, named):
    """A negative number, an unknown key, a model the file lacks, a price
    without a number: a load error naming what is wrong."""
    with pytest.raises(LimitsError) as raised:
        parse_limits(section, entries)
    assert named in str(raised.value)


def test_a_bad_reload_keeps_the_last_good_limits_and_logs_the_key(tmp_path):
    """models.yaml rewritten with a bad limit: an ERROR naming it, and the
    limits in service (and the models) stay the last good file's."""
    path = tmp_path / "models.yaml"
    path.write_text("limits:\n  default:\n    requests_per_minute: 10\nmodels:\n  - id: gpt-5\n")
    catalog = ModelCatalog(str(path))
    told: list[object] = []
    catalog.on_limits = told.append
    catalog.refresh()
    assert catalog.limits.default == ClientLimits(requests_per_minute=10) and len(told) == 1
    errors: list[dict[str, object]] = []

    def observe(event: dict[str, object]) -> None:
        if event.get("log_level") == LogLevel.error:
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        path.write_text("limits:\n  default:\n    requests_per_minute: -3\nmodels:\n  - id: x\n")
        os.utime(path, ns=(1, 1))
        catalog.refresh()
    finally:
        globalLogPublisher.removeObserver(observe)
    assert catalog.limits.default == ClientLimits(requests_per_minute=10) and len(told) == 1
    assert [model["id"] for model in catalog.models()] == ["gpt-5"]
    assert any("requests_per_minute" in str(event.get("error")) for event in errors)


def test_every_limits_example_of_the_docs_loads():
    """Each models.yaml example with limits: in the README and the docs is a
    file the proxy takes (a copied example must not be refused)."""
    root = Path(__file__).resolve().parents[2]
    found = 0
    for page in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]:
        for block in re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S):
            if "limits:" not in block:
                continue
            entries, _, section = parse_models_document(block, 0)
            assert parse_limits(section, entries).active, page
            found += 1
    assert found >= 3
