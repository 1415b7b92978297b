"""The README's first command: the quickstart runs the proxy in front of the mock."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
from support import BIN, _clean_environment, _stop, free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", [["genai-proxy", "quickstart"], ["genai-proxy-quickstart"]])
def test_quickstart_serves_the_mock_reply(command):
    """`genai-proxy quickstart` (and its older name) runs the proxy in front
    of the mock upstream and prints how to try it."""
    workdir = Path(tempfile.mkdtemp(prefix="genai-quickstart-"))
    shutil.copy(REPO / "models.yaml", workdir / "models.yaml")
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / command[0]), *command[1:], "--listen", f"tcp:{port}:interface=127.0.0.1"],
        cwd=workdir, env=_clean_environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 20
        banner = []
        for line in process.stdout:
            banner.append(line)
            if "curl -s" in line and "/v1/models" in line:
                break
            assert time.monotonic() < deadline, "".join(banner)
        assert f"http://127.0.0.1:{port}/v1" in "".join(banner)
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
        assert "gpt-5" in [m["id"] for m in models["data"]]
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                           json={"model": "gpt-4.1", "messages": []}).json()
        sentence = reply["choices"][0]["message"]["content"]
        assert sentence.startswith("Hello from the mock upstream") and sentence.endswith(".")
        # The streamed demo answer is that sentence once, not wrapped around.
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/chat/completions",
                          json={"model": "gpt-4.1", "stream": True, "messages": []}) as stream:
            events = [json.loads(line[6:]) for line in stream.iter_lines()
                      if line.startswith("data: {")]
        streamed = "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"])
        assert streamed == sentence
    finally:
        _stop(process)


def test_banner_port_from_either_strports_form():
    """The banner names the port of `tcp:PORT:...` and of `tcp:port=PORT:...`."""
    from genaiproxy.cli.quickstart import _listen_port

    assert _listen_port(["--listen", "tcp:9000:interface=127.0.0.1"]) == "9000"
    assert _listen_port(["--listen=tcp:port=9001:interface=127.0.0.1"]) == "9001"
    assert _listen_port(["-l", "tcp:interface=127.0.0.1:port=9002"]) == "9002"
    assert _listen_port([]) == "8111"


def test_the_command_line_explains_itself():
    """`genai-proxy --help` lists the sub-commands, `--version` prints the
    version, and a missing or unknown command is a usage error (status 2)."""
    run = [str(BIN / "genai-proxy")]
    helped = subprocess.run([*run, "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0
    assert all(name in helped.stdout for name in ("quickstart", "doctor", "configure"))
    version = subprocess.run([*run, "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("genai-proxy ")
    for wrong in ([], ["frobnicate"]):
        refused = subprocess.run([*run, *wrong], capture_output=True, text=True, timeout=30)
        assert refused.returncode == 2, refused
        assert "genai-proxy:" in refused.stderr and "Traceback" not in refused.stderr
