"""The status page's HTML: a L{Summary} drawn as one self-contained page.

The page is a tree of L{twisted.web.template} tags, flattened to bytes, so
every string in it (model and client names come from clients, the upstreams
from the configuration) is escaped by the flattener, in text and in attribute
values alike; nothing here writes markup by hand.  Below its header the page
is a list of sections, each drawn by one function of L{SECTIONS}: a new part
of the page is one more function there.  The page has no scripts
and loads nothing (it must work offline): its CSS is inline, its bar chart is
inline SVG, and a meta refresh reloads it; L{CONTENT_SECURITY_POLICY} is the
header that holds it to that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from twisted.python.failure import Failure
from twisted.web.template import Flattenable, Tag, flattenString, tags

from genaiproxy.server.status import LimitRow, Row, Summary, UpstreamRow

__all__ = ["CONTENT_SECURITY_POLICY", "HTML_CONTENT_TYPE", "SECTIONS", "render_html"]

HTML_CONTENT_TYPE = b"text/html; charset=utf-8"
# The page needs nothing but its own inline <style>: a label that slipped
# past the escaping still could not run a script or fetch anything.
CONTENT_SECURITY_POLICY = b"default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"
REFRESH_SEC = 10
# Bars in the chart; the tables list every model.
CHART_MODELS = 15


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


# The flattener escapes the text of every tag, <style>'s too, where HTML takes
# text as it is: so no "&", "<" or ">" in here (a unit test checks it arrives unchanged).
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
th.text, td.text { text-align: left; white-space: normal; }
figure { margin: 0; background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 12px 16px; }
svg { display: block; width: 100%; max-width: 860px; height: auto; }
svg text { fill: var(--fg); font-size: 12px; }
svg .label { fill: var(--muted); }
.in { fill: var(--in); } .out { fill: var(--out); }
footer { margin-top: 28px; color: var(--muted); font-size: 12px; }
"""

_FOOTER = """Totals since the proxy started. Errors are answers with status 400 or more,
499 when the client left first. Latencies run from a request to the end of its answer,
estimated from the histogram buckets as Prometheus does. An upstream's requests are those
it answered last (after any fallbacks); its failures are its calls that failed and its
streams that broke. The same numbers are at /metrics. This page reloads every {refresh} s."""


def _bad(tag: Tag, bad: bool) -> Tag:
    """C{tag}, marked C{class="bad"} (drawn in red) when C{bad}."""
    return tag(class_="bad") if bad else tag


def _card(label: str, value: str, bad: bool = False, note: str = "") -> Tag:
    return tags.div(tags.dt(label), _bad(tags.dd(value, tags.small(note) if note else ""), bad))


def _table(table_id: str, first: str, rows: Sequence[Row]) -> Tag:
    head = tags.tr(*(tags.th(name) for name in (
        first, "Requests", "Errors", "Input tokens", "Output tokens", "Latency p50", "Latency p95")))
    body = [tags.tr(tags.td(row.name), tags.td(_count(row.requests)),
                    _bad(tags.td(_count(row.errors)), row.errors > 0),
                    tags.td(_count(row.input_tokens)), tags.td(_count(row.output_tokens)),
                    tags.td(latency_text(row.p50)), tags.td(latency_text(row.p95)))
            for row in rows]
    if not body:
        body = [tags.tr(tags.td("No requests yet.", class_="none", colspan="7"))]
    return tags.table(tags.thead(head), tags.tbody(*body), id=table_id)


def _short(name: str, length: int = 28) -> str:
    return name if len(name) <= length else name[:length - 1] + "\u2026"


def _svg(name: str, *children: Flattenable, **attributes: float | str) -> Tag:
    """An SVG element (L{tags} makes only HTML's); numbers among its
    attributes are written whole when they are ints, else to one decimal."""
    written = {key: value if isinstance(value, str) else str(value) if isinstance(value, int)
               else f"{value:.1f}" for key, value in attributes.items()}
    return Tag(name)(*children, **written)


def token_chart(rows: Iterable[Row], limit: int = CHART_MODELS) -> Tag:
    """An inline SVG of input and output tokens per model, stacked bars,
    the models with the most tokens first; a sentence when there are none."""
    ranked = sorted((row for row in rows if row.input_tokens + row.output_tokens > 0),
                    key=lambda row: (-(row.input_tokens + row.output_tokens), row.name))
    if not ranked:
        return tags.p("No tokens counted yet.", class_="meta")
    shown = ranked[:limit]
    width, left, right, bar, gap, top = 860, 210, 110, 16, 8, 26
    scale = (width - left - right) / max(row.input_tokens + row.output_tokens for row in shown)
    parts = [
        _svg("rect", class_="in", x=left, y=4, width=12, height=12),
        _svg("text", "input", x=left + 18, y=14),
        _svg("rect", class_="out", x=left + 80, y=4, width=12, height=12),
        _svg("text", "output", x=left + 98, y=14),
    ]
    for number, row in enumerate(shown):
        y = top + number * (bar + gap)
        total = row.input_tokens + row.output_tokens
        w_in, w_out = row.input_tokens * scale, row.output_tokens * scale
        parts.append(_svg(
            "g",
            tags.title(f"{row.name}: {row.input_tokens} input, {row.output_tokens} output tokens"),
            _svg("text", _short(row.name), class_="label", x=left - 8, y=y + 12,
                 **{"text-anchor": "end"}),
            _svg("rect", class_="in", x=left, y=y, width=w_in, height=bar),
            _svg("rect", class_="out", x=left + w_in, y=y, width=w_out, height=bar),
            _svg("text", _count(total), x=left + w_in + w_out + 6, y=y + 12)))
    height = top + len(shown) * (bar + gap)
    more = (tags.figcaption(f"The {limit} models with the most tokens, of {len(ranked)}.",
                            class_="meta") if len(ranked) > limit else "")
    chart = _svg("svg", *parts, viewBox=f"0 0 {width} {height}", role="img",
                 **{"aria-label": "Tokens per model"})
    return tags.figure(chart, more)


