"""The real clients people point at the daemon, run as processes against it.

Each client talks to a proxy (with AUTH_TOKEN set) in front of the session's
mock upstream, on loopback only:

* the openai Node SDK (``tests/clients/openai_stream.mjs``), streaming;
* Codex CLI (``@openai/codex``): ``codex exec`` with a custom model provider,
  which speaks only the Responses API (``POST /v1/responses``, SSE);
* opencode (``opencode-ai``): ``opencode run`` with an
  ``@ai-sdk/openai-compatible`` provider, which streams chat completions.

They come from ``tests/clients/package.json`` and its lock; install them with
``npm install --prefix tests/clients`` (``.ci/run`` does).  A missing install
fails these tests with that instruction rather than skipping them.

Nothing here may leave the machine: each client gets a scratch HOME and config
that turn off update checks, telemetry and downloads, and every proxy variable
points at a closed loopback port (with NO_PROXY for the daemon itself), so a
stray attempt to reach the internet fails at once instead of hanging.
That set-up, which the other real clients' tests share, is in
tests/support/clients.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from support import ProxyProcess, run_proxy
from support.clients import (
    CLIENTS,
    MODELS_YAML,
    PROMPT,
    REPLY,
    TOKEN,
    assert_reply,
    client_env,
    codex_exec_argv,
    installed,
    opencode_config_dir,
    opencode_env,
    run_client,
)


@pytest.fixture(scope="module")
def guarded_proxy(mock_url: str):
    """The daemon in front of the session's mock, requiring TOKEN."""
    with run_proxy(mock_url, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as running:
        yield running


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH (Node.js 20 or later is needed for tests/clients)")
    return node


def _fill(template: str, proxy: ProxyProcess) -> str:
    return (CLIENTS / template).read_text().replace("@PROXY_V1_URL@", proxy.url + "/v1")


# --- the openai Node SDK ---------------------------------------------------------

@pytest.mark.parametrize("api, path", [
    ("chat", "/v1/chat/completions"),
    ("responses", "/v1/responses"),
])
def test_openai_node_sdk_streams(guarded_proxy, tmp_path, api, path):
    installed("openai/package.json")
    env = client_env(tmp_path / "home", OPENAI_BASE_URL=guarded_proxy.url + "/v1",
                     OPENAI_API_KEY=TOKEN, MODEL="gpt-4.1")
    since = len(guarded_proxy.events("request"))
    result = run_client([_node(), str(CLIENTS / "openai_stream.mjs"), api], env, tmp_path, guarded_proxy,
                        timeout=60)
    assert_reply(result, guarded_proxy, path, since)


@pytest.mark.parametrize("asks", [False, True])
def test_openai_node_sdk_gets_the_usage_it_asked_for(guarded_proxy, tmp_path, asks):
    """The Node SDK sees a usage chunk only when it asked for one (the proxy
    asks the upstream either way, and logs the usage on streaming_end)."""
    installed("openai/package.json")
    env = client_env(tmp_path / "home", OPENAI_BASE_URL=guarded_proxy.url + "/v1",
                     OPENAI_API_KEY=TOKEN, MODEL="gpt-4.1", REPORT_USAGE="1",
                     INCLUDE_USAGE="1" if asks else "0")
    since = len(guarded_proxy.events("streaming_end"))
    result = run_client([_node(), str(CLIENTS / "openai_stream.mjs"), "chat"], env, tmp_path,
                        guarded_proxy, timeout=60)
    text, report = result.stdout.splitlines()
    assert text == REPLY
    seen = json.loads(report)
    ends = guarded_proxy.wait_for(lambda: guarded_proxy.events("streaming_end")[since:])
    logged = ends[0]["usage"]
    if asks:
        assert seen["usage_chunks"] == 1
        assert {"input": seen["usage"]["prompt_tokens"],
                "output": seen["usage"]["completion_tokens"]} == logged
    else:
        assert seen == {"usage_chunks": 0, "usage": None}
        assert logged["input"] == 2 and logged["output"] == len(REPLY.split())


# --- Codex CLI --------------------------------------------------------------------

def test_codex_exec(guarded_proxy, tmp_path):
    codex = installed(".bin/codex")
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(_fill("codex.template.toml", guarded_proxy))
    work = tmp_path / "work"  # not a git repository: --skip-git-repo-check
    work.mkdir()
    env = client_env(tmp_path / "home", CODEX_HOME=str(codex_home), GENAI_PROXY_TOKEN=TOKEN)
    since = len(guarded_proxy.events("request"))
    result = run_client(codex_exec_argv(codex), env, work, guarded_proxy)
    assert_reply(result, guarded_proxy, "/v1/responses", since)



# --- opencode ---------------------------------------------------------------------

def test_opencode_run(guarded_proxy, tmp_path):
    opencode = installed(".bin/opencode")
    home = tmp_path / "home"
    env = opencode_env(home, GENAI_PROXY_TOKEN=TOKEN)
    config_dir = opencode_config_dir(home)
    (config_dir / "opencode.json").write_text(_fill("opencode.template.json", guarded_proxy))
    work = tmp_path / "work"
    work.mkdir()
    since = len(guarded_proxy.events("request"))
    result = run_client([opencode, "run", PROMPT], env, work, guarded_proxy)
    assert_reply(result, guarded_proxy, "/v1/chat/completions", since)
