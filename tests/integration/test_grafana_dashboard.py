"""deploy/grafana/genai-proxy.json: a Grafana dashboard of the proxy's /metrics.

It is checked against a real daemon (every series and label its queries use
is one /metrics exposes), and with a real Prometheus scraping the daemon
(every query answers with data). `run-tests` installs Prometheus with
Debian's prometheus package.  The file alone (the shape Grafana's "Import
dashboard" takes, every series shown, every query PromQL) is checked in
test_grafana_dashboard_file.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import ProxyProcess, free_port, run_proxy, wait_for
from support.grafana_dashboard import (
    _IDENTIFIER,
    _LABEL_VALUES,
    _LEGEND_LABEL,
    _STRING,
    _VARIABLE,
    AGGREGATIONS,
    TARGET_LABELS,
    all_queries,
    grouping_labels,
    load_dashboard,
    panel_queries,
    problems_of,
    variable_query,
)

TOKEN = "grafana-token-2718"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# The client "default" (AUTH_TOKEN's) has a day's and a month's budget and a
# list of models; gpt-4.1 has a price (per million tokens, the mock counting
# words as tokens): "hi" and the mock's five-word reply cost 0.000042, a
# prompt of 1,000 words over 0.002, past the day's 0.001.
MODELS = """\
limits:
  default:
    budget_per_day: 0.001
    budget_per_month: 1
    models: [gpt-4.1, text-embedding-3-small]
models:
  - id: gpt-4.1
    price: {input: 2.0, output: 8.0}
  - id: text-embedding-3-small
  - id: gpt-5
"""


@pytest.fixture(scope="module")
def daemon(mock_url: str) -> Iterator[ProxyProcess]:
    """A daemon of this module's own, after the traffic that makes each
    labelled series appear: a chat, a streamed chat, an embeddings request,
    a request the mock fails (retried, then failed for good), a model
    outside the client's list (403), and a long chat that spends the day's
    budget, so that the next chat is refused (429)."""
    chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    with run_proxy(mock_url, models=MODELS, AUTH_TOKEN=TOKEN,
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
            assert client.post("/v1/chat/completions",
                               json={**chat, "model": "gpt-5"}).status_code == 403
            long_chat = {**chat, "messages": [{"role": "user", "content": "word " * 1000}]}
            assert client.post("/v1/chat/completions", json=long_chat).status_code == 200
            refused = client.post("/v1/chat/completions", json=chat)
            assert refused.status_code == 429
            assert refused.json()["error"]["code"] == "insufficient_quota"
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
    scraped a few times: the queries fit the data, not only the names.  The
    limits' series carry the refusals (403 models, 429 budget_per_day) and
    the budget windows (day, month) the traffic made."""
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
    assert values["model"] == {"gpt-4.1", "text-embedding-3-small", "gpt-5"}  # gpt-5: the 403
    assert values["client"] == {"default"}
    assert values["instance"] == {daemon.url.removeprefix("http://")}
    for label, series, made in (("limit", "genai_proxy_limited_total", {"models", "budget_per_day"}),
                                ("window", "genai_proxy_budget_remaining", {"day", "month"})):
        answer = prometheus.get(f"/api/v1/label/{label}/values", params={"match[]": series})
        assert set(answer.json()["data"]) == made, label
