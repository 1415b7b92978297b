"""Constants and small helpers shared by every part of the benchmark.

The request every phase sends, the promises' limits, logging to stderr,
percentiles, and two raw-socket HTTP helpers (a blocking POST, and an
incremental SSE parser that time-stamps each event as its last byte arrives,
for chat streams and for the event streams of the Responses and Messages bridges).
Raw sockets on purpose: no proxy variables, no hidden buffering, no package
beyond the standard library.
"""

from __future__ import annotations

import http.client
import math
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
PATH = "/v1/chat/completions"
SUBSCRIPTION_NAME = "Ocp-Apim-Subscription-Key"
API_KEY = "bench-key"
MODEL = "gpt-4.1"
CHAT_BODY = b'{"model":"gpt-4.1","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = b'{"model":"gpt-4.1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
# The translated APIs a proxy answers through the upstream's chat
# completions, sent streamed requests instead of chat ones: the Responses
# API (RESPONSES_API=chat, "bridged") and the Anthropic Messages API
# (MESSAGES_API=chat, "messages").  Per API: path, streamed body, extra
# headers, how the event carrying one upstream content event starts (and a
# piece it must hold), how the event ending a complete answer starts, and
# that event's name for the report.
RESPONSES_PATH = "/v1/responses"
RESPONSES_STREAM_BODY = b'{"model":"gpt-4.1","input":"hi","stream":true}'
MESSAGES_PATH = "/v1/messages"
MESSAGES_STREAM_BODY = (b'{"model":"gpt-4.1","max_tokens":1000,"stream":true,'
                        b'"messages":[{"role":"user","content":"hi"}]}')
MESSAGES_HEADERS = {"x-api-key": "bench", "anthropic-version": "2023-06-01"}


@dataclass(frozen=True)
class StreamAPI:
    """How a client asks for a stream in one API and reads its events."""

    name: str  # "chat", "responses", "messages"
    path: str
    body: bytes
    headers: dict[str, str]
    delta: bytes  # start of an event carrying one upstream content event (b"": every event)
    delta_has: bytes  # ... which must also contain this
    end: bytes  # start of the event that ends a complete answer
    end_name: str


API_CHAT = StreamAPI("chat", PATH, STREAM_BODY, {}, b"", b"", b"data: [DONE]", "[DONE]")
API_RESPONSES = StreamAPI("responses", RESPONSES_PATH, RESPONSES_STREAM_BODY, {},
                          b"event: response.output_text.delta\n", b"",
                          b"event: response.completed\n", "response.completed")
API_MESSAGES = StreamAPI("messages", MESSAGES_PATH, MESSAGES_STREAM_BODY, MESSAGES_HEADERS,
                         b"event: content_block_delta\n", b'"text_delta"',
                         b"event: message_stop\n", "message_stop")
STREAM_APIS = {a.name: a for a in (API_CHAT, API_RESPONSES, API_MESSAGES)}

# The promises checked (see README.md).
ADDED_P50_CEILING_MS = 0.5  # genai-proxy p50 - direct p50 at 1 connection
RPS_FLOOR = 0.08  # genai-proxy req/s >= 8 % of nginx (1 worker) at 32 connections
LITELLM_FACTOR = 10.0  # genai-proxy >= 10x LiteLLM's req/s, added p50 <= 1/10 of LiteLLM's
OPEN_STREAMS_WANTED = 10_000  # the figure
OPEN_STREAMS_RSS_CEILING_MB = 350.0
OPEN_STREAMS_FIRST_EVENT_S = 1.0
# While they open at --ramp-rate, this share of them is open at one moment
# (the proxy keeps up with the ramp).
OPEN_STREAMS_AT_ONCE_FLOOR = 0.90
BRIDGE_ADDED_P50_CEILING_MS = 0.1  # bridged per-event p50 - passed-through per-event p50
LIMITS_ADDED_P50_CEILING_MS = 0.05  # with limits in process: p50 - the default row's p50
LIMITS_REDIS_ADDED_P50_CEILING_MS = 0.3  # with limits in Redis: p50 - the default row's p50
# models.yaml of the rows with limits: every kind of window counted for the
# one client (no token: "default"), none ever reached.
LIMITS_MODELS = """\
limits:
  default:
    requests_per_minute: 100000000
    tokens_per_minute: 100000000000
    concurrent_requests: 100000
    tokens_per_day: 100000000000
    budget_per_day: 100000000
    budget_per_month: 1000000000
    models: [gpt-4.1, gpt-5]
models:
  - id: gpt-4.1
    price: {input: 2.0, output: 8.0, cached_input: 0.5}
  - id: gpt-5
"""


class BenchError(Exception):
    """The benchmark cannot go on (a process failed to start, a tool is missing)."""


def log(message: str) -> None:
    """One time-stamped progress line on stderr (the report goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of C{values}; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    """Median of C{values}; NaN when empty."""
    return statistics.median(values) if values else float("nan")


def tail(path: Path, limit: int = 1500) -> str:
    """The last C{limit} characters of a (log) file, or ''."""
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def listen_overflows() -> int | None:
    """The machine's TcpExt ListenOverflows counter (SYNs dropped because an
    accept queue was full), or None when unreadable."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            row = dict(zip(names.split(), values.split(), strict=False))
            return int(row["ListenOverflows"]) if "ListenOverflows" in row else None
    return None


