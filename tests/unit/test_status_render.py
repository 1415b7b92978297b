"""The status page's HTML (unit: L{genaiproxy.server.status_page}): a tree of
twisted.web.template tags, so every name a client chose is escaped by the
flattener and can never become markup."""

from __future__ import annotations

from dataclasses import replace
from html import escape
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st
from twisted.web.template import Tag, flattenString, tags

from genaiproxy.server.status import LimitRow, Row, Summary, UpstreamRow, UpstreamState
from genaiproxy.server.status_page import _STYLE, CHART_MODELS, SECTIONS, document, render_html

# Names drawn from HTML's metacharacters as often as from all of Unicode,
# lone surrogates aside: the metrics make every label valid UTF-8 text first
# (see test_testing's model name with a lone surrogate).
NAMES = st.text(st.sampled_from(list("<>&\"'=/;#! ab")) | st.characters(exclude_categories=["Cs"]))
HOSTILE = """<script>alert("1" + '2')</script> & <b title="x" onclick='y'>&amp;"""


def summary(model: str = "gpt-4.1", client: str = "alice", upstream: str = "http://127.0.0.1:1",
            version: str = "1.0", models: tuple[Row, ...] | None = None) -> Summary:
    """A summary with one model row, one client row and one upstream of those names."""
    model_rows = (Row(model, 3, 1, 120, 45, 0.25, 1.5),) if models is None else models
    upstreams = (UpstreamRow(UpstreamState("default", upstream, "", "auto: native", "bridged"),
                             3, 1, 0),)
    return Summary(version=version, upstreams=upstreams, started=1_700_000_000.0, uptime=3725,
                   requests=3, errors=1, client_left=1, retries=2, upstream_failures=0,
                   in_flight=0, streams=0, models=model_rows,
                   clients=(Row(client, 3, 1, 120, 45, 0.25, 1.5),))


