"""twistd's own conventions when the proxy runs as a daemon (without -n):
its log file, its pid file, and SIGTERM to that pid."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from support import BASE_ENV, TWISTD, _clean_environment, wait_for


def _events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("logfile", ["proxy.log", None])
def test_daemon_logs_to_its_log_file_and_drains_on_sigterm(tmp_path, mock_url, logfile):
    """Daemonized, the events go (as JSON lines) to --logfile, or to
    twistd.log when none is given; the pid file names the daemon, and SIGTERM
    to it drains and removes the pid file."""
    pidfile = tmp_path / "genai-proxy.pid"
    args = [TWISTD, f"--pidfile={pidfile}"]
    if logfile:
        args.append(f"--logfile={tmp_path / logfile}")
    args += ["genaiproxy", "--listen", "tcp:0:interface=127.0.0.1"]
    env = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": mock_url}
    started = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, started.stderr
    assert started.stdout == "" and started.stderr == ""
    log = tmp_path / (logfile or "twistd.log")
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip()))
    port = wait_for(lambda: log.exists() and re.search(r"ProxySite starting on (\d+)", log.read_text()))
    try:
        response = httpx.post(f"http://127.0.0.1:{port.group(1)}/v1/chat/completions",
                              json={"model": "gpt-4.1", "messages": []}, timeout=30)
        assert response.status_code == 200
        rid = response.headers["x-request-id"]
        wait_for(lambda: any(e.get("event") == "response" and e.get("id") == rid for e in _events(log)))
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pidfile.exists())
    events = _events(log)
    assert events[0]["event"] == "twisted"
    assert {"startup_config", "request", "response", "shutdown_started",
            "shutdown_finished"} <= {e["event"] for e in events}
    assert BASE_ENV["GENAI_API_KEY"] not in log.read_text()


def test_log_destination_follows_twistds_options(tmp_path, monkeypatch):
    """stdout in the foreground or with --logfile=-, a file with --logfile,
    twistd.log when daemonized, syslog with --syslog (priority by level)."""
    import sys
    import syslog

    from genaiproxy.observe.logs import log_stream

    assert log_stream(None) is sys.stdout
    assert log_stream({"nodaemon": True, "logfile": None}) is sys.stdout
    assert log_stream({"nodaemon": True, "logfile": "-"}) is sys.stdout
    named = log_stream({"nodaemon": True, "logfile": str(tmp_path / "x.log")})
    named.write("a\n")
    named.close()  # type: ignore[attr-defined]
    assert (tmp_path / "x.log").read_text() == "a\n"
    monkeypatch.chdir(tmp_path)
    default = log_stream({"nodaemon": False, "logfile": None})
    default.write("b\n")
    default.close()  # type: ignore[attr-defined]
    assert (tmp_path / "twistd.log").read_text() == "b\n"
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(syslog, "openlog", lambda *args: None)
    monkeypatch.setattr(syslog, "syslog", lambda priority, line: sent.append((priority, line)))
    log_stream({"syslog": True, "prefix": "genai"}).write(
        '{"time": "t", "level": "ERROR", "event": "x"}\n{"time": "t", "level": "INFO", "event": "y"}\n'
        "2026-11-26T11:21:06.284Z WARNING models_file_missing /x\n")
    assert [priority for priority, _ in sent] == [syslog.LOG_ERR, syslog.LOG_INFO, syslog.LOG_WARNING]
    assert sent[0][1] == '{"time": "t", "level": "ERROR", "event": "x"}'


def test_port_in_use_when_daemonized_is_reported_not_hung(tmp_path, mock_url):
    """Daemonized, a taken port is reported by twistd's launcher at once
    (its stderr, a non-zero status), and no pid file is left behind."""
    import socket

    pidfile = tmp_path / "genai-proxy.pid"
    env = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": mock_url}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [TWISTD, f"--pidfile={pidfile}", f"--logfile={tmp_path / 'proxy.log'}", "genaiproxy",
             "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr
    wait_for(lambda: not pidfile.exists())
