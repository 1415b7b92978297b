"""Running `genai-proxy configure CLIENT` in a scratch HOME, and reading what
it wrote: shared by tests/integration/test_configure.py,
test_configure_tokens.py and test_configure_clients.py."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import tomlkit

from support import BIN
from support.clients import client_env

GENAI_PROXY = str(BIN / "genai-proxy")
URL = "http://127.0.0.1:8111/v1"
SECRET = "configure-secret-token-5150"
MODELS = """\
models:
  - id: gpt-4.1
    max_output_tokens: 16384
    context_window: 128000
  - id: gpt-5
  - id: internal-router
    hidden: true
  - id: text-embedding-3-large
"""
VISIBLE = ["gpt-4.1", "gpt-5", "text-embedding-3-large"]
CLIENT_NAMES = ["codex", "opencode", "vscode", "open-webui", "openai-env", "claude-code"]
# Where each client's file is with client_env's XDG_CONFIG_HOME (HOME/config)
# and CODEX_HOME and CLAUDE_CONFIG_DIR unset.
FILES = {
    "codex": ".codex/config.toml",
    "opencode": "config/opencode/opencode.json",
    "vscode": "config/Code/User/settings.json",
    "open-webui": "config/genai-proxy/open-webui.env",
    "openai-env": "config/genai-proxy/openai.env",
    "claude-code": ".claude/settings.json",
}
# The proxy settings that give configure a token to write or reference.
AUTH_SETTINGS = ("AUTH_TOKEN", "AUTH_TOKEN_FILE", "AUTH_TOKENS_FILE", "CREDENTIALS_DIRECTORY")


def configure(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
              models: str | None = MODELS, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run `genai-proxy configure ARGS` in C{tmp_path}/work, with C{models}
    as its models.yaml (none when C{None}), HOME C{tmp_path}/home and
    C{settings}."""
    work = tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    if models is None:
        (work / "models.yaml").unlink(missing_ok=True)
    else:
        (work / "models.yaml").write_text(models)
    if env is None:
        env = {k: v for k, v in client_env(tmp_path / "home").items() if k not in AUTH_SETTINGS}
        env.pop("CODEX_HOME", None)
    env.update(settings)
    return subprocess.run([GENAI_PROXY, "configure", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)


def toml(text: str) -> dict:
    """C{text} read as TOML, as plain dicts and lists."""
    return tomlkit.loads(text).unwrap()


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under C{root}, by its relative path, with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def env_values(text: str) -> dict[str, str]:
    """The C{NAME=value} (or C{export NAME=value}) lines of an env file."""
    pairs = re.findall(r"^(?:export )?([A-Z_]+)=(.*)$", text, re.MULTILINE)
    return dict(pairs)


def backups(path: Path) -> list[Path]:
    """The backups configure made of C{path}, oldest first."""
    return sorted(path.parent.glob(path.name + ".*.bak"))
