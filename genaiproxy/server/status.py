"""The status page (C{GET /status}): the proxy's metrics, summed up for people.

Every number on it is read back from the proxy's prometheus-client registry
(L{genaiproxy.observe.metrics.ProxyMetrics}), the same samples /metrics exports, so
the page and a Prometheus scrape never disagree.  L{summarize} turns the
samples into a L{Summary}; L{render_html} turns that into one self-contained HTML
page: no scripts, and no external CSS, fonts or images (it must work offline),
a bar chart in inline SVG, and a meta refresh.  Model names come from
clients, so every label value is HTML-escaped where it is written.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

from prometheus_client import CollectorRegistry

__all__ = ["CONTENT_SECURITY_POLICY", "HTML_CONTENT_TYPE", "Row", "Summary", "quantile", "render_html",
           "summarize"]

HTML_CONTENT_TYPE = b"text/html; charset=utf-8"
# The page needs nothing but its own inline <style>: a label that slipped
# past the escaping still could not run a script or fetch anything.
CONTENT_SECURITY_POLICY = b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
REFRESH_SEC = 10
# Bars in the chart; the tables list every model.
CHART_MODELS = 15
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


# Rendering.

def duration_text(seconds: float) -> str:
    """An uptime, to the two largest units: C{3 d 4 h}, C{2 h 5 min}, C{42 s}."""
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def latency_text(seconds: float | None) -> str:
    """A latency for a table cell: milliseconds under a second, else seconds."""
    if seconds is None:
        return "\u2013"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def _count(number: int) -> str:
    return f"{number:,}".replace(",", "\u202f")  # a thin space between thousands


_STYLE = """
:root { color-scheme: light dark; --fg: #1d2330; --muted: #5b6475; --bg: #f6f7f9;
  --card: #fff; --line: #dde1e8; --in: #3f7dd1; --out: #e48a2f; --bad: #c0392b; }
@media (prefers-color-scheme: dark) { :root { --fg: #e4e7ec; --muted: #9aa3b2; --bg: #14171c;
  --card: #1d2128; --line: #323844; --in: #5b9bef; --out: #f0a44f; --bad: #ef6f5e; } }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 40px; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
main { max-width: 1080px; margin: 0 auto; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; }
h1 { font-size: 22px; margin: 0; }
h2 { font-size: 16px; margin: 28px 0 10px; }
.meta { color: var(--muted); }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; overflow-wrap: anywhere; }
dl.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
  gap: 12px; margin: 20px 0 0; }
dl.cards div { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 14px; }
dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
dd { margin: 2px 0 0; font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
dd.bad { color: var(--bad); }
dd small { display: block; font-size: 12px; font-weight: 400; color: var(--muted); }
table { width: 100%; border-collapse: collapse; background: var(--card);
  border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { padding: 7px 12px; text-align: right; border-bottom: 1px solid var(--line);
  font-variant-numeric: tabular-nums; white-space: nowrap; }
th { font-size: 12px; color: var(--muted); font-weight: 600; background: var(--bg); }
th:first-child, td:first-child { text-align: left; white-space: normal; overflow-wrap: anywhere; }
tr:last-child td { border-bottom: none; }
td.bad { color: var(--bad); }
td.none { color: var(--muted); text-align: left; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; }
svg { display: block; width: 100%; max-width: 860px; height: auto; }
svg text { fill: var(--fg); font-size: 12px; }
svg .label { fill: var(--muted); }
.in { fill: var(--in); } .out { fill: var(--out); }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
"""


def _card(label: str, value: str, bad: bool = False, note: str = "") -> str:
    extra = f"<small>{escape(note)}</small>" if note else ""
    return (f'<div><dt>{escape(label)}</dt><dd{" class=bad" if bad else ""}>'
            f"{escape(value)}{extra}</dd></div>")


def _table(table_id: str, first: str, rows: Sequence[Row]) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in (
        first, "Requests", "Errors", "Input tokens", "Output tokens", "Latency p50", "Latency p95"))
    if not rows:
        body = '<tr><td class=none colspan=7>No requests yet.</td></tr>'
    else:
        body = "".join(
            f"<tr><td>{escape(row.name)}</td><td>{_count(row.requests)}</td>"
            f'<td{" class=bad" if row.errors else ""}>{_count(row.errors)}</td>'
            f"<td>{_count(row.input_tokens)}</td><td>{_count(row.output_tokens)}</td>"
            f"<td>{latency_text(row.p50)}</td><td>{latency_text(row.p95)}</td></tr>"
            for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _short(name: str, length: int = 28) -> str:
    return name if len(name) <= length else name[:length - 1] + "\u2026"


def token_chart(rows: Iterable[Row], limit: int = CHART_MODELS) -> str:
    """An inline SVG of input and output tokens per model, stacked bars,
    the models with the most tokens first; a sentence when there are none."""
    ranked = sorted((row for row in rows if row.input_tokens + row.output_tokens > 0),
                    key=lambda row: (-(row.input_tokens + row.output_tokens), row.name))
    if not ranked:
        return '<p class="meta">No tokens counted yet.</p>'
    shown = ranked[:limit]
    width, left, right, bar, gap, top = 860, 210, 110, 16, 8, 26
    scale = (width - left - right) / max(row.input_tokens + row.output_tokens for row in shown)
    parts = [
        f'<rect class="in" x="{left}" y="4" width="12" height="12"/>'
        f'<text x="{left + 18}" y="14">input</text>'
        f'<rect class="out" x="{left + 80}" y="4" width="12" height="12"/>'
        f'<text x="{left + 98}" y="14">output</text>'
    ]
    for number, row in enumerate(shown):
        y = top + number * (bar + gap)
        total = row.input_tokens + row.output_tokens
        w_in, w_out = row.input_tokens * scale, row.output_tokens * scale
        parts.append(
            f"<g><title>{escape(row.name)}: {row.input_tokens} input, "
            f"{row.output_tokens} output tokens</title>"
            f'<text class="label" x="{left - 8}" y="{y + 12}" text-anchor="end">'
            f"{escape(_short(row.name))}</text>"
            f'<rect class="in" x="{left}" y="{y}" width="{w_in:.1f}" height="{bar}"/>'
            f'<rect class="out" x="{left + w_in:.1f}" y="{y}" width="{w_out:.1f}" height="{bar}"/>'
            f'<text x="{left + w_in + w_out + 6:.1f}" y="{y + 12}">{_count(total)}</text></g>')
    height = top + len(shown) * (bar + gap)
    more = (f'<figcaption class="meta">The {limit} models with the most tokens, of '
            f"{len(ranked)}.</figcaption>" if len(ranked) > limit else "")
    return (f'<figure><svg viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="Tokens per model">{"".join(parts)}</svg>{more}</figure>')


def render_html(summary: Summary, refresh: int = REFRESH_SEC) -> str:
    """The whole status page: a self-contained HTML document that reloads
    itself every C{refresh} seconds."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(summary.started))
    cards = "".join([
        _card("Requests", _count(summary.requests)),
        _card("Errors", _count(summary.errors), bad=summary.errors > 0,
              note=f"{_count(summary.client_left)} client left" if summary.client_left else ""),
        _card("Retries", _count(summary.retries)),
        _card("Upstream failures", _count(summary.upstream_failures),
              bad=summary.upstream_failures > 0),
        _card("In flight", _count(summary.in_flight)),
        _card("Open streams", _count(summary.streams)),
    ])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>genai-proxy status</title>
<style>{_STYLE}</style></head>
<body><main>
<header><h1>genai-proxy {escape(summary.version)}</h1>
<span class="meta">forwarding to <code id="upstream">{escape(summary.upstream)}</code></span>
<span class="meta">up {duration_text(summary.uptime)} (since {started})</span></header>
<dl class="cards" id="summary">{cards}</dl>
<h2>Tokens per model</h2>
{token_chart(summary.models)}
<h2>Models</h2>
{_table("models", "Model", summary.models)}
<h2>Clients</h2>
{_table("clients", "Client", summary.clients)}
<footer>Totals since the proxy started. Errors are answers with status 400 or more,
499 when the client left first. Latencies run from a request to the end of its answer,
estimated from the histogram buckets as Prometheus does. The same numbers are at /metrics.
This page reloads every {refresh} s.</footer>
</main></body></html>
"""
