"""Open WebUI as a real client of the daemon, driven through its own HTTP API.

A pinned ``open-webui`` runs from a venv of the suite's own, which
``tests/clients/install-open-webui`` builds once and reuses (``.ci/run``
installs it before pytest; the fixture runs it too, which costs well under a
second once it is there). Open WebUI starts headless, once for the module,
with its OpenAI connection and its RAG embeddings both pointed at a proxy
(with AUTH_TOKEN set) in front of the session's mock upstream. The tests
then do what its browser UI does: sign in, list the models, chat with and
without streaming, and upload a document, which Open WebUI embeds at once.

Nothing may leave the machine: offline mode (no Hugging Face downloads, no
version check, no installs of plugin requirements), telemetry off, and every
proxy variable pointing at a closed loopback port (with NO_PROXY for
loopback), as for the other real clients. Open WebUI takes some twenty
seconds to start, most of them migrating its fresh database.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import BASE_ENV, ProxyProcess, _stop, free_port, run_proxy, wait_for
from support.clients import MODELS_YAML, REPLY, TOKEN, open_webui_environment

from genaiproxy.mock.payloads import DEFAULT_EMBEDDING_MODEL

INSTALL = Path(__file__).resolve().parents[1] / "clients" / "install-open-webui"
# Exit status of the install script when PyPI cannot be reached.
EX_TEMPFAIL = 75
# A fresh install takes two or three minutes; a cached one, a moment.
INSTALL_TIMEOUT = 420.0
# Start-up with a fresh database: about 20 s on an idle 2-core machine.
STARTUP_TIMEOUT = 150.0

# The first test also waits for the module's fixture: a fresh install and
# start-up can outlast the suite's 300 s default.
pytestmark = pytest.mark.timeout(600)

class OpenWebUI:
    """A running Open WebUI, signed in as its (only) admin user."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, proxy: ProxyProcess) -> None:
        self.process = process
        self.log = log
        self.proxy = proxy
        self.url = ""
        self.client = httpx.Client(timeout=60)

    def report(self, headline: str) -> str:
        """C{headline} with the tails of Open WebUI's output and the proxy's log."""
        text = self.log.read_text(errors="replace")
        return "\n".join([headline, "--- Open WebUI output (tail) ---", text[-6000:],
                          "--- proxy log (last 25 lines) ---", *self.proxy.lines[-25:]])

    def fail(self, headline: str) -> None:
        pytest.fail(self.report(headline), pytrace=False)


