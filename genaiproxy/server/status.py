"""The status page's numbers (C{GET /status}): the proxy's metrics, summed up for people.

Every number on it is read back from the proxy's prometheus-client registry
(L{genaiproxy.observe.metrics.ProxyMetrics}), the same samples /metrics exports, so
the page and a Prometheus scrape never disagree.  L{summarize} turns the
samples into a L{Summary}; L{genaiproxy.server.status_page.render_html} draws
that as the page.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

__all__ = ["NO_CLIENT", "Row", "Summary", "quantile", "summarize"]

# What the per-client table shows for requests without a client token (open access).
NO_CLIENT = "(no token)"


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The C{q}-quantile of a histogram, estimated as Prometheus'
    C{histogram_quantile} does: find the bucket that holds the rank, and
    interpolate linearly between its lower and upper bounds (the first
    bucket starts at 0; a rank in the C{+Inf} bucket gives the highest finite
    bound).  C{buckets} are C{(upper bound, cumulative count)} pairs sorted
    by bound, the last one C{+Inf}.  None when nothing was observed.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q} is not between 0 and 1")
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        raise ValueError("a histogram needs finite buckets and a +Inf one")
    total = buckets[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next((i for i, (_, count) in enumerate(buckets[:-1]) if count >= rank), len(buckets) - 1)
    if index == len(buckets) - 1:
        return buckets[-2][0]
    end, count = buckets[index]
    if index == 0 and end <= 0:
        return end
    start = 0.0
    if index > 0:
        start, below = buckets[index - 1]
        count -= below
        rank -= below
    if count <= 0:  # q == 0 with empty leading buckets
        return start
    return start + (end - start) * (rank / count)


@dataclass(frozen=True)
class Row:
    """One model's (or one client's) line: totals since the proxy started."""

    name: str
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    p50: float | None
    p95: float | None


@dataclass(frozen=True)
class Summary:
    """What the status page shows, read from the registry at one moment."""

    version: str
    upstream: str
    started: float  # Unix time
    uptime: float  # seconds
    requests: int
    errors: int  # status >= 400, those of clients that left (499) included
    client_left: int  # status 499
    retries: int
    upstream_failures: int
    in_flight: int
    streams: int
    models: tuple[Row, ...]
    clients: tuple[Row, ...]


@dataclass
class _Tally:
    """A row being added up from samples of several label sets."""

    requests: float = 0
    errors: float = 0
    tokens: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    buckets: defaultdict[float, float] = field(default_factory=lambda: defaultdict(float))

    def row(self, name: str) -> Row:
        cumulative = sorted(self.buckets.items())
        has_buckets = len(cumulative) >= 2
        return Row(name, int(self.requests), int(self.errors), int(self.tokens["input"]),
                   int(self.tokens["output"]),
                   quantile(0.5, cumulative) if has_buckets else None,
                   quantile(0.95, cumulative) if has_buckets else None)


def _rows(tallies: dict[str, _Tally]) -> tuple[Row, ...]:
    """Rows with the most requests first (then by name, for a stable order)."""
    rows = [tally.row(name) for name, tally in tallies.items()]
    return tuple(sorted(rows, key=lambda row: (-row.requests, row.name)))


def summarize(registry: CollectorRegistry, upstream: str, now: float | None = None) -> Summary:
    """Sum up the samples of C{registry} (a L{ProxyMetrics} one): totals,
    and per model and per client the requests, tokens and latency
    percentiles, with the duration buckets added up over the other labels.
    C{now} (Unix time) is for the uptime; the current time by default."""
    now = time.time() if now is None else now
    models: defaultdict[str, _Tally] = defaultdict(_Tally)
    clients: defaultdict[str, _Tally] = defaultdict(_Tally)
    totals: defaultdict[str, float] = defaultdict(float)
    overall = _Tally()
    version = ""
    started_at = now  # until the registry says (it always does)

    def tallies(labels: dict[str, str]) -> tuple[_Tally, _Tally]:
        return models[labels["model"]], clients[labels["client"] or NO_CLIENT]

    for family in registry.collect():
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "genai_proxy_build_info":
                version = labels.get("version", "")
            elif name == "genai_proxy_start_time_seconds":
                started_at = value
            elif name == "genai_proxy_requests_total":
                failed = value if int(labels["status"]) >= 400 else 0
                for tally in (*tallies(labels), overall):
                    tally.requests += value
                    tally.errors += failed
                if labels["status"] == "499":
                    totals["left"] += value
            elif name == "genai_proxy_tokens_total":
                for tally in tallies(labels):
                    tally.tokens[labels["kind"]] += value
            elif name == "genai_proxy_request_duration_seconds_bucket":
                bound = float(labels["le"])
                for tally in tallies(labels):
                    tally.buckets[bound] += value
            elif name in ("genai_proxy_retries_total", "genai_proxy_upstream_failures_total",
                          "genai_proxy_requests_in_flight", "genai_proxy_streams_in_flight"):
                totals[name] += value
    return Summary(
        version=version, upstream=upstream, started=started_at,
        uptime=max(0.0, now - started_at),
        requests=int(overall.requests), errors=int(overall.errors),
        client_left=int(totals["left"]),
        retries=int(totals["genai_proxy_retries_total"]),
        upstream_failures=int(totals["genai_proxy_upstream_failures_total"]),
        in_flight=int(totals["genai_proxy_requests_in_flight"]),
        streams=int(totals["genai_proxy_streams_in_flight"]),
        models=_rows(models), clients=_rows(clients),
    )