class Parsed(HTMLParser):
    """A page as a browser's parser reads it: each element with its
    attributes, in order, and each element's own text (character references
    resolved, nothing stripped), in the order the elements close."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []
        self.texts: list[tuple[str, str]] = []
        self._open: list[tuple[str, list[str]]] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, tuple(attrs)))
        if tag != "meta":  # the only void element on the page
            self._open.append((tag, []))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, tuple(attrs)))

    def handle_endtag(self, tag: str) -> None:
        opened, text = self._open.pop()
        assert opened == tag
        self.texts.append((tag, "".join(text)))

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][1].append(data)

    def text_of(self, tag: str) -> list[str]:
        """The text of each C{tag} element, in the order they close."""
        return [text for closed, text in self.texts if closed == tag]


def test_client_names_are_escaped_text_never_markup():
    """Model and client names (and the upstream and version) full of HTML
    (a script, both quotes, ampersands, an attribute) come out as text: the
    parsed page shows each exactly as given, in the tables and in the chart's
    title, and the page has the very elements and attributes it has for
    plain names, so nothing broke out of a text or an attribute value."""
    page = render_html(summary(model=HOSTILE, client=HOSTILE + "!", upstream=f"http://h/?a=1&b={HOSTILE}",
                               version=HOSTILE))
    plain = render_html(summary())

    assert "<script" not in page.lower() and "<b " not in page
    assert escape(HOSTILE, quote=False) in page  # as the flattener writes text: & < > escaped
    shown = Parsed(page)
    cells = shown.text_of("td")
    assert HOSTILE in cells and HOSTILE + "!" in cells
    assert shown.text_of("code") == [f"http://h/?a=1&b={HOSTILE}"] * 2  # header, upstreams
    assert shown.text_of("h1") == [f"genai-proxy {HOSTILE}"]
    assert shown.text_of("title")[1] == f"{HOSTILE}: 120 input, 45 output tokens"
    assert shown.text_of("text")[2] == HOSTILE[:27] + "\u2026"
    assert shown.elements == Parsed(plain).elements


class TableRows(HTMLParser):
    """The rows of a table, each as the text of its cells (nested elements' included)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@given(NAMES)
def test_any_name_comes_back_as_the_text_of_its_cell(name: str):
    """Whatever a client calls its model, the page's parser reads back that
    name as the first cell of the model's row, and the page's elements and
    attributes are those of a page with a plain name."""
    plain = Parsed(render_html(summary()))
    shown = Parsed(render_html(summary(model=name)))
    assert shown.text_of("td")[plain.text_of("td").index("gpt-4.1")] == name
    assert shown.elements == plain.elements


def test_the_style_arrives_as_written():
    """The inline CSS is flattened like any text, yet comes out unchanged: it
    holds none of the characters the flattener escapes."""
    assert f"<style>{_STYLE}</style>" in render_html(summary())


def test_the_page_reloads_itself_and_runs_nothing():
    """An HTML5 document that refreshes itself every C{refresh} seconds (and
    says so), with no script, no event handler and no external reference."""
    page = render_html(summary(), refresh=7)
    assert page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    shown = Parsed(page)
    assert ("meta", (("content", "7"), ("http-equiv", "refresh"))) in shown.elements
    assert "This page reloads every 7 s." in shown.text_of("footer")[0]
    assert not [tag for tag, _ in shown.elements if tag in ("script", "link", "img", "iframe")]
    assert not [key for _, attrs in shown.elements for key, _ in attrs
                if key.startswith("on") or key in ("src", "href")]


def test_the_chart_draws_the_models_with_the_most_tokens():
    """One bar group per model with tokens, most tokens first, at most
    CHART_MODELS of them and a caption saying how many there were; a
    sentence instead of a chart when no tokens were counted."""
    rows = tuple(Row(f"m{i:02}", 1, 0, 10 * i, i, None, None) for i in range(CHART_MODELS + 3))
    shown = Parsed(render_html(summary(models=rows)))
    groups = shown.text_of("title")[1:]
    assert len(groups) == CHART_MODELS  # m00 has no tokens: 17 ranked, 15 drawn
    assert groups[0].startswith(f"m{CHART_MODELS + 2}:") and groups[-1].startswith("m03:")
    assert shown.text_of("figcaption") == [
        f"The {CHART_MODELS} models with the most tokens, of {CHART_MODELS + 2}."]

    empty = Parsed(render_html(summary(models=(Row("idle", 1, 0, 0, 0, None, None),))))
    assert "svg" not in [tag for tag, _ in empty.elements]
    assert "No tokens counted yet." in empty.text_of("p")


def test_every_upstream_has_a_row():
    """The upstreams table has one row per upstream, in the order given:
    its name, URL, forward proxy (or direct), how the Responses and Messages
    APIs reach it, and its requests, errors and failures, those above zero
    drawn in red."""
    rows = (
        UpstreamRow(UpstreamState("default", "https://gw.example/genai", "", "auto: bridged",
                                  "bridged"), 1200, 3, 0),
        UpstreamRow(UpstreamState("eu", "https://eu.example/openai", "http://proxy.corp:3128",
                                  "native", "native"), 7, 0, 2),
    )
    page = render_html(replace(summary(), upstreams=rows))
    table = page[page.index('<table id="upstreams">'):]
    table = table[:table.index("</table>")]
    head, *body = TableRows(table).rows
    assert head == ["Upstream", "URL", "Via", "Responses API", "Messages API", "Requests",
                    "Errors", "Failures"]
    assert body == [
        ["default", "https://gw.example/genai", "direct", "auto: bridged", "bridged",
         "1\u202f200", "3", "0"],
        ["eu", "https://eu.example/openai", "http://proxy.corp:3128", "native", "native",
         "7", "0", "2"]]
    assert '<td class="bad">3</td>' in table and '<td class="bad">2</td>' in table
    assert '<td class="bad">0</td>' not in table


def test_the_page_is_its_sections_in_order():
    """Below the header the page is the sections of SECTIONS, one function
    each, in that order; a function added to them is drawn in its place."""
    def extra(_: Summary) -> Tag:
        return tags.section(tags.h2("Extra"), id="extra-section")

    ids = [dict(attrs).get("id") for tag, attrs in Parsed(render_html(summary())).elements
           if tag in ("section", "dl")]
    assert ids == ["summary", "upstreams-section", "tokens-section", "models-section",
                   "clients-section", "limits-section"]
    flattened: list[bytes] = []
    flattenString(None, document(summary(), sections=(*SECTIONS, extra))).addCallback(
        flattened.append)
    assert Parsed(flattened[0].decode()).text_of("h2")[-1] == "Extra"


def test_each_limited_clients_use_is_shown_a_used_up_window_in_red():
    """The limits section: a line per client and limit, what is used of
    what (money to the cent), its share; a window at its limit is marked
    bad; without limits, a line that says so."""
    limited = replace(summary(), limits=(
        LimitRow("ci-runner", "requests_per_minute", 600, 600),
        LimitRow("alice", "budget_per_day", 3.456, 20)))
    parsed = Parsed(render_html(limited))
    cells = parsed.text_of("td")
    assert ["ci-runner", "requests_per_minute", "600", "600", "100%"] == cells[
        cells.index("ci-runner"):cells.index("ci-runner") + 5]
    assert ["alice", "budget_per_day", "3.46", "20.00", "17%"] == cells[
        cells.index("budget_per_day") - 1:cells.index("budget_per_day") + 4]
    bad = [dict(attrs).get("class") for tag, attrs in parsed.elements if tag == "td"]
    assert bad.count("bad") >= 1
    assert "No client is limited" in render_html(summary())
