"""GET /status: the metrics summed up as a small self-contained HTML page."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import uuid
from collections.abc import Iterator
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import BASE_ENV, ProxyProcess, free_port, run_mock_upstream, run_proxy

from genaiproxy import __version__
from genaiproxy.observe.metrics import ProxyMetrics
from genaiproxy.server.status import NO_CLIENT, Row, UpstreamRow, UpstreamState, quantile, summarize

TOKEN = "status-token-4711"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INF = float("inf")
CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path("/tmp/genai-proxy-status.png")


# The quantile estimate, as Prometheus' histogram_quantile makes it.

def test_quantile_interpolates_within_the_bucket_holding_the_rank():
    """The rank q*total falls in the first bucket whose cumulative count
    reaches it; the estimate is linear between that bucket's bounds."""
    buckets = [(0.25, 0), (0.5, 4), (1.0, 8), (2.0, 9), (INF, 10)]
    assert quantile(0.5, buckets) == 0.5 + 0.5 * (1 / 4)  # rank 5: 1 of the 4 in (0.5, 1]
    assert quantile(0.2, buckets) == 0.25 + 0.25 * (2 / 4)  # rank 2: 2 of the 4 in (0.25, 0.5]
    assert quantile(0.9, buckets) == 2.0  # rank 9: exactly the top of (1, 2]


def test_quantile_starts_the_first_bucket_at_zero():
    """Observations in the first bucket are spread from 0 to its bound."""
    assert quantile(0.5, [(1.0, 4), (2.0, 4), (INF, 4)]) == 0.5
    assert quantile(0.25, [(0.01, 8), (INF, 8)]) == 0.0025


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    """A rank above every finite bucket gives the highest finite bound, and
    an empty histogram has no quantile."""
    assert quantile(0.95, [(0.5, 2), (1.0, 8), (INF, 10)]) == 1.0
    assert quantile(0.5, [(0.5, 0), (1.0, 0), (INF, 0)]) is None
    with pytest.raises(ValueError):
        quantile(1.5, [(1.0, 1), (INF, 1)])


def test_summary_of_a_real_registry():
    """The summary adds up a ProxyMetrics registry's samples: totals, errors
    (status >= 400, 499 included), retries, failures, open streams, and per
    model and per client the requests, tokens and latency percentiles, with
    the duration buckets added up over the other labels."""
    metrics = ProxyMetrics("9.9.9", lambda: 2)
    observations = [  # route, model, status, client, seconds
        ("chat", "gpt-4.1", "200", "alice", 0.3),
        ("chat", "gpt-4.1", "200", "alice", 0.3),
        ("responses", "gpt-4.1", "200", "alice", 0.7),
        ("chat", "gpt-4.1", "500", "bob", 3.0),
        ("chat", "gpt-4.1", "499", "bob", 6.0),
        ("embeddings", "emb", "200", "alice", 0.04),
    ]
    for route, model, status, client, seconds in observations:
        metrics.requests.labels(route, model, status, client, "default").inc()
        metrics.duration.labels(route, model, client).observe(seconds)
    metrics.count_tokens("gpt-4.1", "alice", {"input": 10, "output": 4, "cached": 2})
    metrics.count_tokens("gpt-4.1", "bob", {"input": 5, "output": 1})
    metrics.count_tokens("emb", "alice", {"input": 7})
    metrics.retries.labels("connection_lost").inc()
    metrics.retries.labels("status_503").inc(2)
    metrics.failures.labels("timeout", "default").inc()
    metrics.streams.inc()
    started = metrics.registry.get_sample_value("genai_proxy_start_time_seconds")
    assert started is not None

    gateway = UpstreamState("default", "https://gateway.example/openai", "", "native", "bridged")
    summary = summarize(metrics.registry, [gateway], now=started + 125)

    assert (summary.version, summary.upstream, summary.started, summary.uptime) == (
        "9.9.9", "https://gateway.example/openai", started, 125)
    assert summary.upstreams == (UpstreamRow(gateway, 6, 2, 1),)
    assert (summary.requests, summary.errors, summary.client_left) == (6, 2, 1)
    assert (summary.retries, summary.upstream_failures, summary.in_flight, summary.streams) == (
        3, 1, 2, 1)
    # gpt-4.1: 0.3, 0.3, 0.7, 3.0, 6.0 over both clients and routes.
    # p50: rank 2.5 in (0.5, 1] (cumulative 2 -> 3); p95: rank 4.75 in (5, 10] (4 -> 5).
    gpt, emb = summary.models
    assert gpt == Row("gpt-4.1", 5, 2, 15, 5, pytest.approx(0.75), pytest.approx(8.75))
    assert emb == Row("emb", 1, 0, 7, 0, pytest.approx(0.025 + 0.025 * 0.5),
                      pytest.approx(0.025 + 0.025 * 0.95))
    # alice: 0.04, 0.3, 0.3, 0.7. p50: rank 2 in (0.25, 0.5] (1 -> 3);
    # p95: rank 3.8 in (0.5, 1] (3 -> 4).  bob: 3.0, 6.0.
    alice, bob = summary.clients
    assert alice == Row("alice", 4, 0, 17, 4, pytest.approx(0.375), pytest.approx(0.9))
    assert bob == Row("bob", 2, 2, 5, 1, pytest.approx(5.0), pytest.approx(9.5))


