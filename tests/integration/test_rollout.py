"""A rolling restart that loses nothing, on loopback.

Three daemons stand behind Debian's HAProxy, which plays the Kubernetes
Service: it sends work only to servers whose active health check on
/readyz answers 200, as the endpoints controller acts on readiness.  A
steady load of short chat requests and long streams runs through HAProxy
while each daemon in turn gets SIGTERM and, once it has exited, is started
again on the same port.  Every request must be answered 200 and every
stream must end with ``data: [DONE]``.

HAProxy opens a new connection to a daemon for each request (``option
http-server-close``) and retries nothing (``retries 0``): a connection
refused by a daemon whose port already closed reaches the client as an
error, as it would through a Service.  What keeps the count at zero is the
daemon itself: /readyz turns 503 at once on SIGTERM, the port keeps
listening for SHUTDOWN_DELAY_SEC while the balancer takes the server out,
and streams in flight drain before the process exits.  (Measured while
writing this test: with SHUTDOWN_DELAY_SEC=0, 40 to 65 errors a run; with
HAProxy's ``retries 3`` and ``option redispatch``, none even then, as
HAProxy retried the refused connections elsewhere: that would test
HAProxy, not the proxy.)  ``run-tests`` installs haproxy.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import BASE_ENV, TWISTD, _clean_environment, _stop, free_port, run_mock_upstream

REPO = Path(__file__).resolve().parents[2]
CHAT = "/v1/chat/completions"
DAEMONS = 3
SHORT_CLIENTS = 4  # threads sending short chat requests back to back
STREAM_CLIENTS = 6  # threads opening long streams back to back
STREAM_EVENTS, EVENT_DELAY = 20, 0.1  # each stream lasts about 2 s
SHUTDOWN_DELAY_SEC = "2"  # ten health checks (inter 200ms) while still listening
FIGURES = REPO / ".cache" / "rollout-figures.txt"

HAPROXY_CONFIG = """\
global
    maxconn 2000
    stats socket {socket} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A health check slowed by a busy machine is not a failed one.
    timeout check 2s
    # No retry: a Service does not retry a refused connection either.
    retries 0

frontend proxies
    bind 127.0.0.1:{port}
    default_backend proxies

