"""`genai-proxy configure claude-code [--model ID] [--small-model ID]`, run as
the installed console script in a scratch HOME: Claude Code's settings.json
merged with the user's, the models chosen from models.yaml with their
limits, the token left to an apiKeyHelper, and the mistakes refused.  The
real Claude Code reads what it wrote in test_configure_clients.py."""

from __future__ import annotations

import json
import subprocess

import pytest
from support.configure import FILES, MODELS, SECRET, backups, configure, files_under

ROLES = ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL")
HAIKU = "ANTHROPIC_DEFAULT_HAIKU_MODEL"


def settings_of(tmp_path) -> dict:
    return json.loads((tmp_path / "home" / FILES["claude-code"]).read_text())


def test_merge_keeps_the_users_settings(tmp_path):
    """Into an existing settings.json: the user's settings and own variables
    stay (ENABLE_TOOL_SEARCH too); the proxy's variables are set; a key, a base URL, a model not in
    models.yaml and a provider switch of the user's are replaced or taken
    out (named in the output, never shown); the original is in a backup;
    a second run changes nothing."""
    mine = {
        "permissions": {"allow": ["Bash(git status)"]},
        "model": "opus",
        "apiKeyHelper": "~/bin/anthropic-key.sh",
        "env": {"MY_TOOL_HOME": "/opt/tool", "ANTHROPIC_AUTH_TOKEN": SECRET,
                "ANTHROPIC_BASE_URL": "https://api.anthropic.com",
                "ANTHROPIC_MODEL": "claude-sonnet-4-5", "CLAUDE_CODE_USE_BEDROCK": "1",
                "ENABLE_TOOL_SEARCH": "true"},
    }
    path = tmp_path / "home" / FILES["claude-code"]
    path.parent.mkdir(parents=True)
    original = json.dumps(mine, indent=4) + "\n"
    path.write_text(original)
    result = configure(tmp_path, "claude-code")
    assert result.returncode == 0, result.stderr
    settings = json.loads(path.read_text())
    assert settings["permissions"] == mine["permissions"] and settings["model"] == "opus"
    env = settings["env"]
    assert env["MY_TOOL_HOME"] == "/opt/tool" and env["ENABLE_TOOL_SEARCH"] == "true"
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8111"
    assert [env[name] for name in (*ROLES, HAIKU)] == ["gpt-4.1"] * 4
    assert "ANTHROPIC_AUTH_TOKEN" not in env and "CLAUDE_CODE_USE_BEDROCK" not in env
    assert settings["apiKeyHelper"] == "printf '%s' \"${GENAI_PROXY_TOKEN:-unused}\""
    output = result.stdout + result.stderr
    for said in ("env.ANTHROPIC_AUTH_TOKEN taken out", "env.CLAUDE_CODE_USE_BEDROCK taken out",
                 "env.ANTHROPIC_MODEL was 'claude-sonnet-4-5'", "apiKeyHelper replaced"):
        assert said in output
    assert SECRET not in output and SECRET not in path.read_text()
    assert path.read_text().startswith('{\n    "permissions"')  # the user's indentation
    assert [b.read_text() for b in backups(path)] == [original]
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    again = configure(tmp_path, "claude-code")
    assert f"{path} unchanged\n" in again.stdout
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before and len(backups(path)) == 1


def test_models_chosen_are_kept_by_later_runs(tmp_path):
    """--model sets the main model (Opus and Sonnet too) and --small-model
    Haiku, a hidden id included; a later run without them keeps that
    choice, and changes nothing.  A model without limits in models.yaml
    gets none written, and the output says that Claude Code will assume a
    window of 1M tokens."""
    result = configure(tmp_path, "claude-code", "--model", "gpt-5",
                       "--small-model", "internal-router")
    assert result.returncode == 0, result.stderr
    env = settings_of(tmp_path)["env"]
    assert [env[name] for name in ROLES] == ["gpt-5"] * 3 and env[HAIKU] == "internal-router"
    assert "CLAUDE_CODE_MAX_OUTPUT_TOKENS" not in env
    assert "CLAUDE_CODE_MAX_CONTEXT_TOKENS" not in env
    assert "models.yaml gives 'gpt-5' no context_window" in result.stdout
    again = configure(tmp_path, "claude-code")
    assert "unchanged" in again.stdout and settings_of(tmp_path)["env"] == env