def test_requests_without_a_client_token_are_one_named_row():
    """With no client tokens set the client label is empty: the per-client
    table names that row instead of leaving it blank."""
    metrics = ProxyMetrics("1", lambda: 0)
    metrics.requests.labels("chat", "gpt-4.1", "200", "", "default").inc()
    summary = summarize(metrics.registry, [])
    assert [(row.name, row.requests) for row in summary.clients] == [(NO_CLIENT, 1)]


# The page as served.

class StatusPageText(HTMLParser):
    """What a status page shows: its tables (by id, as rows of cell text),
    its summary cards (label -> number) and how many SVG drawings it has."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self.cards: dict[str, str] = {}
        self.svgs = 0
        self._table = ""
        self._text: list[str] | None = None
        self._row: list[str] = []
        self._label = ""
        self._in_note = False
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, Any]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th", "dt", "dd"):
            self._text = []
        elif tag == "small":
            self._in_note = True
        elif tag == "svg":
            self.svgs += 1

    def handle_endtag(self, tag: str) -> None:
        text = "".join(self._text or []).strip().replace("\u202f", "")
        if tag in ("td", "th"):
            self._row.append(text)
        elif tag == "tr":
            self.tables[self._table].append(self._row)
        elif tag == "dt":
            self._label = text
        elif tag == "dd":
            self.cards[self._label] = text
        elif tag == "small":
            self._in_note = False
            return
        if tag in ("td", "th", "dt", "dd"):
            self._text = None

    def handle_data(self, data: str) -> None:
        if self._text is not None and not self._in_note:
            self._text.append(data)

    def rows(self, table: str) -> dict[str, list[int]]:
        """A table's rows by their first cell: requests, errors, input and
        output tokens (the latency cells are left out: they are timings)."""
        head, *body = self.tables[table]
        assert head[:5] == [head[0], "Requests", "Errors", "Input tokens", "Output tokens"]
        return {row[0]: [int(cell) for cell in row[1:5]] for row in body}


@pytest.fixture
def guarded(mock_url: str) -> Iterator[ProxyProcess]:
    """A daemon of its own with a token, so that its counts are this test's alone."""
    with run_proxy(mock_url, AUTH_TOKEN=TOKEN, RETRY_BACKOFF_SEC="0.01") as running:
        yield running


def send(proxy: ProxyProcess, path: str, body: dict[str, Any], headers: dict[str, str],
         expected: dict[str, list[int]]) -> None:
    """Send one request; add it to C{expected} (model -> requests, errors,
    input and output tokens), with the tokens the upstream's answer reported."""
    answer = httpx.post(proxy.url + path, json=body, timeout=30, trust_env=False,
                        headers={"X-Request-ID": str(uuid.uuid4()), **headers})
    row = expected.setdefault(body["model"], [0, 0, 0, 0])
    row[0] += 1
    if answer.status_code >= 400:
        row[1] += 1
        return
    usage = answer.json()["usage"]
    row[2] += usage.get("prompt_tokens", usage.get("input_tokens", 0))
    row[3] += usage.get("completion_tokens", usage.get("output_tokens", 0))