backend proxies
    balance roundrobin
    # A new connection to a daemon for each request, as a client opening
    # one per request through a Service: a refused one would show.
    option http-server-close
    option httpchk GET /readyz
    http-check expect status 200
    # Down on the first 503 (or refusal), up after two 200s, checked every 200 ms.
    default-server check inter 200ms fall 1 rise 2
{servers}
"""


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Daemon:
    """One ``twistd -n genaiproxy`` on a fixed loopback port; started again
    on the same port after each stop, each run logging to its own file."""

    def __init__(self, name: str, upstream: str, workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.upstream = upstream
        self.workdir = workdir
        self.runs: list[tuple[subprocess.Popen[bytes], Path]] = []
        (workdir / "models.yaml").write_text("- id: gpt-4.1\n- id: gpt-5\n")

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.runs[-1][0]

    def start(self) -> None:
        log = self.workdir / f"{self.name}-run{len(self.runs) + 1}.log"
        env = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": self.upstream,
               "SHUTDOWN_DELAY_SEC": SHUTDOWN_DELAY_SEC, "SHUTDOWN_GRACE_SEC": "20",
               "LOG_FORMAT": "json", "LOG_BODIES": "false"}
        with log.open("wb") as out:
            process = subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "genaiproxy",
                 "--listen", f"tcp:{self.port}:interface=127.0.0.1",
                 "--models", str(self.workdir / "models.yaml")],
                cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.runs.append((process, log))

        def ready() -> bool:
            assert process.poll() is None, f"{self.name} exited:\n{log.read_text()}"
            try:
                answer = httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2, trust_env=False)
                return answer.status_code == 200
            except httpx.TransportError:
                return False
        wait_until(ready, 20, f"{self.name} to be ready")

    def events(self, run: int, name: str) -> list[dict[str, Any]]:
        """The JSON log events named C{name} of run number C{run} (from 0)."""
        found = []
        for line in self.runs[run][1].read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == name:
                found.append(event)
        return found


class HAProxy:
    """Debian's haproxy in the foreground, in front of C{daemons}."""

    def __init__(self, daemons: list[Daemon], workdir: Path) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not os.path.exists(binary):
            pytest.fail("haproxy is not installed (run-tests installs it: apt-get install haproxy)")
        self.port = free_port()
        self.socket = workdir / "haproxy.sock"
        servers = "\n".join(f"    server {d.name} 127.0.0.1:{d.port}" for d in daemons)
        config = workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(socket=self.socket, port=self.port, servers=servers))
        self.log = workdir / "haproxy.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([binary, "-f", str(config), "-db"],
                                            stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"

    def status(self) -> dict[str, str]:
        """Each server's state as HAProxy sees it (UP, DOWN, "UP 1/2", ...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {row["svname"]: row["status"] for row in rows
                if row["pxname"] == "proxies" and row["svname"] not in ("BACKEND", "FRONTEND")}

    def sees(self, name: str, state: str) -> bool:
        if self.process.poll() is not None:
            raise AssertionError("haproxy exited:\n" + self.log.read_text())
        try:
            return self.status().get(name) == state
        except OSError:  # the stats socket is not there yet
            return False


class Load:
    """Short requests and long streams through HAProxy until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = self.streams = 0
        self.errors: list[str] = []
        self.threads = [threading.Thread(target=self._short, daemon=True) for _ in range(SHORT_CLIENTS)]
        self.threads += [threading.Thread(target=self._stream, daemon=True) for _ in range(STREAM_CLIENTS)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a load thread did not finish"

    def _count(self, ok: bool, kind: str, what: str) -> None:
        with self.lock:
            if ok:
                if kind == "request":
                    self.requests += 1
                else:
                    self.streams += 1
            else:
                self.errors.append(f"{kind}: {what}")

    def _short(self) -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not self.stopping.is_set():
                try:
                    r = client.post(self.url + CHAT, json={
                        "model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]})
                    ok = r.status_code == 200 and bool(r.json()["choices"])
                    self._count(ok, "request", f"{r.status_code} {r.text[:200]}")
                except (httpx.HTTPError, ValueError, KeyError) as e:
                    self._count(False, "request", repr(e))

    def _stream(self) -> None:
        headers = {"X-Mock-Events": str(STREAM_EVENTS), "X-Mock-Event-Delay": str(EVENT_DELAY)}
        body = {"model": "gpt-5", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        with httpx.Client(trust_env=False, timeout=30) as client:
            while not self.stopping.is_set():
                try:
                    with client.stream("POST", self.url + CHAT, json=body, headers=headers) as r:
                        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
                    ok = r.status_code == 200 and lines[-1:] == ["data: [DONE]"]
                    self._count(ok, "stream", f"{r.status_code}, {len(lines)} events, last {lines[-1:]}")
                except httpx.HTTPError as e:
                    self._count(False, "stream", repr(e))


def test_rolling_restart_behind_a_load_balancer_loses_nothing(capsys):
    """Each of three daemons in turn is stopped with SIGTERM under load and
    started again once it exited, the next only after HAProxy has it back
    in service: every short request is answered 200, every stream ends with
    [DONE], every daemon exits 0 having cut nothing, streams were in flight
    when they were told to stop, and each restarted daemon took work again."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="genai-rollout-"))
    with run_mock_upstream() as (upstream, _):
        daemons = [Daemon(f"p{i + 1}", upstream, workdir) for i in range(DAEMONS)]
        haproxy = None
        load = None
        try:
            for daemon in daemons:
                daemon.start()
            haproxy = HAProxy(daemons, workdir)
            wait_until(lambda: all(haproxy.sees(d.name, "UP") for d in daemons), 20, "haproxy: all UP")
            load = Load(haproxy.url)
            load.start()
            time.sleep(2.0)  # streams of each daemon in flight
            seen_down = 0
            for daemon in daemons:
                daemon.process.send_signal(signal.SIGTERM)
                went_down = False
                while daemon.process.poll() is None:
                    went_down = went_down or haproxy.sees(daemon.name, "DOWN")
                    time.sleep(0.05)
                seen_down += went_down
                assert daemon.process.returncode == 0, daemon.runs[-1][1].read_text()[-3000:]
                daemon.start()
                wait_until(lambda d=daemon: haproxy.sees(d.name, "UP"), 20, f"haproxy: {daemon.name} UP")
            time.sleep(1.0)  # the restarted ones take work
            load.stop()
        finally:
            if load is not None:
                load.stopping.set()
            if haproxy is not None:
                _stop(haproxy.process)
            for daemon in daemons:
                if daemon.runs:
                    _stop(daemon.process)

    in_flight = sum(d.events(0, "shutdown_started")[0]["in_flight"] for d in daemons)
    cut = sum(d.events(0, "shutdown_finished")[0]["cut"] for d in daemons)
    served_after = [len(d.events(1, "request")) for d in daemons]
    elapsed = time.monotonic() - started
    summary = (f"rolling restart of {DAEMONS} daemons behind haproxy: {load.requests} requests, "
               f"{load.streams} streams, {len(load.errors)} errors; {in_flight} requests in flight "
               f"at the SIGTERMs, {cut} cut; HAProxy saw {seen_down} of {DAEMONS} DOWN before they "
               f"exited; requests served after restart {served_after}; {elapsed:.1f} s")
    FIGURES.parent.mkdir(exist_ok=True)
    FIGURES.write_text(summary + "\n")
    with capsys.disabled():  # shown in the test run's output, -s or not
        print("\n" + summary)
    assert load.errors == [], summary + "\n" + "\n".join(load.errors[:20])
    assert load.requests > 0 and load.streams > 0, summary
    assert in_flight > 0 and cut == 0, summary
    assert all(served_after), summary
