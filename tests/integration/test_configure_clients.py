"""The real clients with what `genai-proxy configure` wrote: Codex CLI and
opencode talk to a proxy with AUTH_TOKEN in front of the mock upstream, as
tests/test_real_clients.py runs them with its templates; Open WebUI's env
file is checked against what tests/test_open_webui.py runs it with; Claude
Code, with only its settings.json and GENAI_PROXY_TOKEN, sends its request
where and as configure said."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import tomlkit
from support import run_proxy
from support.clients import (
    CLIENTS,
    MODELS_YAML,
    PROMPT,
    TOKEN,
    assert_reply,
    claude_argv,
    claude_env,
    client_env,
    codex_exec_argv,
    installed,
    open_webui_environment,
    opencode_config_dir,
    opencode_env,
    recording_server,
    run_client,
)
from support.configure import FILES, configure, env_values, toml

# --- the real clients, with what configure wrote --------------------------------------

@pytest.fixture(scope="module")
def configured_proxy(mock_url: str):
    """The daemon in front of the session's mock, requiring TOKEN."""
    with run_proxy(mock_url, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as running:
        yield running


def _configure_for(proxy, tmp_path: Path, client: str, env: dict[str, str]) -> str:
    """configure CLIENT for C{proxy} (its --listen, its models.yaml, its
    AUTH_TOKEN) in C{env}; the shell line it says to export the token with."""
    port = proxy.url.rsplit(":", 1)[1]
    result = configure(tmp_path, client, "--listen", f"tcp:{port}:interface=127.0.0.1",
                       "--models", str(proxy.workdir / "models.yaml"),
                       env=dict(env, AUTH_TOKEN=TOKEN))
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    [export] = [line.strip() for line in result.stdout.splitlines()
                if line.strip().startswith("export GENAI_PROXY_TOKEN=")]
    return export


def _with_export(export: str, argv: list[str]) -> list[str]:
    """C{argv} run by a shell after C{export}, as the user would."""
    return ["/bin/sh", "-c", f'{export} && exec "$@"', "sh", *argv]


def test_codex_exec_uses_the_configured_file(configured_proxy, tmp_path):
    """Codex CLI, with the config.toml configure merged into (the user's
    offline settings of the suite's template, and their retry tuning of
    the genai provider), answers through the proxy with the token exported
    as configure said; `codex exec --strict-config` accepts every key."""
    codex = installed(".bin/codex")
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    mine = tomlkit.parse((CLIENTS / "codex.template.toml").read_text())
    for key in ("model", "model_provider"):
        del mine[key]
    provider = mine["model_providers"]["genai"]
    for key in ("name", "base_url", "wire_api", "env_key"):
        del provider[key]
    (codex_home / "config.toml").write_text(mine.as_string())
    env = client_env(tmp_path / "home", CODEX_HOME=str(codex_home))
    export = _configure_for(configured_proxy, tmp_path, "codex", env)
    assert toml((codex_home / "config.toml").read_text())[
        "model_providers"]["genai"]["request_max_retries"] == 0
    work = tmp_path / "run"
    work.mkdir()
    since = len(configured_proxy.events("request"))
    result = run_client(_with_export(export, codex_exec_argv(codex)), dict(env, AUTH_TOKEN=TOKEN),
                        work, configured_proxy)
    assert_reply(result, configured_proxy, "/v1/responses", since)


def test_opencode_run_uses_the_configured_file(configured_proxy, tmp_path):
    """opencode, with the opencode.json configure merged into (the user's
    own settings and another provider), answers through the proxy."""
    opencode = installed(".bin/opencode")
    home = tmp_path / "home"
    env = opencode_env(home)
    config_dir = opencode_config_dir(home)
    mine = json.loads((CLIENTS / "opencode.template.json").read_text())
    for key in ("model", "small_model", "provider"):
        del mine[key]
    mine["provider"] = {"elsewhere": {"npm": "@ai-sdk/openai-compatible", "name": "Elsewhere",
                                      "options": {"baseURL": "http://127.0.0.1:9/v1"},
                                      "models": {"other-model": {}}}}
    (config_dir / "opencode.json").write_text(json.dumps(mine, indent=2))
    export = _configure_for(configured_proxy, tmp_path, "opencode", env)
    written = json.loads((config_dir / "opencode.json").read_text())
    assert written["provider"]["elsewhere"] == mine["provider"]["elsewhere"]
    assert written["autoupdate"] is False
    work = tmp_path / "run"
    work.mkdir()
    since = len(configured_proxy.events("request"))
    result = run_client(_with_export(export, [opencode, "run", PROMPT]), dict(env, AUTH_TOKEN=TOKEN),
                        work, configured_proxy)
    assert_reply(result, configured_proxy, "/v1/chat/completions", since)


def test_open_webui_file_is_what_the_open_webui_test_runs(tmp_path):
    """Open WebUI's env file, for a proxy with AUTH_TOKEN, sets each of its
    variables as tests/test_open_webui.py sets it for the real Open WebUI
    it runs against such a proxy (the connection, the key, RAG)."""
    url = "http://127.0.0.1:8111/v1"
    result = configure(tmp_path, "open-webui", models=MODELS_YAML, AUTH_TOKEN=TOKEN)
    assert result.returncode == 0, result.stderr
    written = env_values((tmp_path / "home" / FILES["open-webui"]).read_text())
    tested = open_webui_environment(tmp_path / "webui-home", tmp_path / "data", url)
    assert set(written) <= set(tested)
    assert {name: tested[name] for name in written} == written


def test_claude_code_sends_what_the_configured_file_says(tmp_path):
    """Claude Code, with nothing but the settings.json configure wrote and
    GENAI_PROXY_TOKEN in its environment, sends one request and nothing
    else: POST /v1/messages?beta=true at the --listen address, the token
    from apiKeyHelper as x-api-key and as a bearer token, the first model
    of models.yaml, max_tokens from its max_output_tokens, and every tool
    declared whole (no tool search, which a chat upstream cannot serve)."""
    home = tmp_path / "home"
    env = claude_env(home, None)
    models = "models:\n  - id: gpt-4.1\n    max_output_tokens: 12000\n  - id: gpt-5\n"
    # 500, with no retry: Claude Code sends a request refused with a 400
    # again in other shapes (fewer betas, no tool search).
    env["CLAUDE_CODE_MAX_RETRIES"] = "0"
    with recording_server(500) as (url, records):
        port = url.rsplit(":", 1)[1]
        result = configure(tmp_path, "claude-code", "--listen", f"tcp:{port}:interface=127.0.0.1",
                           env=dict(env), models=models, AUTH_TOKEN=TOKEN)
        assert result.returncode == 0, result.stderr
        work = tmp_path / "run"
        work.mkdir()
        claude = subprocess.run(claude_argv(), cwd=work, env=env, stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
    assert claude.returncode != 0  # the recorder answered 500
    assert [(r.method, r.path) for r in records] == [("POST", "/v1/messages?beta=true")], (
        claude.stdout, claude.stderr)
    [request] = records
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["x-api-key"] == TOKEN
    assert request.body["model"] == "gpt-4.1" and request.body["max_tokens"] == 12000
    assert request.body["stream"] is True
    tools = request.body["tools"]
    assert "Bash" in [tool["name"] for tool in tools] and "ToolSearch" not in str(tools)
    assert not any(tool.get("defer_loading") for tool in tools)
