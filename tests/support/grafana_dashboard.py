"""deploy/grafana/genai-proxy.json read as the tests of
tests/integration/test_grafana_dashboard.py and
test_grafana_dashboard_file.py read it: its panels' queries and its
variables, and the check of a query against the series a daemon exposes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DASHBOARD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "genai-proxy.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
GRID_COLUMNS = 24

# Labels Prometheus adds to every series of a scrape target.
TARGET_LABELS = frozenset({"instance", "job"})
# Grafana's own variables, interpolated in queries like the dashboard's.
GRAFANA_VARIABLES = frozenset({"__interval", "__interval_ms", "__rate_interval", "__range",
                               "__range_s", "__range_ms"})
AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split())
PROMQL_WORDS = AGGREGATIONS | frozenset("""
    by without on ignoring group_left group_right bool and or unless offset atan2 inf nan
    abs absent absent_over_time ceil changes clamp clamp_max clamp_min day_of_month day_of_week
    day_of_year days_in_month delta deriv exp floor histogram_count histogram_sum
    histogram_fraction histogram_quantile holt_winters hour idelta increase irate label_join
    label_replace ln log2 log10 minute month predict_linear rate resets round scalar sgn sort
    sort_desc sqrt time timestamp vector year avg_over_time min_over_time max_over_time
    sum_over_time count_over_time quantile_over_time stddev_over_time stdvar_over_time
    last_over_time present_over_time
""".split())

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_IDENTIFIER = re.compile(r"(?<![a-zA-Z0-9_:.$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_VARIABLE = re.compile(r"\$(?:\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|([a-zA-Z_][a-zA-Z0-9_]*))")
_LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$", re.S)


def load_dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD_PATH.read_text())


def variable_query(variable: dict[str, Any]) -> str:
    """The query text of a templating variable (a string, or an object
    holding it as Grafana 10's Prometheus query editor saves it)."""
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    assert isinstance(query, str) and query.strip(), f"variable {variable.get('name')}: no query"
    return query


def templating_selector(query: str) -> str:
    """The series selector of a C{label_values(selector, label)} query."""
    match = _LABEL_VALUES.match(query)
    assert match, f"not a label_values(selector, label) query: {query!r}"
    return match.group(1)


def panel_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every target of every panel, with a name saying where it is."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel.get('id')} {panel.get('title')!r} {target.get('refId')}", target


def all_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and of every variable's
    selector; a variable's own label is checked against its selector too."""
    queries = [(where, target["expr"]) for where, target in panel_queries(dashboard)]
    for variable in dashboard["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable_query(variable)
            label = _LABEL_VALUES.match(query)
            assert label, f"variable {variable['name']}: not label_values(selector, label)"
            # As a grouping, so that the label is checked like a by (...) one.
            queries.append((f"variable {variable['name']}",
                            f"group by ({label.group(2)}) ({label.group(1)})"))
    return queries


def variables_used(text: str) -> set[str]:
    return {braced or bare for braced, bare in _VARIABLE.findall(text)}


def grouping_labels(expr: str) -> set[str]:
    """The labels of every by, without, on, ignoring and group_ clause."""
    text = _STRING.sub('""', expr)
    return {label.strip() for _, labels in _GROUPING.findall(text)
            for label in labels.split(",") if label.strip()}


def problems_of(expr: str, exposed: dict[str, set[str]]) -> list[str]:
    """What is wrong with C{expr} against the series a daemon exposed
    (sample name to its label names): an unknown series, a bare identifier
    that is neither a series nor PromQL, a label a series does not have."""
    problems: list[str] = []
    grouping = grouping_labels(expr)
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _STRING.sub('""', expr)))
    selected: list[tuple[str, list[str]]] = []
    for metric, body in _SELECTOR.findall(text):
        selected.append((metric, _MATCHER.findall(body)))
    text = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", text)
    metrics: set[str] = set()
    for name in _IDENTIFIER.findall(text):
        if name.startswith("genai_proxy_"):
            metrics.add(name)
        elif name not in PROMQL_WORDS:
            problems.append(f"{name!r} is neither a genai_proxy_ series nor PromQL")
    if not metrics:
        problems.append("references no genai_proxy_ series")
    for name in sorted(metrics - exposed.keys()):
        problems.append(f"{name} is not a series /metrics exposes")
    for metric, labels in selected:
        if not metric:
            problems.append("a selector without a series name")
            continue
        for label in labels:
            if metric in exposed and label not in exposed[metric] | TARGET_LABELS:
                problems.append(f"{metric} has no label {label!r} (it has {sorted(exposed[metric])})")
    for label in sorted(grouping):
        for metric in sorted(metrics & exposed.keys()):
            if label not in exposed[metric] | TARGET_LABELS:
                problems.append(f"grouped by {label!r}, which {metric} does not have "
                                f"(it has {sorted(exposed[metric])})")
    return problems
