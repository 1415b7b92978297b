"""deploy/grafana/genai-proxy.json: a Grafana dashboard of the proxy's /metrics.

It is checked as Grafana's "Import dashboard" takes it (the shape of the
JSON, the Prometheus data source asked for on import), against a real daemon
(every series and label its queries use is one /metrics exposes), with
promtool, Prometheus' own parser (every query is PromQL), and with a real
Prometheus scraping the daemon (every query answers with data). `run-tests`
installs both with Debian's prometheus package.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import ProxyProcess, free_port, run_proxy, wait_for

from genaiproxy.observe.metrics import ProxyMetrics

DASHBOARD_PATH = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "genai-proxy.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
GRID_COLUMNS = 24
TOKEN = "grafana-token-2718"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

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


@pytest.fixture(scope="module")
def daemon(mock_url: str) -> Iterator[ProxyProcess]:
    """A daemon of this module's own, after the traffic that makes each
    labelled series appear: a chat, a streamed chat, an embeddings request,
    and a request the mock fails (retried, then failed for good)."""
    chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    with run_proxy(mock_url, models="- id: gpt-4.1\n", AUTH_TOKEN=TOKEN,
                   RETRY_BACKOFF_SEC="0.01") as proxy:
        with httpx.Client(base_url=proxy.url, headers=AUTH, timeout=30, trust_env=False) as client:
            assert client.post("/v1/chat/completions", json=chat).status_code == 200
            assert client.post("/v1/chat/completions",
                               json={**chat, "stream": True}).status_code == 200
            assert client.post("/v1/embeddings", json={"model": "text-embedding-3-small",
                                                       "input": "hi"}).status_code == 200
            failed = client.post("/v1/chat/completions", json=chat,
                                 headers={"X-Mock-Drop-After": "0",
                                          "X-Request-ID": str(uuid.uuid4())})
            assert failed.status_code == 502
        yield proxy


@pytest.fixture(scope="module")
def exposed(daemon: ProxyProcess) -> dict[str, set[str]]:
    """Every sample name the daemon's /metrics shows, with the label names
    its samples carry."""
    scraped = httpx.get(daemon.url + "/metrics", headers=AUTH, trust_env=False)
    assert scraped.status_code == 200
    samples: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(scraped.text):
        for sample in family.samples:
            samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def test_the_file_is_an_importable_grafana_dashboard():
    """The file is a Grafana dashboard as "Import dashboard" takes it: a
    title, a uid, an int schemaVersion; a Prometheus data source input
    (DS_PROMETHEUS) that every panel, query and variable refers to; panels
    with unique ids, a type, a unit, a place in the 24-column grid that no
    other panel takes, and queries with an expression; and every $variable
    a query uses is defined (by a variable before it, for variables)."""
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
        assert panel["type"] in {"timeseries", "stat"}, name
        assert panel["title"], name
        assert panel["datasource"] == DATASOURCE, name
        assert panel["fieldConfig"]["defaults"]["unit"], f"{name}: no unit"
        position = panel["gridPos"]
        assert all(type(position[key]) is int for key in "xywh"), name
        assert position["x"] >= 0 and position["y"] >= 0, name
        assert position["w"] >= 1 and position["h"] >= 1, name
        assert position["x"] + position["w"] <= GRID_COLUMNS, name
        for column in range(position["x"], position["x"] + position["w"]):
            for row in range(position["y"], position["y"] + position["h"]):
                assert (column, row) not in taken, f"{name} overlaps panel {taken[column, row]}"
                taken[column, row] = panel["id"]
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


def test_every_query_uses_series_and_labels_the_daemon_exposes(exposed):
    """Every series a query or a variable names is a sample name of a real
    daemon's /metrics, each query names at least one, and every label it
    selects on, groups by or shows in its legend is one of that series's
    labels (or one Prometheus adds to a target: instance, job)."""
    dashboard = load_dashboard()
    found = {where: problems for where, expr in all_queries(dashboard)
             if (problems := problems_of(expr, exposed))}
    assert not found, json.dumps(found, indent=2)
    for where, target in panel_queries(dashboard):
        names = set(_IDENTIFIER.findall(_STRING.sub('""', target["expr"])))
        kept = grouping_labels(target["expr"])
        if not kept and not names & AGGREGATIONS:  # the series's own labels
            kept = set().union(*(exposed[name] for name in names if name in exposed))
            kept |= TARGET_LABELS
        shown = set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))
        assert shown <= kept, f"{where}: the legend shows {shown - kept}, which it does not keep"


def test_the_check_rejects_unknown_series_and_labels(exposed):
    """The check of the previous test finds a misspelt series, a series
    another name for which is exposed, a label the series lacks (the upstream
    histogram has no model), a bare identifier, and a query of no series."""
    good = ('histogram_quantile(0.95, sum by (le, model) (rate('
            'genai_proxy_request_duration_seconds_bucket{instance=~"$instance"}[5m])))')
    assert problems_of(good, exposed) == []
    bad = [
        "sum(rate(genai_proxy_request_total[5m]))",
        "sum(rate(genai_proxy_requests[5m]))",
        "histogram_quantile(0.95, sum by (le, model) "
        "(rate(genai_proxy_upstream_response_seconds_bucket[5m])))",
        'sum(rate(genai_proxy_tokens_total{status="200"}[5m]))',
        "sum(rate(genia_proxy_tokens_total[5m])) + sum(rate(genai_proxy_tokens_total[5m]))",
        "vector(1)",
    ]
    for expr in bad:
        assert problems_of(expr, exposed), expr


def test_every_series_of_the_proxy_has_a_panel():
    """Each series family the proxy defines (genaiproxy.observe.metrics) is shown by
    at least one panel, so a new series is not left off the dashboard."""
    families = {family.name for family in ProxyMetrics("0", lambda: 0.0).registry.collect()}
    queried = " ".join(target["expr"] for _, target in panel_queries(load_dashboard()))
    used = set(_IDENTIFIER.findall(_STRING.sub('""', queried)))
    missing = {family for family in families
               if not any(name == family or name.startswith(family + "_") for name in used)}
    assert not missing, f"no panel shows {sorted(missing)}"


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


def grafana_interpolated(expr: str) -> str:
    """C{expr} as Grafana sends it with every selection at All (.*)."""
    expr = re.sub(r"\$\{?__(rate_)?interval\}?", "1m", expr)
    expr = re.sub(r"\$\{?__range\}?", "1h", expr)
    return _VARIABLE.sub(".*", expr)


@pytest.fixture
def prometheus(daemon: ProxyProcess, tmp_path: Path) -> Iterator[httpx.Client]:
    """Debian's Prometheus (the package that has promtool), scraping the
    daemon every second; yields a client of its HTTP API."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: apt-get install prometheus (run-tests does)"
    (tmp_path / "token").write_text(TOKEN)
    target = daemon.url.removeprefix("http://")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "scrape_configs": [{"job_name": "genai-proxy",
                                  "static_configs": [{"targets": [target]}],
                                  "authorization": {"credentials_file": str(tmp_path / "token")}}]}
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
    address = f"127.0.0.1:{free_port()}"
    with open(tmp_path / "prometheus.log", "w") as log:
        process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address={address}"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://{address}", timeout=30, trust_env=False) as api:
            def ready() -> bool:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                try:
                    return api.get("/-/ready").status_code == 200
                except httpx.TransportError:
                    return False
            wait_for(ready, timeout=60)
            yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_query_returns_data_from_a_real_prometheus(daemon, prometheus):
    """A real Prometheus that scrapes the daemon answers every panel query
    with at least one series, and every variable with the values the
    traffic made (the instance scraped, the model, the client), once it has
    scraped a few times: the queries fit the data, not only the names."""
    dashboard = load_dashboard()

    def unanswered() -> list[str]:
        found = []
        for where, target in panel_queries(dashboard):
            answer = prometheus.get("/api/v1/query",
                                    params={"query": grafana_interpolated(target["expr"])})
            assert answer.status_code == 200, f"{where}: {answer.text}"
            if not answer.json()["data"]["result"]:
                found.append(where)
        return found

    def scraped_twice() -> bool:  # rate() needs two samples in its window
        answer = prometheus.get("/api/v1/query", params={
            "query": "count_over_time(genai_proxy_build_info[1m])"}).json()["data"]["result"]
        return bool(answer) and float(answer[0]["value"][1]) >= 3

    wait_for(scraped_twice, timeout=60)
    assert unanswered() == []
    values = {}
    for variable in dashboard["templating"]["list"]:
        query = _LABEL_VALUES.match(variable_query(variable))
        assert query, variable["name"]
        answer = prometheus.get(f"/api/v1/label/{query.group(2)}/values",
                                params={"match[]": grafana_interpolated(query.group(1))})
        values[variable["name"]] = set(answer.json()["data"])
    assert values["model"] == {"gpt-4.1", "text-embedding-3-small"}
    assert values["client"] == {"default"}
    assert values["instance"] == {daemon.url.removeprefix("http://")}