def _upstream_line(row: UpstreamRow) -> Tag:
    upstream = row.upstream
    return tags.tr(
        tags.td(upstream.name), tags.td(tags.code(upstream.url), class_="text"),
        tags.td(tags.code(upstream.via) if upstream.via else "direct", class_="text"),
        tags.td(upstream.responses, class_="text"), tags.td(upstream.messages, class_="text"),
        tags.td(_count(row.requests)), _bad(tags.td(_count(row.errors)), row.errors > 0),
        _bad(tags.td(_count(row.failures)), row.failures > 0))


def _section(section_id: str, title: str, *content: Flattenable) -> Tag:
    return tags.section(tags.h2(title), *content, id=f"{section_id}-section")


def totals_section(summary: Summary) -> Tag:
    """The cards of the totals: requests, errors, retries, failures, open work."""
    cards = [
        _card("Requests", _count(summary.requests)),
        _card("Errors", _count(summary.errors), bad=summary.errors > 0,
              note=f"{_count(summary.client_left)} client left" if summary.client_left else ""),
        _card("Retries", _count(summary.retries)),
        _card("Upstream failures", _count(summary.upstream_failures),
              bad=summary.upstream_failures > 0),
        _card("In flight", _count(summary.in_flight)),
        _card("Open streams", _count(summary.streams)),
    ]
    return tags.dl(*cards, class_="cards", id="summary")


def upstreams_section(summary: Summary) -> Tag:
    """Every upstream in service: where it is, the forward proxy it is
    reached through, how the Responses and Messages APIs reach it, and its
    requests, errors and failures."""
    head = tags.tr(tags.th("Upstream"),
                   *(tags.th(name, class_="text")
                     for name in ("URL", "Via", "Responses API", "Messages API")),
                   *(tags.th(name) for name in ("Requests", "Errors", "Failures")))
    table = tags.table(tags.thead(head), tags.tbody(*map(_upstream_line, summary.upstreams)),
                       id="upstreams")
    return _section("upstreams", "Upstreams", table)


def tokens_section(summary: Summary) -> Tag:
    """The chart of input and output tokens per model."""
    return _section("tokens", "Tokens per model", token_chart(summary.models))


def models_section(summary: Summary) -> Tag:
    """The table of models."""
    return _section("models", "Models", _table("models", "Model", summary.models))


def clients_section(summary: Summary) -> Tag:
    """The table of clients."""
    return _section("clients", "Clients", _table("clients", "Client", summary.clients))


def _amount(limit: str, value: float) -> str:
    """A limit's value as people read it: money to the cent, counts whole."""
    return f"{value:,.2f}" if limit.startswith("budget") else _count(int(value))


def _limit_line(row: LimitRow) -> Tag:
    share = row.used / row.of if row.of else 1.0
    return tags.tr(tags.td(row.client), tags.td(row.limit, class_="text"),
                   tags.td(_amount(row.limit, row.used)), tags.td(_amount(row.limit, row.of)),
                   _bad(tags.td(f"{min(share, 9.99):.0%}"), share >= 1))


def limits_section(summary: Summary) -> Tag:
    """Each limited client's use of its limits (models.yaml's limits:), as
    this process counted it; a used-up window in red."""
    head = tags.tr(tags.th("Client"), tags.th("Limit", class_="text"),
                   *(tags.th(name) for name in ("Used", "Of", "Share")))
    body = [_limit_line(row) for row in summary.limits] or [
        tags.tr(tags.td("No client is limited (models.yaml has no limits:).", class_="none",
                        colspan="5"))]
    return _section("limits", "Limits",
                    tags.table(tags.thead(head), tags.tbody(*body), id="limits"))


# The page below its header, in order: one function a section.
SECTIONS: tuple[Callable[[Summary], Tag], ...] = (
    totals_section, upstreams_section, tokens_section, models_section, clients_section,
    limits_section)


def document(summary: Summary, refresh: int = REFRESH_SEC,
             sections: Sequence[Callable[[Summary], Tag]] = SECTIONS) -> Tag:
    """The whole status page as a tree of tags: a self-contained HTML
    document of C{sections} that reloads itself every C{refresh} seconds."""
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(summary.started))
    head = tags.head(
        tags.meta(charset="utf-8"),
        tags.meta(content=str(refresh), **{"http-equiv": "refresh"}),
        tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
        tags.title("genai-proxy status"),
        tags.style(_STYLE))
    body = tags.body(Tag("main")(  # an HTML5 name that tags does not know
        tags.header(
            tags.h1(f"genai-proxy {summary.version}"),
            tags.span("forwarding to ", tags.code(summary.upstream, id="upstream"), class_="meta"),
            tags.span(f"up {duration_text(summary.uptime)} (since {started})", class_="meta")),
        *(section(summary) for section in sections),
        tags.footer(_FOOTER.format(refresh=refresh))))
    return tags.html(head, body, lang="en")


def render_html(summary: Summary, refresh: int = REFRESH_SEC) -> str:
    """L{document}, flattened: the HTML the status resource sends."""
    flattened: list[bytes | Failure] = []
    flattenString(None, document(summary, refresh)).addBoth(flattened.append)
    # The tree holds only tags and strings, no Deferred, so flattenString has
    # fired before it returned: the page is rendered synchronously.
    (result,) = flattened
    if isinstance(result, Failure):
        result.raiseException()
    return "<!DOCTYPE html>\n" + result.decode("utf-8")
