"""Operating the daemon: liveness, graceful stop on SIGTERM, live reload of models.yaml."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
from support import run_proxy

CHAT = "/v1/chat/completions"


def stream_in_background(url: str, events: int) -> tuple[threading.Thread, list[str]]:
    """Start reading a stream of C{events} events 0.25 s apart in a thread;
    return once its first event came, with the thread and the data lines
    received so far (and still to come)."""
    received: list[str] = []
    streaming = threading.Event()

    def read_stream() -> None:
        with httpx.stream("POST", url + CHAT, timeout=30,
                          json={"model": "gpt-4.1", "messages": [], "stream": True},
                          headers={"X-Mock-Events": str(events), "X-Mock-Event-Delay": "0.25"}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    received.append(line)
                    streaming.set()

    reader = threading.Thread(target=read_stream)
    reader.start()
    assert streaming.wait(10)
    return reader, received


def test_livez_needs_no_upstream_and_no_token(client):
    with run_proxy("http://127.0.0.1:9", AUTH_TOKEN="tok") as p:  # nothing listens on :9
        response = client.get(p.url + "/livez")
        assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_says_503_while_models_yaml_never_loaded(mock_url, client):
    """/readyz is open without a token, 200 while the proxy takes work, and
    503 while models.yaml exists but no version of it could be loaded."""
    with run_proxy(mock_url, models="models: [broken\n", AUTH_TOKEN="tok") as p:
        refused = client.get(p.url + "/readyz")
        assert refused.status_code == 503 and refused.json()["status"] == "no models"
        (p.workdir / "models.yaml").write_text("- id: gpt-4.1\n")
        p.wait_for_event("models_loaded")
        ready = client.get(p.url + "/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_sigterm_turns_not_ready_and_keeps_listening_for_the_delay(mock_url, client):
    """SIGTERM with SHUTDOWN_DELAY_SEC: /readyz answers 503 at once while
    the port still accepts requests (a load balancer takes the endpoint
    out), answers close their keep-alive connections, a stream in flight
    finishes, then the port closes and the process exits 0."""
    with run_proxy(mock_url, SHUTDOWN_DELAY_SEC="1.5", SHUTDOWN_GRACE_SEC="20") as p:
        ready = client.get(p.url + "/readyz")
        assert ready.status_code == 200 and "connection" not in ready.headers
        reader, received = stream_in_background(p.url, 10)
        p.process.send_signal(signal.SIGTERM)
        assert p.wait_for_event("shutdown_started")["delay_sec"] == 1.5
        with httpx.Client(trust_env=False) as fresh:  # a new connection: the port still listens
            stopping = fresh.get(p.url + "/readyz")
            assert stopping.status_code == 503 and stopping.json() == {"status": "stopping"}
            # Answers now close their connection, so that keep-alive clients
            # reconnect (through the load balancer, to another instance).
            assert stopping.headers["connection"] == "close"
            assert fresh.get(p.url + "/livez").status_code == 200
        reader.join(30)
        assert received[-1] == "data: [DONE]" and len(received) == 12
        assert p.process.wait(30) == 0


def test_sigterm_drains_streams_then_exits_0(mock_url, client):
    """SIGTERM: the listening socket closes at once, a stream in flight runs to
    its end, then the process exits with status 0."""
    with run_proxy(mock_url, SHUTDOWN_GRACE_SEC="20") as p:
        url = urlsplit(p.url)
        reader, received = stream_in_background(p.url, 8)
        p.process.send_signal(signal.SIGTERM)
        p.wait_for_event("shutdown_started")
        # New connections are refused while the stream drains.
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection((url.hostname, url.port), timeout=1).close()
            except ConnectionRefusedError:
                break
            assert time.monotonic() < deadline, "still accepting connections while draining"
            time.sleep(0.05)
        reader.join(30)
        assert received[-1] == "data: [DONE]" and len(received) == 10  # 8 + finish + DONE
        assert p.process.wait(30) == 0
        finished = p.wait_for_event("shutdown_finished")
        assert finished["cut"] == 0


def test_grace_period_cuts_what_is_left(mock_url):
    with run_proxy(mock_url, SHUTDOWN_GRACE_SEC="0.5") as p:
        started = threading.Event()
        outcome: dict[str, object] = {}

        def read_stream() -> None:
            try:
                with httpx.stream("POST", p.url + CHAT, timeout=30,
                                  json={"model": "gpt-4.1", "messages": [], "stream": True},
                                  headers={"X-Mock-Events": "100", "X-Mock-Event-Delay": "0.2"}) as r:
                    for _ in r.iter_lines():
                        started.set()
                outcome["ended"] = "cleanly"
            except httpx.HTTPError as e:
                outcome["ended"] = type(e).__name__

        reader = threading.Thread(target=read_stream)
        reader.start()
        assert started.wait(10)
        p.process.send_signal(signal.SIGTERM)
        assert p.process.wait(15) == 0
        reader.join(10)
        assert outcome["ended"] != "cleanly"  # cut, visibly
        assert p.wait_for_event("shutdown_finished")["cut"] == 1


def test_models_reload_on_change_and_on_sighup(mock_url, client):
    with run_proxy(mock_url, models="- id: first\n") as p:
        p.wait_for_event("models_loaded")
        models_file = p.workdir / "models.yaml"
        models_file.write_text("- id: second\n- id: third\n")
        # Noticed without any request, within a few seconds.
        p.wait_for_event("models_loaded", models=2)
        assert [m["id"] for m in client.get(p.url + "/v1/models").json()["data"]] == ["second", "third"]
        # An invalid new file keeps the previous list, and says why.
        models_file.write_text("models: [broken\n")
        failed = p.wait_for_event("models_reload_failed")
        assert failed["level"] == "ERROR" and failed["models_kept"] == 2
        assert [m["id"] for m in client.get(p.url + "/v1/models").json()["data"]] == ["second", "third"]
        # SIGHUP reads the file again on demand.
        models_file.write_text("- id: fourth\n")
        p.process.send_signal(signal.SIGHUP)
        p.wait_for_event("models_reload_requested")
        p.wait_for_event("models_loaded", models=1)
        assert p.process.poll() is None  # SIGHUP did not stop it
        assert [m["id"] for m in client.get(p.url + "/v1/models").json()["data"]] == ["fourth"]


def test_sighup_reloads_even_what_the_periodic_check_cannot_see(mock_url, client):
    """SIGHUP reads models.yaml again at once: even a change that keeps the
    file's size and modification time (which the periodic check compares)."""
    with run_proxy(mock_url, models="- id: aaaa\n") as p:
        p.wait_for_event("models_loaded", models=1)
        models_file = p.workdir / "models.yaml"
        before = models_file.stat()
        models_file.write_text("- id: bbbb\n")
        os.utime(models_file, ns=(before.st_atime_ns, before.st_mtime_ns))
        time.sleep(2.5)  # a periodic check passes and, rightly, sees nothing new
        assert [m["id"] for m in client.get(p.url + "/v1/models").json()["data"]] == ["aaaa"]
        p.process.send_signal(signal.SIGHUP)
        p.wait_for(lambda: len(p.events("models_loaded")) >= 2)
        assert [m["id"] for m in client.get(p.url + "/v1/models").json()["data"]] == ["bbbb"]
