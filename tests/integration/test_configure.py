"""`genai-proxy configure CLIENT`, run as the installed console script.

Each test gives the command a scratch HOME (and XDG_CONFIG_HOME or
CODEX_HOME, or neither) and looks at what it wrote there: a new file, a
merge into the user's own (kept, backed up, and not touched again on a
second run), or nothing at all with --print.  The real clients run with
what it wrote in tests/test_configure_clients.py.  What these tests share with
those (running the command, reading what it wrote) is in tests/support/configure.py.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from support.clients import client_env
from support.configure import (
    AUTH_SETTINGS,
    CLIENT_NAMES,
    FILES,
    URL,
    VISIBLE,
    backups,
    configure,
    env_values,
    files_under,
    toml,
)

from genaiproxy.cli.configure import client_url


def check_content(client: str, text: str, url: str = URL) -> None:
    """C{text} is a configuration of C{client} for the proxy at C{url}."""
    if client == "codex":
        config = toml(text)
        assert config["model_provider"] == "genai" and config["model"] == "gpt-4.1"
        assert config["model_providers"]["genai"] == {
            "name": "genai-proxy", "base_url": url, "wire_api": "responses",
            "env_key": "GENAI_PROXY_TOKEN"}
    elif client == "opencode":
        config = json.loads(text)
        genai = config["provider"]["genai"]
        assert genai["npm"] == "@ai-sdk/openai-compatible"
        assert genai["options"] == {"baseURL": url, "apiKey": "{env:GENAI_PROXY_TOKEN}"}
        assert list(genai["models"]) == VISIBLE
        assert config["model"] == "genai/gpt-4.1"
    elif client == "vscode":
        models = json.loads(text)["github.copilot.chat.customOAIModels"]
        assert list(models) == VISIBLE
        assert {m["url"] for m in models.values()} == {url}
        assert models["gpt-5"]["name"] == "genai gpt-5" and models["gpt-5"]["toolCalling"] is True
    elif client == "claude-code":
        settings = json.loads(text)
        assert settings["env"] == {
            "ANTHROPIC_BASE_URL": url.removesuffix("/v1"), "ANTHROPIC_MODEL": "gpt-4.1",
            "ANTHROPIC_DEFAULT_OPUS_MODEL": "gpt-4.1", "ANTHROPIC_DEFAULT_SONNET_MODEL": "gpt-4.1",
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gpt-4.1",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "16384", "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "128000",
            "ENABLE_TOOL_SEARCH": "false"}
        assert "$" + "{GENAI_PROXY_TOKEN:" in settings["apiKeyHelper"]
    elif client == "open-webui":
        values = env_values(text)
        assert values["OPENAI_API_BASE_URL"] == values["RAG_OPENAI_API_BASE_URL"] == url
        assert values["RAG_EMBEDDING_ENGINE"] == "openai"
        assert values["RAG_EMBEDDING_MODEL"] == "text-embedding-3-large"  # from models.yaml
    else:
        values = env_values(text)
        assert values["OPENAI_BASE_URL"] == url
        assert values["OPENAI_API_KEY"] == '"${GENAI_PROXY_TOKEN:-unused}"'


# --- writing, printing, where ---------------------------------------------------------

@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_writes_the_clients_file(tmp_path, client):
    """configure CLIENT writes CLIENT's configuration for the proxy at the
    default --listen, with the visible models of ./models.yaml (not the
    hidden one), into the client's own file; its output names the file."""
    result = configure(tmp_path, client)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "home" / FILES[client]
    assert f"wrote {path}\n" in result.stdout
    check_content(client, path.read_text())
    assert "internal-router" not in path.read_text()
    assert list(files_under(tmp_path / "home")) == [FILES[client]]  # no backup of nothing


@pytest.mark.parametrize("client", CLIENT_NAMES)
def test_print_writes_nothing(tmp_path, client):
    """--print (given after the client name) prints the configuration on
    stdout, the notes on stderr, and writes no file."""
    result = configure(tmp_path, client, "--print")
    assert result.returncode == 0, result.stderr
    if client == "vscode":  # the member to paste into settings.json
        check_content(client, "{" + result.stdout + "}")
    else:
        check_content(client, result.stdout)
    assert files_under(tmp_path / "home") == {}
    assert "wrote" not in result.stdout + result.stderr


