"""`genai-proxy configure CLIENT`: where tokens go (and never go), and
bad input (an unknown client, a file it cannot parse, bad settings, no
models), run as the installed console script in a scratch HOME."""

from __future__ import annotations

import json
import stat
import subprocess

import pytest
from support.configure import (
    CLIENT_NAMES,
    FILES,
    SECRET,
    URL,
    backups,
    configure,
    env_values,
    files_under,
    toml,
)

# --- tokens --------------------------------------------------------------------------

def test_token_is_never_written_or_printed_but_where_it_must_be(tmp_path):
    """With AUTH_TOKEN set, no client's file, backup or output holds it but
    Open WebUI's env file, which needs the value: mode 0600, as is its
    backup.  The others reference GENAI_PROXY_TOKEN, and the output says to
    export it from AUTH_TOKEN, without showing it."""
    home = tmp_path / "home"
    outputs = []
    for client in CLIENT_NAMES:
        for args in ([client], [client, "--print"]):
            result = configure(tmp_path, *args, AUTH_TOKEN=SECRET)
            assert result.returncode == 0, result.stderr
            outputs.append(result.stdout + result.stderr)
    # A rotated token: Open WebUI's file changes, and is backed up.
    assert configure(tmp_path, "open-webui", AUTH_TOKEN=SECRET + "-new").returncode == 0
    assert not any(SECRET in output for output in outputs)
    assert 'export GENAI_PROXY_TOKEN="$AUTH_TOKEN"' in outputs[0]
    holding = {name for name, data in files_under(home).items() if SECRET.encode() in data}
    webui = home / FILES["open-webui"]
    [backup] = backups(webui)
    assert holding == {str(p.relative_to(home)) for p in (webui, backup)}
    for path in (webui, backup):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert env_values(webui.read_text())["OPENAI_API_KEY"] == SECRET + "-new"
    assert json.loads((home / FILES["vscode"]).read_text())[
        "github.copilot.chat.customOAIModels"]["gpt-5"]["requiresAPIKey"] is True


def test_token_from_files(tmp_path):
    """AUTH_TOKEN_FILE: the output says to export the file's content, by
    its path.  AUTH_TOKENS_FILE: Open WebUI gets the token named
    'open-webui'; without one, a placeholder and a note."""
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "\n")
    result = configure(tmp_path, "codex", AUTH_TOKEN_FILE=str(token_file))
    assert f'export GENAI_PROXY_TOKEN="$(cat {token_file})"' in result.stdout
    assert SECRET not in result.stdout + result.stderr
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"alice: {SECRET}-alice\nopen-webui: {SECRET}-webui\n")
    result = configure(tmp_path, "open-webui", AUTH_TOKENS_FILE=str(tokens))
    assert result.returncode == 0 and SECRET not in result.stdout + result.stderr
    path = tmp_path / "home" / FILES["open-webui"]
    assert env_values(path.read_text())["RAG_OPENAI_API_KEY"] == SECRET + "-webui"
    tokens.write_text(f"alice: {SECRET}-alice\n")
    other = tmp_path / "other"
    result = configure(other, "open-webui", AUTH_TOKENS_FILE=str(tokens))
    written = (other / "home" / FILES["open-webui"]).read_text()
    assert env_values(written)["OPENAI_API_KEY"] == "<a token of AUTH_TOKENS_FILE>"
    assert f"a token of AUTH_TOKENS_FILE {tokens}" in result.stdout and SECRET not in written


# Tokens a shell or systemd's EnvironmentFile= would read differently if
# written as they are: expansion, word splitting, quotes, escapes, globbing,
# tilde expansion, command substitution, a comment after a space.
AWKWARD_TOKENS = ["a b", "pa$$word", "$HOME", "x #y", "it's", 'say "hi"', "back\\slash",
                  "`id`", "$(id)", "~root", "a;b&c|d", "<in>out", "*?[ab]", "tab\there",
                  "é-latin-1", "!bang", "ab#cd"]


