"""L{genaiproxy.observe.ProxyMetrics.child}: a metric family's child for a
set of labels is looked up once and kept, and counts through it show in
the exposition like those through C{labels()}."""

from __future__ import annotations

from genaiproxy.observe import ProxyMetrics


def test_child_is_kept_per_family_and_labels() -> None:
    """The same family and labels give the same child; other labels or
    another family give another."""
    metrics = ProxyMetrics("0", lambda: 0.0)
    first = metrics.child(metrics.upstream_headers, "chat")
    assert metrics.child(metrics.upstream_headers, "chat") is first
    assert metrics.child(metrics.upstream_headers, "responses") is not first
    assert metrics.child(metrics.first_byte, "chat") is not first


def test_counts_through_a_child_are_exposed() -> None:
    """What is counted through a kept child is in /metrics, under its labels,
    added to what C{labels()} counted."""
    metrics = ProxyMetrics("0", lambda: 0.0)
    metrics.tokens.labels("gpt-5", "ci", "input").inc(3)
    metrics.count_tokens("gpt-5", "ci", {"input": 4, "output": 5})
    text = metrics.exposition().decode()
    assert 'genai_proxy_tokens_total{client="ci",kind="input",model="gpt-5"} 7.0' in text
    assert 'genai_proxy_tokens_total{client="ci",kind="output",model="gpt-5"} 5.0' in text
