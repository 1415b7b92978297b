"""LOG_FORMAT and LOG_LEVEL over the real daemon: text lines a person reads,
JSON for machines, the default chosen by whether stdout is a terminal."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
import uuid

import httpx
from support import BASE_ENV, TWISTD, _clean_environment, free_port, run_proxy

KEY = BASE_ENV["GENAI_API_KEY"]
CHAT = "/v1/chat/completions"


def _is_json(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def test_text_lines_carry_what_a_person_needs(mock_url, client):
    """One readable line an event: time, level, event, id, method and path,
    status, duration, model; for streams bytes and events; no headers at
    info, no secrets."""
    with run_proxy(mock_url, LOG_FORMAT="text") as proxy:
        rid = "text-" + uuid.uuid4().hex
        client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                    headers={"X-Request-ID": rid, "Authorization": "Bearer client-token"})
        sid = "stream-" + uuid.uuid4().hex
        with client.stream("POST", proxy.url + CHAT, headers={"X-Request-ID": sid},
                           json={"model": "gpt-4.1", "messages": [], "stream": True}) as stream:
            events = sum(1 for line in stream.iter_lines() if line.startswith("data: "))

        def line_of(event: str, request_id: str) -> str:
            found = [line for line in proxy.lines if f" {event} id={request_id}" in line]
            return found[0] if found else ""

        response = proxy.wait_for(lambda: line_of("response", rid))
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO +response id=", response)
        assert f"POST {CHAT} 200 " in response and " ms " in response
        assert response.rstrip().endswith("model=gpt-4.1") or "model=gpt-4.1 " in response
        ended = proxy.wait_for(lambda: line_of("streaming_end", sid))
        assert f" bytes {events} events" in ended and "model=gpt-4.1" in ended
        assert "startup_config" in "\n".join(proxy.lines)
        for line in proxy.lines:
            assert not _is_json(line), line
            assert KEY not in line and "client-token" not in line
            assert "headers=" not in line


def test_debug_text_shows_headers_redacted(mock_url, client):
    """At LOG_LEVEL=debug the text lines also show the headers, with the
    secrets replaced as in JSON."""
    with run_proxy(mock_url, LOG_FORMAT="text", LOG_LEVEL="debug") as proxy:
        rid = "debug-" + uuid.uuid4().hex
        client.post(proxy.url + CHAT, json={"model": "gpt-4.1", "messages": []},
                    headers={"X-Request-ID": rid, "Authorization": "Bearer client-token"})
        request = proxy.wait_for(
            lambda: [line for line in proxy.lines if f"request id={rid}" in line])[0]
        assert '"authorization":"[redacted]"' in request
        assert '"ocp-apim-subscription-key":"[redacted]"' in request
        assert KEY not in "\n".join(proxy.lines)


def test_level_warn_drops_info_events(mock_url, client, tmp_path):
    """LOG_LEVEL=warn keeps warnings and errors only."""
    port = free_port()
    env = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": mock_url, "LOG_LEVEL": "warn"}
    process = subprocess.Popen([TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen",
                                f"tcp:{port}:interface=127.0.0.1"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, env=env, cwd=tmp_path, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                client.get(f"http://127.0.0.1:{port}/livez")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert client.post(f"http://127.0.0.1:{port}{CHAT}",
                           json={"model": "gpt-4.1", "messages": []}).status_code == 200
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    names = {json.loads(line)["event"] for line in output.splitlines() if line.strip()}
    assert names == {"models_file_missing"}


def test_default_is_text_on_a_terminal_json_otherwise(mock_url):
    """With LOG_FORMAT unset: text when stdout is a terminal (and said so at
    start-up), JSON when it is a pipe."""
    env = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": mock_url}
    env.pop("LOG_FORMAT", None)
    main, child = pty.openpty()
    process = subprocess.Popen([TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen",
                                "tcp:0:interface=127.0.0.1"], stdout=child, stderr=child,
                               env=env, cwd=os.getcwd())
    os.close(child)
    seen = b""
    try:
        deadline = time.monotonic() + 20
        while b"startup_config" not in seen and time.monotonic() < deadline:
            if select.select([main], [], [], 0.5)[0]:
                seen += os.read(main, 65536)
    finally:
        process.terminate()
        process.wait(timeout=20)
        os.close(main)
    line = [line for line in seen.decode().splitlines() if "startup_config" in line][0]
    assert not _is_json(line) and "LOG_FORMAT=text" in line
    with run_proxy(mock_url) as piped:
        assert piped.wait_for_event("startup_config")["LOG_FORMAT"] == "json"


def test_stream_end_counts_events(proxy, client):
    """streaming_end reports the events streamed, in JSON too."""
    sid = "count-" + uuid.uuid4().hex
    with client.stream("POST", proxy.url + CHAT, headers={"X-Request-ID": sid},
                       json={"model": "gpt-4.1", "messages": [], "stream": True}) as stream:
        events = sum(1 for line in stream.iter_lines() if line.startswith("data: "))
    ended = proxy.wait_for_event("streaming_end", id=sid)
    assert ended["events"] == events and ended["model"] == "gpt-4.1"
    assert ended["method"] == "POST" and ended["path"] == CHAT



def test_text_lines_cannot_be_forged_by_a_client(mock_url, client):
    """A model name with a line break (or an escape sequence) stays on its
    own line, quoted."""
    with run_proxy(mock_url, LOG_FORMAT="text") as proxy:
        rid = "forge-" + uuid.uuid4().hex
        forged = "gpt-4.1\n2026-01-01T00:00:00.000Z INFO    response id=fake \x1b[2J"
        client.post(proxy.url + CHAT, json={"model": forged, "messages": []},
                    headers={"X-Request-ID": rid})
        line = proxy.wait_for(
            lambda: [line for line in proxy.lines if f"response id={rid}" in line])[0]
        assert 'model="gpt-4.1\\n2026-01-01T00:00:00.000Z INFO    response id=fake \\u001b[2J"' in line
        assert not [line for line in proxy.lines if line.startswith("2026-01-01")]
        assert not [line for line in proxy.lines if "\x1b" in line]
