"""The status page's numbers (C{GET /status}): the proxy's metrics, summed up for people.

Every number on it is read back from the proxy's prometheus-client registry
(L{genaiproxy.observe.metrics.ProxyMetrics}), the same samples /metrics exports, so
the page and a Prometheus scrape never disagree.  What it says of each upstream
besides its numbers (its URL, how the Responses and Messages APIs reach it) is
what the proxy's L{UpstreamSet} knows at that moment (L{upstream_states}).
L{summarize} turns both into a L{Summary};
L{genaiproxy.server.status_page.render_html} draws that as the page.  Nothing
secret goes in: URLs are shown without their credentials, keys never.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from genaiproxy.limits import Limiter
from genaiproxy.upstream import UpstreamSet

__all__ = ["NO_CLIENT", "Row", "Summary", "UpstreamRow", "UpstreamState", "quantile",
           "summarize", "upstream_states"]

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
class UpstreamState:
    """One upstream as the proxy knows it now.

    @ivar name: its name in models.yaml (C{default}: the one of the environment).
    @ivar url: its base URL, without credentials.
    @ivar via: the forward proxy it is reached through (without
        credentials); empty when direct.
    @ivar responses: how C{/v1/responses} reaches it: C{native}, C{bridged}
        (through its chat completions), or with RESPONSES_API auto,
        C{auto: native} until it refused C{/responses}, C{auto: bridged} after.
    @ivar messages: how C{/v1/messages} reaches it: C{native} or C{bridged}.
    """

    name: str
    url: str
    via: str
    responses: str
    messages: str


@dataclass(frozen=True)
class UpstreamRow:
    """One upstream's line: its state and its totals since the proxy started
    (the requests it answered last, and its failures: calls that failed for
    good and streams that broke)."""

    upstream: UpstreamState
    requests: int
    errors: int
    failures: int


def _how_reached(mode: str, bridged: bool) -> str:
    """An API's way to an upstream, from its setting (C{native}, C{chat} or
    C{auto}) and whether its requests go through chat completions now."""
    way = "bridged" if bridged else "native"
    return f"auto: {way}" if mode == "auto" else way


@dataclass(frozen=True)
class LimitRow:
    """One limit of one client: what it uses now of it, as this process
    counted (the minute windows as they stand, the day's and month's)."""

    client: str
    limit: str  # the key of models.yaml's limits:
    used: float
    of: float


def limit_rows(limiter: Limiter) -> tuple[LimitRow, ...]:
    """Every limited client's use of each of its limits, by client name."""
    rows = []
    for client in sorted(limiter.clients()):
        limits, used = limiter.use(client)
        rows += [LimitRow(client, key, value, getattr(limits, key))
                 for key, value in used.items()]
    return tuple(rows)


def upstream_states(upstreams: UpstreamSet) -> tuple[UpstreamState, ...]:
    """What C{upstreams} knows of each upstream in service, C{default} first."""
    return tuple(
        UpstreamState(name=name, url=client.config.upstream_display, via=client.via_proxy or "",
                      responses=_how_reached(client.config.responses_api,
                                             upstreams.bridges("responses", name)),
                      messages=_how_reached(client.config.messages_api,
                                            upstreams.bridges("messages", name)))
        for name, client in upstreams.items())


@dataclass(frozen=True)
class Summary:
    """What the status page shows, read from the registry at one moment."""

    version: str
    upstreams: tuple[UpstreamRow, ...]  # the default first
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
    # Each limited client's use of its limits (L{limit_rows}).
    limits: tuple[LimitRow, ...] = ()

    @property
    def upstream(self) -> str:
        """The default upstream's URL (without credentials)."""
        return self.upstreams[0].upstream.url if self.upstreams else ""


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


def summarize(registry: CollectorRegistry, upstreams: Sequence[UpstreamState],
              now: float | None = None) -> Summary:
    """Sum up the samples of C{registry} (a L{ProxyMetrics} one): totals,
    and per model and per client the requests, tokens and latency
    percentiles, with the duration buckets added up over the other labels;
    per upstream of C{upstreams} (L{upstream_states}), its requests, errors
    and failures.  C{now} (Unix time) is for the uptime; the current time by
    default."""
    now = time.time() if now is None else now
    models: defaultdict[str, _Tally] = defaultdict(_Tally)
    clients: defaultdict[str, _Tally] = defaultdict(_Tally)
    by_upstream: defaultdict[str, _Tally] = defaultdict(_Tally)
    upstream_failures: defaultdict[str, float] = defaultdict(float)
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
                for tally in (*tallies(labels), by_upstream[labels["upstream"]], overall):
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
                if name == "genai_proxy_upstream_failures_total":
                    upstream_failures[labels["upstream"]] += value
    upstream_rows = tuple(
        UpstreamRow(state, int(by_upstream[state.name].requests),
                    int(by_upstream[state.name].errors), int(upstream_failures[state.name]))
        for state in upstreams)
    return Summary(
        version=version, upstreams=upstream_rows, started=started_at,
        uptime=max(0.0, now - started_at),
        requests=int(overall.requests), errors=int(overall.errors),
        client_left=int(totals["left"]),
        retries=int(totals["genai_proxy_retries_total"]),
        upstream_failures=int(totals["genai_proxy_upstream_failures_total"]),
        in_flight=int(totals["genai_proxy_requests_in_flight"]),
        streams=int(totals["genai_proxy_streams_in_flight"]),
        models=_rows(models), clients=_rows(clients),
    )