def test_default_locations(tmp_path):
    """Without XDG_CONFIG_HOME, CODEX_HOME and CLAUDE_CONFIG_DIR the files
    go to ~/.codex, ~/.claude and ~/.config; with CODEX_HOME, codex's goes
    there, and with CLAUDE_CONFIG_DIR, Claude Code's."""
    env = {k: v for k, v in client_env(tmp_path / "home").items()
           if k not in AUTH_SETTINGS and k != "XDG_CONFIG_HOME"}
    for client in CLIENT_NAMES:
        assert configure(tmp_path, client, env=dict(env)).returncode == 0
    home = tmp_path / "home"
    assert {str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()} == {
        ".codex/config.toml", ".config/opencode/opencode.json",
        ".config/Code/User/settings.json", ".config/genai-proxy/open-webui.env",
        ".config/genai-proxy/openai.env", ".claude/settings.json"}
    result = configure(tmp_path, "codex", env=dict(env, CODEX_HOME=str(tmp_path / "codex")))
    assert result.returncode == 0
    check_content("codex", (tmp_path / "codex" / "config.toml").read_text())
    result = configure(tmp_path, "claude-code",
                       env=dict(env, CLAUDE_CONFIG_DIR=str(tmp_path / "claude")))
    assert result.returncode == 0
    check_content("claude-code", (tmp_path / "claude" / "settings.json").read_text())


@pytest.mark.parametrize("listen, url", [
    ("tcp:8111:interface=127.0.0.1", "http://127.0.0.1:8111/v1"),
    ("tcp:9000:interface=0.0.0.0", "http://127.0.0.1:9000/v1"),
    ("tcp:9000", "http://127.0.0.1:9000/v1"),
    ("tcp:port=9001:interface=192.0.2.7", "http://192.0.2.7:9001/v1"),
    ("tcp6:9002:interface=\\:\\:", "http://[::1]:9002/v1"),
    ("tcp6:9002:interface=\\:\\:1", "http://[::1]:9002/v1"),
    ("ssl:8443:privateKey=key.pem:interface=0.0.0.0", "https://127.0.0.1:8443/v1"),
])
def test_url_from_listen(listen, url):
    """--listen is read as the plugin reads it; an all-interfaces address
    is reached on loopback, an ssl: endpoint over https."""
    assert client_url(listen) == url


def test_listen_goes_into_the_file(tmp_path):
    """The --listen given is the address written."""
    result = configure(tmp_path, "codex", "--listen", "tcp:9123:interface=0.0.0.0")
    assert result.returncode == 0, result.stderr
    check_content("codex", (tmp_path / "home" / FILES["codex"]).read_text(),
                  "http://127.0.0.1:9123/v1")


@pytest.mark.parametrize("listen", ["systemd:domain=INET:index=0", "unix:/run/x.sock",
                                    "tcp:0:interface=127.0.0.1"])
def test_listen_without_a_port_clients_can_use(tmp_path, listen):
    """A --listen a client cannot be pointed at is an error (exit 1), with
    what to give instead, and nothing is written."""
    result = configure(tmp_path, "openai-env", "--listen", listen)
    assert result.returncode == 1
    assert "--listen" in result.stderr and "Traceback" not in result.stderr
    assert files_under(tmp_path / "home") == {}


# --- merging with the user's files ---------------------------------------------------

CODEX_MINE = """\
# My Codex settings.
model = "gpt-5"   # the one I like
approval_policy = "on-request"
model_provider = "ollama"

[model_providers.ollama]
name = "Ollama"  # on this laptop
base_url = "http://localhost:11434/v1"

[tui]
notifications = true
"""


def _second_run_changes_nothing(tmp_path: Path, client: str, path: Path, **settings: str) -> None:
    before = (path.read_bytes(), path.stat().st_mtime_ns, backups(path))
    again = configure(tmp_path, client, **settings)
    assert again.returncode == 0, again.stderr
    assert f"{path} unchanged\n" in again.stdout and "wrote" not in again.stdout
    assert (path.read_bytes(), path.stat().st_mtime_ns, backups(path)) == before


def test_codex_merge_keeps_the_users_config(tmp_path):
    """Into an existing config.toml: the user's comments, settings and other
    provider stay as they were written; the genai provider is added and made
    the model_provider (the output says what it was), the user's model is
    kept; the original is in a backup; a second run changes nothing."""
    path = tmp_path / "home" / FILES["codex"]
    path.parent.mkdir(parents=True)
    path.write_text(CODEX_MINE)
    result = configure(tmp_path, "codex")
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    for line in CODEX_MINE.splitlines():
        if line != 'model_provider = "ollama"':
            assert line in text.splitlines()  # comments and formatting kept
    config = toml(text)
    assert config["model"] == "gpt-5" and config["approval_policy"] == "on-request"
    assert config["model_provider"] == "genai"
    assert "model_provider was 'ollama'" in result.stdout
    assert config["model_providers"]["ollama"] == {"name": "Ollama",
                                                   "base_url": "http://localhost:11434/v1"}
    assert config["model_providers"]["genai"]["base_url"] == URL
    assert config["tui"] == {"notifications": True}
    [backup] = backups(path)
    assert backup.read_text() == CODEX_MINE
    assert f"(the previous one is in {backup.name})" in result.stdout
    _second_run_changes_nothing(tmp_path, "codex", path)