def chat(model: str, content: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}]}


SCRIPT_MODEL = "<script>alert('status')</script>"


def test_status_page_shows_the_counts_behind_the_token(guarded):
    """/status needs the token like /metrics; it is an HTML page that must
    not be cached, whose tables show per model and per client the exact
    requests, errors and tokens counted, with names escaped, a bar chart in
    inline SVG, and nothing loaded from anywhere else.  HEAD answers like GET."""
    assert httpx.get(guarded.url + "/status", trust_env=False).status_code == 401
    expected: dict[str, list[int]] = {}
    send(guarded, "/v1/chat/completions", chat("gpt-4.1", "one two three"), AUTH, expected)
    send(guarded, "/v1/chat/completions", chat("gpt-4.1", "four five"), AUTH, expected)
    send(guarded, "/v1/chat/completions", chat("gpt-4.1", "six"),
         {**AUTH, "X-Mock-Fail-First": "1"}, expected)
    send(guarded, "/v1/chat/completions", chat("gpt-4.1", "seven"),
         {**AUTH, "X-Mock-Status": "404"}, expected)
    send(guarded, "/v1/embeddings", {"model": "text-embedding-3-small", "input": "eight nine"},
         AUTH, expected)
    send(guarded, "/v1/chat/completions", chat(SCRIPT_MODEL, "ten eleven twelve"), AUTH, expected)
    assert expected["gpt-4.1"][1] == 1 and expected["text-embedding-3-small"][2] > 0

    response = httpx.get(guarded.url + "/status", headers=AUTH, trust_env=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    page = response.text
    shown = StatusPageText(page)
    assert shown.rows("models") == expected
    assert shown.rows("clients") == {"default": [sum(row[i] for row in expected.values())
                                                 for i in range(4)]}
    assert {label: shown.cards[label] for label in ("Requests", "Errors", "Retries", "Open streams")
            } == {"Requests": "6", "Errors": "1", "Retries": "1", "Open streams": "0"}
    assert __version__ in page

    # The client-given model name is text, not markup.
    assert "<script" not in page.lower()
    # Escaped as twisted.web.template writes text: & < > (quotes need none outside attributes).
    assert escape(SCRIPT_MODEL, quote=False) in page
    # A chart drawn inline, and no reference to anything outside the page.
    assert shown.svgs == 1 and "<svg" in page
    assert not re.search(r"\b(src|href|srcset|action|poster|xlink:href)\s*=", page, re.I)
    assert not re.search(r"<(link|img|iframe|object|embed|image|use|audio|video)\b", page, re.I)
    assert "url(" not in page and "@import" not in page
    upstream = httpx.get(guarded.url + "/", headers=AUTH, trust_env=False).json()["upstream"]
    assert "http://" not in page.replace(escape(upstream), "").replace(upstream, "")
    assert "https://" not in page

    head = httpx.head(guarded.url + "/status", headers=AUTH, trust_env=False)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "text/html; charset=utf-8"
    assert int(head.headers["content-length"]) > 0


EU_KEY = "sk-eu-status-page-5d02b7"
SEVERAL_UPSTREAMS = """\
upstreams:
  eu:                     # a gateway without the Responses API
    base_url: {eu}
    subscription_name: Api-Key
    api_key_env: GENAI_API_KEY_EU
  closed:                 # nothing listens there
    base_url: http://127.0.0.1:{closed}
    max_retries: 0
    messages_api: native
models:
  - id: gpt-4.1
  - id: eu-model
    upstream: eu
  - id: refused
    upstream: closed
    fallbacks: [gpt-4.1]
"""


def test_status_page_shows_every_upstream_and_no_secret(mock_url):
    """With several upstreams in models.yaml, the page has a row for each in
    service, the default first: its URL without credentials, how the
    Responses and Messages APIs reach it as the proxy found out (an
    upstream that refused /responses is bridged from then on), and the
    requests it answered, its errors and its failures (a refused
    connection, answered by the fallback).  No key, token or password is
    on the page."""
    with run_mock_upstream("--chat-only") as (eu_url, _):
        eu_with_password = eu_url.replace("http://", "http://eu-user:eu-password@")
        models = SEVERAL_UPSTREAMS.format(eu=eu_with_password, closed=free_port())
        with run_proxy(mock_url, models=models, AUTH_TOKEN=TOKEN,
                       GENAI_API_KEY_EU=EU_KEY) as proxy:
            for path, body in (("/v1/chat/completions", chat("gpt-4.1", "one")),
                               ("/v1/responses", {"model": "eu-model", "input": "two"}),
                               ("/v1/chat/completions", chat("refused", "three"))):
                answer = httpx.post(proxy.url + path, json=body, headers=AUTH, timeout=30,
                                    trust_env=False)
                assert answer.status_code == 200, answer.text
            page = httpx.get(proxy.url + "/status", headers=AUTH, trust_env=False).text

    head, *rows = StatusPageText(page).tables["upstreams"]
    assert head == ["Upstream", "URL", "Via", "Responses API", "Messages API", "Requests",
                    "Errors", "Failures"]
    closed_url = models.split("base_url: ")[2].split()[0]
    assert rows == [
        ["default", mock_url, "direct", "auto: native", "bridged", "2", "0", "0"],
        ["eu", eu_url, "direct", "auto: bridged", "bridged", "1", "0", "0"],
        ["closed", closed_url, "direct", "auto: native", "native", "0", "0", "1"],
    ]
    for secret in (BASE_ENV["GENAI_API_KEY"], EU_KEY, TOKEN, "eu-password"):
        assert secret not in page


# The page in a real browser.

def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Run Debian's Chromium headless with a fresh profile, talking to loopback only."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: apt-get install chromium (./run-tests does)")
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-proxy-server", f"--user-data-dir={profile}", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_chromium_renders_the_page(mock_url, tmp_path, capsys):
    """A real browser, which sends no token, renders the page of a proxy
    that needs one once STATUS_PUBLIC is set (while /metrics still needs
    it), with the model rows, the client-given name as text, the chart, and
    no network beyond the proxy; a screenshot of it is kept for people to
    look at."""
    bold = "<b>bold</b>"
    with run_proxy(mock_url, AUTH_TOKEN=TOKEN, STATUS_PUBLIC="true") as proxy:
        expected: dict[str, list[int]] = {}
        send(proxy, "/v1/chat/completions", chat("gpt-4.1", "one two"), AUTH, expected)
        send(proxy, "/v1/chat/completions", chat("gpt-4.1", "three four five"), AUTH, expected)
        send(proxy, "/v1/chat/completions", chat(bold, "six"), AUTH, expected)
        assert httpx.get(proxy.url + "/metrics", trust_env=False).status_code == 401
        url = proxy.url + "/status"
        dom = chromium("--dump-dom", url, profile=tmp_path / "profile-dom").stdout
        shot = tmp_path / "status.png"
        chromium(f"--screenshot={shot}", "--window-size=1200,900", url,
                 profile=tmp_path / "profile-shot")

    shown = StatusPageText(dom)
    assert shown.rows("models") == expected
    assert list(shown.rows("clients")) == ["default"]
    assert shown.cards["Requests"] == "3" and shown.svgs == 1
    assert "<b>" not in dom and escape(bold) in dom

    assert png_size(shot) == (1200, 900)
    # A blank page of that size is about 5 kB; text, tables and bars make far more.
    assert shot.stat().st_size > 20_000
    shutil.copyfile(shot, SCREENSHOT)
    with capsys.disabled():
        print(f"\nstatus page screenshot: {shot} (copied to {SCREENSHOT})")
