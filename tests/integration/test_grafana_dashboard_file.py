"""deploy/grafana/genai-proxy.json, the file alone: checked as Grafana's
"Import dashboard" takes it (the shape of the JSON, the Prometheus data
source asked for on import), for a panel of every series the proxy defines
(those of the clients' limits in a row of their own), and with promtool,
Prometheus' own parser (every query is PromQL), which `run-tests` installs
with Debian's prometheus package.  Its queries against
a real daemon and a real Prometheus are test_grafana_dashboard.py's.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from support.grafana_dashboard import (
    _IDENTIFIER,
    _STRING,
    _VARIABLE,
    DATASOURCE,
    GRAFANA_VARIABLES,
    GRID_COLUMNS,
    load_dashboard,
    panel_queries,
    templating_selector,
    variable_query,
    variables_used,
)

from genaiproxy.observe.metrics import ProxyMetrics

# The series of the clients' limits (genaiproxy.limits), in a row of their own.
LIMITS_FAMILIES = frozenset({"genai_proxy_limited", "genai_proxy_cost",
                             "genai_proxy_budget_remaining",
                             "genai_proxy_limits_store_unavailable"})


def test_the_file_is_an_importable_grafana_dashboard():
    """The file is a Grafana dashboard as "Import dashboard" takes it: a
    title, a uid, an int schemaVersion; a Prometheus data source input
    (DS_PROMETHEUS) that every panel, query and variable refers to; panels
    with unique ids, a type, a unit, a place in the 24-column grid that no
    other panel takes, and queries with an expression; rows (open, the
    grid's width, one unit high, with a title and no query) that head the
    panels below them; and every $variable a query uses is defined (by a
    variable before it, for variables)."""
    dashboard = load_dashboard()
    assert dashboard["title"] == "genai-proxy"
    assert isinstance(dashboard["uid"], str) and re.fullmatch(r"[a-zA-Z0-9_-]{1,40}",
                                                              dashboard["uid"])
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard.get("id") is None  # Grafana assigns one on import
    inputs = {entry["name"]: entry for entry in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    assert dashboard["refresh"] and dashboard["time"]["from"].startswith("now-")

    variables = dashboard["templating"]["list"]
    defined: set[str] = set()
    for variable in variables:
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"] == DATASOURCE, variable["name"]
        assert variable["multi"] is True and variable["includeAll"] is True, variable["name"]
        assert variables_used(variable_query(variable)) <= defined, variable["name"]
        defined.add(variable["name"])
    assert {"instance", "model", "client"} <= defined
    assert variable_query(variables[0]) == "label_values(genai_proxy_build_info, instance)"

    panels = dashboard["panels"]
    assert isinstance(panels, list) and panels
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(number, int) for number in ids) and len(set(ids)) == len(ids)
    taken: dict[tuple[int, int], int] = {}
    for panel in panels:
        name = f"panel {panel['id']} {panel.get('title')!r}"
        assert panel["type"] in {"timeseries", "stat", "row"}, name
        assert panel["title"], name
        position = panel["gridPos"]
        assert all(type(position[key]) is int for key in "xywh"), name
        assert position["x"] >= 0 and position["y"] >= 0, name
        assert position["w"] >= 1 and position["h"] >= 1, name
        assert position["x"] + position["w"] <= GRID_COLUMNS, name
        for column in range(position["x"], position["x"] + position["w"]):
            for row in range(position["y"], position["y"] + position["h"]):
                assert (column, row) not in taken, f"{name} overlaps panel {taken[column, row]}"
                taken[column, row] = panel["id"]
        if panel["type"] == "row":
            # Open (its panels follow it in the list, not inside it).
            assert (position["x"], position["w"], position["h"]) == (0, GRID_COLUMNS, 1), name
            assert panel["collapsed"] is False and panel["panels"] == [], name
            assert "targets" not in panel, name
            continue
        assert panel["datasource"] == DATASOURCE, name
        assert panel["fieldConfig"]["defaults"]["unit"], f"{name}: no unit"
        targets = panel["targets"]
        assert targets, f"{name}: no query"
        ref_ids = [target["refId"] for target in targets]
        assert len(set(ref_ids)) == len(ref_ids), name
        for target in targets:
            assert isinstance(target["expr"], str) and target["expr"].strip(), name
            assert target["datasource"] == DATASOURCE, name
            unknown = {used for used in variables_used(target["expr"])
                       if used not in defined and used not in GRAFANA_VARIABLES}
            assert not unknown, f"{name}: undefined variables {unknown}"


def test_every_series_of_the_proxy_has_a_panel():
    """Each series family the proxy defines (genaiproxy.observe.metrics) is shown by
    at least one panel, so a new series is not left off the dashboard."""
    families = {family.name for family in ProxyMetrics("0", lambda: 0.0).registry.collect()}
    queried = " ".join(target["expr"] for _, target in panel_queries(load_dashboard()))
    used = set(_IDENTIFIER.findall(_STRING.sub('""', queried)))
    missing = {family for family in families
               if not any(name == family or name.startswith(family + "_") for name in used)}
    assert not missing, f"no panel shows {sorted(missing)}"


def test_the_limits_row_holds_the_limits_panels():
    """The row "Limits and budgets" holds (as Grafana places panels: below
    a row, up to the next one) exactly the panels that show the clients'
    limits (the series genaiproxy.limits reports), and they show each of
    those series."""
    row = ""
    shown: set[str] = set()
    for panel in sorted(load_dashboard()["panels"],
                        key=lambda panel: (panel["gridPos"]["y"], panel["gridPos"]["x"])):
        if panel["type"] == "row":
            row = panel["title"]
            continue
        queried = " ".join(target["expr"] for target in panel["targets"])
        used = set(_IDENTIFIER.findall(_STRING.sub('""', queried)))
        limits = {family for family in LIMITS_FAMILIES
                  if any(name == family or name.startswith(family + "_") for name in used)}
        assert bool(limits) == (row == "Limits and budgets"), f"{panel['title']!r} in {row!r}"
        shown |= limits
    assert shown == LIMITS_FAMILIES


def promtool_errors(queries: list[tuple[str, str]], tmp_path: Path) -> str:
    """promtool's complaints about C{queries} as recording rules (empty
    when they all parse), after Grafana-like interpolation of variables."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (run-tests does)"
    rules = []
    for number, (where, expr) in enumerate(queries):
        expr = re.sub(r"\$\{?__(rate_)?interval\}?|\$\{?__range\}?", "5m", expr)
        expr = _VARIABLE.sub("value", expr)
        record = re.sub(r"[^a-zA-Z0-9_]+", "_", where).strip("_")
        rules.append({"record": f"dashboard:{number}:{record}", "expr": expr})
    path = tmp_path / "dashboard.rules.json"  # JSON is YAML
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                             text=True, timeout=60)
    return "" if checked.returncode == 0 else checked.stdout + checked.stderr


def test_every_query_is_promql(tmp_path):
    """Every panel query and every variable's selector parses as PromQL in
    promtool (Prometheus' parser), with Grafana's variables filled in; and
    promtool does reject a malformed query."""
    assert "parse" in promtool_errors([("malformed", "sum(rate(genai_proxy_tokens_total[5m])")],
                                      tmp_path)
    queries = [(where, target["expr"]) for where, target in panel_queries(load_dashboard())]
    queries += [(f"variable {variable['name']}", templating_selector(variable_query(variable)))
                for variable in load_dashboard()["templating"]["list"]]
    errors = promtool_errors(queries, tmp_path)
    assert not errors, errors