def test_opencode_merge_keeps_the_users_config(tmp_path):
    """Into an existing opencode.json: the user's other provider, settings
    and own model options stay; the genai provider is added with the models;
    the default model becomes the proxy's; backup; second run: unchanged."""
    mine = {
        "$schema": "https://opencode.ai/config.json",
        "theme": "tokyonight",
        "model": "ollama/llama3",
        "provider": {
            "ollama": {"npm": "@ai-sdk/openai-compatible",
                       "options": {"baseURL": "http://localhost:11434/v1"},
                       "models": {"llama3": {}}},
            "genai": {"models": {"gpt-5": {"name": "GPT-5 via work",
                                           "limit": {"context": 200000, "output": 8192}}}},
        },
    }
    path = tmp_path / "home" / FILES["opencode"]
    path.parent.mkdir(parents=True)
    original = json.dumps(mine, indent=4) + "\n"
    path.write_text(original)
    result = configure(tmp_path, "opencode")
    assert result.returncode == 0, result.stderr
    config = json.loads(path.read_text())
    assert config["theme"] == "tokyonight"
    assert config["provider"]["ollama"] == mine["provider"]["ollama"]
    genai = config["provider"]["genai"]
    assert genai["options"]["baseURL"] == URL
    assert genai["models"]["gpt-5"] == mine["provider"]["genai"]["models"]["gpt-5"]
    assert list(genai["models"]) == ["gpt-5", "gpt-4.1", "text-embedding-3-large"]
    assert config["model"] == "genai/gpt-4.1"
    assert "model was 'ollama/llama3'" in result.stdout
    assert path.read_text().startswith('{\n    "$schema"')  # the user's indentation
    [backup] = backups(path)
    assert backup.read_text() == original
    _second_run_changes_nothing(tmp_path, "opencode", path)


def test_vscode_merge_keeps_the_users_settings(tmp_path):
    """Into an existing settings.json: other settings and custom models stay,
    the user's tweaks of a proxy model stay (its url is brought up to date)."""
    mine = {
        "editor.fontSize": 14,
        "github.copilot.chat.customOAIModels": {
            "my-own": {"name": "elsewhere", "url": "https://elsewhere.example/v1"},
            "gpt-4.1": {"name": "Work GPT-4.1", "url": "http://127.0.0.1:9999/v1",
                        "maxInputTokens": 64000},
        },
    }
    path = tmp_path / "home" / FILES["vscode"]
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(mine))
    result = configure(tmp_path, "vscode")
    assert result.returncode == 0, result.stderr
    settings = json.loads(path.read_text())
    models = settings["github.copilot.chat.customOAIModels"]
    assert settings["editor.fontSize"] == 14
    assert models["my-own"] == mine["github.copilot.chat.customOAIModels"]["my-own"]
    assert models["gpt-4.1"]["name"] == "Work GPT-4.1" and models["gpt-4.1"]["maxInputTokens"] == 64000
    assert models["gpt-4.1"]["url"] == URL and models["gpt-5"]["url"] == URL
    assert models["gpt-5"]["requiresAPIKey"] is False
    assert [b.read_text() for b in backups(path)] == [json.dumps(mine)]
    _second_run_changes_nothing(tmp_path, "vscode", path)


def test_env_file_merge_keeps_the_users_lines(tmp_path):
    """Into an existing Open WebUI env file: other variables and comments
    stay, the connection's variables are set in place, the user's choices
    (ENABLE_OLLAMA_API, a key when the proxy wants none) are kept."""
    mine = ("# my Open WebUI\nWEBUI_NAME=Team chat\nOPENAI_API_BASE_URL=http://old:1/v1\n"
            "OPENAI_API_KEY=whatever\nENABLE_OLLAMA_API=True\n")
    path = tmp_path / "home" / FILES["open-webui"]
    path.parent.mkdir(parents=True)
    path.write_text(mine)
    result = configure(tmp_path, "open-webui")
    assert result.returncode == 0, result.stderr
    text = path.read_text()
    assert text.startswith("# my Open WebUI\nWEBUI_NAME=Team chat\n"
                           f"OPENAI_API_BASE_URL={URL}\nOPENAI_API_KEY=whatever\n"
                           "ENABLE_OLLAMA_API=True\n")
    check_content("open-webui", text)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    _second_run_changes_nothing(tmp_path, "open-webui", path)


def test_no_file_left_behind(tmp_path):
    """A write leaves only the file and its backup: no temporary file."""
    configure(tmp_path, "codex")
    configure(tmp_path, "codex", "--listen", "tcp:9999")
    names = sorted(os.listdir(tmp_path / "home" / ".codex"))
    assert len(names) == 2 and names[0] == "config.toml" and names[1].endswith(".bak")