@pytest.mark.parametrize("shell", ["bash", "sh"])
def test_open_webui_file_gives_any_token_to_a_shell_as_it_is(tmp_path, shell):
    """Whatever characters the token holds, `set -a; . FILE` in a POSIX
    shell (bash, and Debian's sh: dash) sets OPENAI_API_KEY and
    RAG_OPENAI_API_KEY to the token itself; one of letters, digits and
    -_.:/+=@%,# is written as it is, which docker and podman --env-file
    (that take a value as written, quotes included) read the same."""
    for number, token in enumerate(AWKWARD_TOKENS):
        home = tmp_path / str(number)
        result = configure(home, "open-webui", AUTH_TOKEN=token)
        assert result.returncode == 0, result.stderr
        path = home / "home" / FILES["open-webui"]
        sourced = subprocess.run(
            [shell, "-c", 'set -a; . "$1"; set +a; printf "%s\\n%s" "$OPENAI_API_KEY" '
             '"$RAG_OPENAI_API_KEY"', shell, str(path)],
            capture_output=True, text=True, timeout=30, env={"PATH": "/usr/bin:/bin", "HOME": "/"})
        assert sourced.returncode == 0 and sourced.stderr == "", (token, sourced.stderr)
        assert sourced.stdout == f"{token}\n{token}", (token, path.read_text())
        if token == "ab#cd":
            assert env_values(path.read_text())["OPENAI_API_KEY"] == token
        else:
            assert "docker" in result.stdout and "--env-file" in result.stdout


# --- bad input -----------------------------------------------------------------------

def test_unknown_client_is_a_usage_error(tmp_path):
    """An unknown client: exit 2, the usage and the clients there are."""
    result = configure(tmp_path, "emacs")
    assert result.returncode == 2
    assert "unknown client 'emacs'" in result.stderr and "--print" in result.stderr
    assert "codex, opencode, open-webui, vscode, openai-env" in result.stderr


@pytest.mark.parametrize("client, broken", [
    ("codex", 'model = "gpt-5"\n[model_providers.ollama\nname = "x"\n'),
    ("opencode", '{\n  // my comment\n  "theme": "x",\n}\n'),
    ("vscode", '{\n    // VS Code allows comments\n    "editor.fontSize": 14,\n}\n'),
    ("claude-code", '{\n  // my settings\n  "model": "opus",\n}\n'),
])
def test_unparsable_file_is_left_untouched(tmp_path, client, broken):
    """A file that does not parse (TOML error; JSON with comments): exit 1,
    a message naming it, no traceback, the file and its mtime as they were,
    no backup; for JSON, the snippet to paste by hand on stdout."""
    path = tmp_path / "home" / FILES[client]
    path.parent.mkdir(parents=True)
    path.write_text(broken)
    mtime = path.stat().st_mtime_ns
    result = configure(tmp_path, client)
    assert result.returncode == 1
    assert str(path) in result.stderr and "Traceback" not in result.stderr
    assert path.read_text() == broken and path.stat().st_mtime_ns == mtime
    assert list(files_under(tmp_path / "home")) == [FILES[client]]
    if client != "codex":
        assert URL.removesuffix("/v1") in result.stdout and "not plain JSON" in result.stderr


def test_bad_settings_are_errors(tmp_path):
    """Settings the daemon would refuse, or a --models that is missing:
    exit 1 with the daemon's message, nothing written."""
    both = configure(tmp_path, "codex", AUTH_TOKEN=SECRET, AUTH_TOKEN_FILE="/nonexistent")
    assert both.returncode == 1 and "AUTH_TOKEN and AUTH_TOKEN_FILE are both set" in both.stderr
    missing = configure(tmp_path, "vscode", "--models", "nope.yaml")
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr
    for result in (both, missing):
        assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert files_under(tmp_path / "home") == {}


def test_no_models(tmp_path):
    """Without ./models.yaml, codex is set up without a model (and told),
    while opencode, VS Code and Claude Code, whose configurations name the
    models, are errors naming the file looked at."""
    result = configure(tmp_path, "codex", models="models: []\n")
    assert result.returncode == 0 and "no models" in result.stdout
    assert "model" not in toml((tmp_path / "home" / FILES["codex"]).read_text())
    for client in ("opencode", "vscode", "claude-code"):
        result = configure(tmp_path, client, models=None)
        assert result.returncode == 1
        assert f"no models.yaml at {tmp_path / 'work' / 'models.yaml'}" in result.stderr
