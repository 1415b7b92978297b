"""Reading a daemon's GET /metrics, with the token of the daemons the
metrics tests start (tests/integration/test_metrics.py, test_usage_streams.py)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from support import ProxyProcess

TOKEN = "metrics-token-5150"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def scrape(proxy: ProxyProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels."""
    response = httpx.get(proxy.url + "/metrics", headers=AUTH, trust_env=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