def test_limits_come_from_the_main_models_entry(tmp_path):
    """CLAUDE_CODE_MAX_OUTPUT_TOKENS and CLAUDE_CODE_MAX_CONTEXT_TOKENS are
    the main model's max_output_tokens and context_window (not the small
    model's); moving to a model without them keeps the values and says so."""
    models = ("models:\n  - id: big\n    max_output_tokens: 32000\n    context_window: 400000\n"
              "  - id: small\n    max_output_tokens: 4096\n    context_window: 16000\n"
              "  - id: plain\n")
    result = configure(tmp_path, "claude-code", "--small-model", "small", models=models)
    assert result.returncode == 0, result.stderr
    env = settings_of(tmp_path)["env"]
    assert (env["ANTHROPIC_MODEL"], env[HAIKU]) == ("big", "small")
    assert (env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"], env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"]) == (
        "32000", "400000")
    moved = configure(tmp_path, "claude-code", "--model", "plain", models=models)
    assert moved.returncode == 0, moved.stderr
    env = settings_of(tmp_path)["env"]
    assert env["ANTHROPIC_MODEL"] == "plain" and env["CLAUDE_CODE_MAX_CONTEXT_TOKENS"] == "400000"
    assert "env.CLAUDE_CODE_MAX_CONTEXT_TOKENS='400000' kept" in moved.stdout


@pytest.mark.parametrize("args, message", [
    (["--model", "gpt-6"], "--model 'gpt-6' is not a model id of"),
    (["--small-model", "tiny"], "--small-model 'tiny' is not a model id of"),
])
def test_a_model_not_in_models_yaml_is_refused(tmp_path, args, message):
    """A --model or --small-model that models.yaml does not have: exit 1,
    a message naming the file and the ids it has, nothing written."""
    result = configure(tmp_path, "claude-code", *args)
    assert result.returncode == 1
    assert message in result.stderr and "gpt-4.1, gpt-5, internal-router" in result.stderr
    assert str(tmp_path / "work" / "models.yaml") in result.stderr
    assert "Traceback" not in result.stderr and files_under(tmp_path / "home") == {}


def test_model_options_are_for_claude_code_only(tmp_path):
    """--model given to another client is a usage error (exit 2)."""
    result = configure(tmp_path, "codex", "--model", "gpt-5")
    assert result.returncode == 2 and "--model is for claude-code only" in result.stderr
    assert files_under(tmp_path / "home") == {}


@pytest.mark.parametrize("value", ["-1", "0", "1.5", "8k", "true", "[1]"])
def test_a_bad_token_count_refuses_models_yaml(tmp_path, value):
    """A max_output_tokens or context_window that is not a whole number
    above 0 is a mistake in models.yaml, as the daemon reads it: exit 1,
    the model and the key named, nothing written."""
    for key in ("max_output_tokens", "context_window"):
        models = MODELS.replace("  - id: gpt-5\n", f"  - id: gpt-5\n    {key}: {value}\n")
        result = configure(tmp_path, "claude-code", models=models)
        assert result.returncode == 1
        assert f"model 'gpt-5': {key} must be a whole number" in result.stderr
        assert "Traceback" not in result.stderr and files_under(tmp_path / "home") == {}


def _run_helper(tmp_path, **env: str) -> subprocess.CompletedProcess[str]:
    helper = settings_of(tmp_path)["apiKeyHelper"]
    return subprocess.run(["/bin/sh", "-c", helper], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=10)


def test_the_key_helper_prints_the_token(tmp_path):
    """With AUTH_TOKEN, the file holds no token: its apiKeyHelper prints
    GENAI_PROXY_TOKEN, and fails with a message naming it when it is unset
    (Claude Code shows the message).  Without AUTH_TOKEN, it prints any
    value, 'unused' when the variable is unset."""
    result = configure(tmp_path, "claude-code", AUTH_TOKEN=SECRET)
    assert result.returncode == 0, result.stderr
    assert 'export GENAI_PROXY_TOKEN="$AUTH_TOKEN"' in result.stdout
    assert SECRET not in (tmp_path / "home" / FILES["claude-code"]).read_text()
    assert _run_helper(tmp_path, GENAI_PROXY_TOKEN=SECRET).stdout == SECRET
    unset = _run_helper(tmp_path)
    assert unset.returncode != 0 and "GENAI_PROXY_TOKEN" in unset.stderr and unset.stdout == ""
    assert configure(tmp_path, "claude-code").returncode == 0  # the proxy wants no token now
    assert _run_helper(tmp_path).stdout == "unused"
    assert _run_helper(tmp_path, GENAI_PROXY_TOKEN="anything").stdout == "anything"