def http_post(port: int, body: bytes = CHAT_BODY, headers: dict[str, str] | None = None,
              timeout: float = 5.0, path: str = PATH) -> tuple[int, dict[str, str], bytes]:
    """One POST to C{path} on loopback; return (status, headers lower-cased, body)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", path, body=body,
                     headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        head = {k.lower(): v for k, v in response.getheaders()}
        return response.status, head, response.read()
    finally:
        conn.close()


def stream_request(events: int, delay: float, tag: str = "",
                   api: StreamAPI = API_CHAT) -> bytes:
    """The raw bytes of one streaming chat request for the Python mock upstream:
    C{events} events C{delay} seconds apart; C{tag} asks the benchmark's mock
    launcher to time-stamp each event it writes.  With another C{api}, the
    same as a streamed request of that API (C{POST /v1/responses} or
    C{/v1/messages}), for a proxy that bridges it to the upstream's chat
    completions: the X-Mock-* and X-Bench-Stream headers go upstream with the
    chat request it makes."""
    head = (
        f"POST {api.path} HTTP/1.1\r\n"
        f"Host: {HOST}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: text/event-stream\r\n"
        f"X-Mock-Events: {events}\r\n"
        f"X-Mock-Event-Delay: {delay:g}\r\n"
        + (f"X-Bench-Stream: {tag}\r\n" if tag else "")
        + "".join(f"{k}: {v}\r\n" for k, v in api.headers.items())
        + "Connection: close\r\n"
        f"Content-Length: {len(api.body)}\r\n\r\n"
    )
    return head.encode("ascii") + api.body


class SSEResponse:
    """Incremental parser of one HTTP/1.1 SSE response; stamps each event
    with the time the bytes completing it were received.

    C{content} holds the arrival times of the events that carry the
    upstream's events, in order: every event of a passed-through chat stream,
    but only the C{response.output_text.delta} events of a bridged Responses
    stream, or the C{content_block_delta} events with a C{text_delta} of a
    bridged Messages stream (C{api}), one per content event of the upstream's
    chat stream; their other events (created, in_progress, items and parts
    added and done, completed; message_start, ping, content blocks started
    and stopped, message_delta, message_stop) have no upstream event of their
    own to be matched with.
    """

    __slots__ = ("_buf", "_sse", "_data_left", "_crlf_left", "api", "status", "chunked",
                 "body_ended", "events", "content", "saw_done", "saw_completed")

    def __init__(self, api: StreamAPI = API_CHAT) -> None:
        self.api = api
        self._buf = b""
        self._sse = b""
        self._data_left = 0
        self._crlf_left = 0
        self.status: int | None = None
        self.chunked = False
        self.body_ended = False
        self.events: list[tuple[float, bytes]] = []
        self.content: list[float] = []
        self.saw_done = False
        self.saw_completed = False

    @property
    def complete(self) -> bool:
        """The answer's end arrived: C{data: [DONE]}, or for a Responses
        stream C{response.completed}, for a Messages stream C{message_stop}."""
        return self.saw_completed if self.api is not API_CHAT else self.saw_done

    def feed(self, data: bytes, now: float) -> None:
        """Take the bytes C{data}, received at C{now} (time.monotonic())."""
        self._buf += data
        if self.status is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self._buf[:end].decode("latin-1").split("\r\n")
            self._buf = self._buf[end + 4:]
            self.status = int(head[0].split()[1])
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    self.chunked = True
        if self.chunked:
            pieces = []
            while self._buf and not self.body_ended:
                if self._data_left:
                    piece = self._buf[:self._data_left]
                    self._buf = self._buf[len(piece):]
                    self._data_left -= len(piece)
                    pieces.append(piece)
                elif self._crlf_left:
                    skip = min(self._crlf_left, len(self._buf))
                    self._buf = self._buf[skip:]
                    self._crlf_left -= skip
                else:
                    line_end = self._buf.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(self._buf[:line_end].split(b";")[0], 16)
                    self._buf = self._buf[line_end + 2:]
                    if size == 0:
                        self.body_ended = True
                    else:
                        self._data_left, self._crlf_left = size, 2
            body = b"".join(pieces)
        else:
            body, self._buf = self._buf, b""
        self._sse += body
        while True:
            end = self._sse.find(b"\n\n")
            if end < 0:
                break
            event, self._sse = self._sse[:end], self._sse[end + 2:]
            self.events.append((now, event))
            api = self.api
            if api is not API_CHAT:
                if event.startswith(api.delta) and api.delta_has in event:
                    self.content.append(now)
                elif event.startswith(api.end):
                    self.saw_completed = True
            else:
                self.content.append(now)
            if event.strip() == b"data: [DONE]":
                self.saw_done = True


def read_stream(port: int, request: bytes, timeout: float,
                api: StreamAPI = API_CHAT) -> tuple[float, SSEResponse]:
    """Send C{request} and read the whole streamed answer with a blocking
    socket (an event stream of C{api}); return (time the request was sent,
    parsed answer)."""
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((HOST, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        parsed = SSEResponse(api)
        sent = time.monotonic()
        sock.sendall(request)
        while not (parsed.complete or parsed.body_ended):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            now = time.monotonic()
            if not data:
                break
            parsed.feed(data, now)
        return sent, parsed
    finally:
        sock.close()