def _install() -> str:
    """The pinned open-webui executable, installed if need be."""
    result = subprocess.run([str(INSTALL)], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=INSTALL_TIMEOUT)
    if result.returncode == EX_TEMPFAIL:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    if result.returncode != 0:
        pytest.fail(f"{INSTALL} exited {result.returncode}:\n{result.stderr[-6000:]}", pytrace=False)
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def webui_proxy(mock_url: str) -> Iterator[ProxyProcess]:
    """The daemon in front of the session's mock, requiring TOKEN."""
    with run_proxy(mock_url, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def webui(webui_proxy: ProxyProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenWebUI]:
    """Open WebUI on a free loopback port, started and signed in."""
    executable = _install()
    work = tmp_path_factory.mktemp("open-webui")
    (work / "data").mkdir()
    port = free_port()
    log = work / "open-webui.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [executable, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=work, env=open_webui_environment(work / "home", work / "data", webui_proxy.url + "/v1"),
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = OpenWebUI(process, log, webui_proxy)
    try:
        running.url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            if process.poll() is not None:
                running.fail(f"open-webui exited {process.returncode} while starting")
            try:
                return running.client.get(running.url + "/health", timeout=5).status_code == 200
            except httpx.TransportError:
                return False
        try:
            wait_for(healthy, timeout=STARTUP_TIMEOUT)
        except AssertionError:
            running.fail(f"open-webui did not answer /health within {STARTUP_TIMEOUT:.0f} s")
        signin = running.client.post(running.url + "/api/v1/auths/signin",
                                     json={"email": "", "password": ""})
        if signin.status_code != 200:
            running.fail(f"sign-in answered {signin.status_code}: {signin.text}")
        running.client.headers["Authorization"] = "Bearer " + signin.json()["token"]
        yield running
    finally:
        running.client.close()
        _stop(process)
        try:  # anything it started, in its own session
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _chat(stream: bool) -> dict[str, Any]:
    return {"model": "gpt-4.1", "stream": stream,
            "messages": [{"role": "user", "content": "Say hello"}]}


def _chat_requests(proxy: ProxyProcess, stream: bool) -> list[dict[str, Any]]:
    return [e for e in proxy.events("request")
            if e.get("path") == "/v1/chat/completions" and e["body"].get("stream") is stream]


def test_lists_the_proxy_models(webui):
    """Open WebUI lists the proxy's models: those of its models.yaml, with
    C{owned_by} as written there (not the mock's), which the proxy answers
    only to the token."""
    answer = webui.client.get(webui.url + "/api/models")
    if answer.status_code != 200:
        webui.fail(f"/api/models answered {answer.status_code}: {answer.text}")
    models = {model["id"]: model for model in answer.json()["data"]}
    assert {"gpt-4.1", "gpt-5"} <= set(models), webui.report(f"models listed: {sorted(models)}")
    assert models["gpt-4.1"]["openai"]["owned_by"] == "genai"


def test_chat_without_streaming(webui):
    """A non-streamed chat through Open WebUI gets the mock's whole reply."""
    answer = webui.client.post(webui.url + "/api/chat/completions", json=_chat(False))
    if answer.status_code != 200:
        webui.fail(f"chat answered {answer.status_code}: {answer.text}")
    assert answer.json()["choices"][0]["message"]["content"] == REPLY
    webui.proxy.wait_for(lambda: _chat_requests(webui.proxy, stream=False))


def test_chat_streaming(webui):
    """A streamed chat through Open WebUI arrives as SSE chunks that add up
    to the mock's reply, ending with C{[DONE]}; the proxy streamed it."""
    since = len(webui.proxy.events("streaming_end"))
    with webui.client.stream("POST", webui.url + "/api/chat/completions", json=_chat(True)) as answer:
        if answer.status_code != 200:
            webui.fail(f"chat answered {answer.status_code}: {answer.read().decode(errors='replace')}")
        assert answer.headers["content-type"].startswith("text/event-stream")
        payloads = [line[len("data: "):] for line in answer.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(payload) for payload in payloads[:-1]]
    assert len(chunks) > 1
    text = "".join(chunk["choices"][0]["delta"].get("content") or "" for chunk in chunks if chunk["choices"])
    assert text == REPLY
    webui.proxy.wait_for(lambda: webui.proxy.events("streaming_end")[since:])
    assert _chat_requests(webui.proxy, stream=True)


def test_document_embeddings_reach_upstream_with_the_subscription_key(webui, mock_url):
    """An uploaded document is embedded through the proxy: the upstream gets
    its text at C{/v1/embeddings} with the subscription header and key, and
    without the bearer token Open WebUI sent to the proxy."""
    marker = f"genai-proxy document {uuid.uuid4().hex}"
    document = f"# Notes\n\n{marker}: Twisted is an event-driven networking engine.\n"
    upload = webui.client.post(webui.url + "/api/v1/files/",
                               files={"file": ("notes.md", document.encode(), "text/markdown")})
    if upload.status_code != 200:
        webui.fail(f"upload answered {upload.status_code}: {upload.text}")
    status_url = f"{webui.url}/api/v1/files/{upload.json()['id']}/process/status"

    def processed() -> str | None:
        state = webui.client.get(status_url).json().get("status")
        return state if state in ("completed", "failed") else None
    try:
        state = wait_for(processed, timeout=60)
    except AssertionError:
        webui.fail("the upload was not processed within 60 s")
    if state != "completed":
        webui.fail(f"processing the upload {state}: {webui.client.get(status_url).text}")

    recorded = httpx.get(mock_url + "/_mock/requests").json()
    embeddings = [r for r in recorded if r["path"].endswith("/v1/embeddings") and marker in r["body"]]
    assert embeddings, webui.report("the upstream received no embeddings request with the document")
    name, key = BASE_ENV["GENAI_SUBSCRIPTION_NAME"].lower(), BASE_ENV["GENAI_API_KEY"]
    for request in embeddings:
        assert request["method"] == "POST"
        assert json.loads(request["body"])["model"] == DEFAULT_EMBEDDING_MODEL
        assert request["headers"].get(name) == [key]
        assert "authorization" not in request["headers"]
        assert not [v for values in request["headers"].values() for v in values if TOKEN in v]
