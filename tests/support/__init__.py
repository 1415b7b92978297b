"""Helpers for tests that run the real daemon and the mock upstream as processes.

Both run from the installed package (the README's test command installs it
with a plain ``pip install``), in a scratch working directory, on loopback
ports they choose themselves and announce on stdout.

The helpers test files share live in this package, never in a test file or
in conftest (tests/unit/test_test_layout.py checks it): here what runs and
asks those processes; in its modules what one group of tests shares
(L{support.clients}: the real clients' set-up, L{support.configure},
L{support.metrics}, L{support.mock_fixtures}, and the fuzz tests' harness).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

BIN = Path(sys.executable).parent
TWISTD = str(BIN / "twistd")
MOCK_BANNER = "mock upstream listening on "
_LISTENING = re.compile(r"ProxySite starting on (\d+)")

BASE_ENV = {
    "GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
    "GENAI_API_KEY": "sk-test-0123456789-secret",
    "RETRY_BACKOFF_SEC": "0.05",
}


def _clean_environment() -> dict[str, str]:
    """The test process's environment without any setting the proxy reads
    (every variable of its --help, forward proxies in any letter case, CA
    bundles): a runner's own settings must not change what a test sees."""
    from genaiproxy.config.settings import SETTINGS

    read = {item.name for item in SETTINGS} | {"SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"}
    env = {k: v for k, v in os.environ.items()
           if not k.upper().endswith("_PROXY") and k.upper() not in read}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def run_mock_upstream(
    *args: str, startup_timeout: float = 20.0
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Start the mock upstream on a free port; yield ``(base_url, process)``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "genaiproxy.mock_upstream", "--port", "0", *args],
        cwd=tempfile.gettempdir(),
        env=_clean_environment(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            if not selector.select(startup_timeout):
                raise RuntimeError("mock upstream printed nothing in time")
        line = process.stdout.readline()
        if not line.startswith(MOCK_BANNER):
            raise RuntimeError(f"mock upstream failed to start: {line!r}")
        yield line[len(MOCK_BANNER):].strip(), process
    finally:
        _stop(process)
        if process.stdout is not None:
            process.stdout.close()


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ProxyProcess:
    """A running ``twistd -n genaiproxy`` and the log lines it printed."""

    def __init__(self, process: subprocess.Popen[str], workdir: Path) -> None:
        self.process = process
        self.workdir = workdir
        self.url = ""
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log events printed so far (optionally only those named C{name})."""
        parsed = []
        for line in list(self.lines):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                parsed.append(event)
        return parsed

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until C{predicate()} is true-ish (re-checked on each new line)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out; log so far:\n" + "\n".join(self.lines[-40:]))
                self._changed.wait(min(remaining, 0.2))

    def wait_for_event(self, name: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """The first log event named C{name} whose fields match C{fields}."""
        def find() -> dict[str, Any] | None:
            for event in self.events(name):
                if all(event.get(k) == v for k, v in fields.items()):
                    return event
            return None
        return self.wait_for(find, timeout)

    def stop(self) -> int:
        _stop(self.process)
        self._reader.join(timeout=5)
        if not self._reader.is_alive() and self.process.stdout is not None:
            self.process.stdout.close()  # read to its end: closed now, not by the collector
        return self.process.returncode


@contextlib.contextmanager
def run_proxy(
    upstream: str,
    models: str | None = None,
    startup_timeout: float = 20.0,
    preexec: Callable[[], None] | None = None,
    without: tuple[str, ...] = (),
    **settings: str,
) -> Iterator[ProxyProcess]:
    """Run the daemon in front of C{upstream} with extra environment C{settings}.

    C{models} is the text of models.yaml (none written when C{None});
    C{preexec} runs in the child before the daemon starts (resource limits);
    C{without} names variables of L{BASE_ENV} to leave out.
    """
    workdir = Path(tempfile.mkdtemp(prefix="genai-proxy-test-"))
    if models is not None:
        (workdir / "models.yaml").write_text(models)
    env = _clean_environment()
    env.update(BASE_ENV)
    env["GENAI_BASE_URL"] = upstream
    # What the daemon keeps (the limits' state file) stays in its workdir.
    env["XDG_STATE_HOME"] = str(workdir / "state")
    env.update(settings)
    for name in without:
        env.pop(name, None)
    process = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen", "tcp:0:interface=127.0.0.1"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec,
    )
    proxy = ProxyProcess(process, workdir)
    try:
        def port() -> str | None:
            if process.poll() is not None:
                raise RuntimeError("proxy exited:\n" + "\n".join(proxy.lines))
            for line in proxy.lines:
                match = _LISTENING.search(line)
                if match:
                    return match.group(1)
            return None
        proxy.url = f"http://127.0.0.1:{proxy.wait_for(port, startup_timeout)}"
        yield proxy
    finally:
        proxy.stop()


def run_proxy_expecting_failure(
    env: dict[str, str], timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Start the daemon with C{env} (merged over a clean environment) and
    return how it ended; used for start-up errors."""
    full = _clean_environment()
    full.update(env)
    return subprocess.run(
        [TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen", f"tcp:{free_port()}:interface=127.0.0.1"],
        cwd=tempfile.mkdtemp(prefix="genai-proxy-test-"),
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextlib.contextmanager
def run_tinyproxy(basic_auth: tuple[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    """Run Debian's tinyproxy on a free loopback port as a corporate forward
    proxy; yield ``(proxy_url, log_path)``. ``.ci/run`` installs it."""
    binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
    if not os.path.exists(binary):
        raise RuntimeError("tinyproxy is not installed: apt-get install tinyproxy")
    workdir = Path(tempfile.mkdtemp(prefix="genai-tinyproxy-"))
    port = free_port()
    log = workdir / "tinyproxy.log"
    lines = [f"Port {port}", "Listen 127.0.0.1", "Allow 127.0.0.1", "Timeout 600",
             "MaxClients 200", "LogLevel Connect", f"LogFile \"{log}\""]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    (workdir / "tinyproxy.conf").write_text("\n".join(lines) + "\n")
    process = subprocess.Popen([binary, "-d", "-c", str(workdir / "tinyproxy.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError as e:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("tinyproxy did not start") from e
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}", log
    finally:
        _stop(process)


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``check`` until it returns something truthy, or fail."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, "condition not reached in time"
            return result
        time.sleep(0.02)


def upstream_saw(mock_url: str, request_id: str) -> list[dict[str, Any]]:
    """The requests the mock received carrying X-Request-ID C{request_id}."""
    recorded = httpx.get(mock_url + "/_mock/requests").json()
    return [r for r in recorded if r["headers"].get("x-request-id") == [request_id]]


def raw_get(base_url: str, target: str, headers: str = "") -> tuple[int, bytes]:
    """Send a GET with the request target exactly as given (no client-side
    normalisation of dots, slashes or escapes); return status and body."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode()
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body
