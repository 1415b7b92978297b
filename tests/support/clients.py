"""The real clients' shared set-up (tests/integration/test_real_clients.py,
test_configure_clients.py, test_configure.py, test_open_webui.py): where the
clients are installed, the scratch environment every client runs in, running
one to completion, and checking that it printed the mock's reply; Claude
Code's environment and command line, headless.

The clients come from ``tests/clients/package.json`` and its lock; install
them with ``npm install --prefix tests/clients`` (``.ci/run`` does).  A missing
install fails a test with that instruction rather than skipping it.

Nothing may leave the machine: each client gets a scratch HOME and config
that turn off update checks, telemetry and downloads, and every proxy
variable points at a closed loopback port (with NO_PROXY for the daemon
itself), so a stray attempt to reach the internet fails at once instead of
hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from genaiproxy.mock.payloads import DEFAULT_EMBEDDING_MODEL
from support import ProxyProcess, free_port

CLIENTS = Path(__file__).resolve().parents[1] / "clients"
NODE_MODULES = CLIENTS / "node_modules"
REPLY = "Hello from the mock upstream."
TOKEN = "real-clients-token-0123456789"
TIMEOUT = 120.0
PROMPT = "Say hello"

MODELS_YAML = """\
models:
  - id: gpt-4.1
    owned_by: genai
  - id: gpt-5
"""

# Variables of the test process that would steer a client elsewhere.
_DROPPED = ("OPENAI_", "CODEX_", "OPENCODE_", "XDG_", "NODE_OPTIONS", "NPM_CONFIG_", "npm_",
            "ANTHROPIC_", "CLAUDE", "GENAI_PROXY_TOKEN")


def installed(relative: str) -> str:
    """The path of C{relative} under tests/clients/node_modules; fail with the
    install command when it is missing."""
    path = NODE_MODULES / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: install the real clients first with\n"
                    f"    npm install --prefix {CLIENTS}", pytrace=False)
    return str(path)


def client_env(home: Path, **extra: str) -> dict[str, str]:
    """A scratch environment: own HOME/XDG dirs, no user settings, and every
    proxy variable pointing at a closed loopback port except for loopback."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.upper().endswith("_PROXY") and not k.startswith(_DROPPED)
    }
    for sub in ("config", "data", "cache", "state"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    dead = f"http://127.0.0.1:{free_port()}"
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_STATE_HOME": str(home / "state"),
        "NO_COLOR": "1",
        "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "ALL_PROXY": dead,
        "http_proxy": dead, "https_proxy": dead, "all_proxy": dead,
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    env.update(extra)
    return env


def run_client(argv: list[str], env: dict[str, str], cwd: Path, proxy: ProxyProcess,
               timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run a client to completion (killing its whole process group after
    C{timeout}); fail with its output and the proxy's log if it exits non-zero."""
    started = time.monotonic()
    # PWD too: opencode takes its project directory from it, not from getcwd().
    env = dict(env, PWD=str(cwd))
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    timed_out = False
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    result = subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)
    elapsed = time.monotonic() - started
    if timed_out or result.returncode != 0:
        what = f"timed out after {timeout:.0f} s" if timed_out else f"exited {result.returncode}"
        pytest.fail(_report(f"{Path(argv[0]).name} {what} ({elapsed:.1f} s)", result, proxy),
                    pytrace=False)
    return result


def _report(headline: str, result: subprocess.CompletedProcess[str], proxy: ProxyProcess) -> str:
    def tail(text: str, limit: int = 6000) -> str:
        return text if len(text) <= limit else "[...]\n" + text[-limit:]
    parts = [headline, "command: " + " ".join(map(str, result.args))]
    parts += ["--- stdout ---", tail(result.stdout or ""), "--- stderr ---", tail(result.stderr or ""),
              "--- proxy log (last 25 lines) ---", "\n".join(proxy.lines[-25:])]
    return "\n".join(parts)


def _requests_to(proxy: ProxyProcess, path: str, since: int) -> list[dict]:
    return [e for e in proxy.events("request")[since:] if e.get("path") == path]


def assert_reply(result: subprocess.CompletedProcess[str], proxy: ProxyProcess,
                 path: str, since: int) -> None:
    """The client printed exactly the mock's reply, and went through C{path}."""
    if result.stdout.strip() != REPLY:
        pytest.fail(_report(f"{Path(result.args[0]).name} did not print just the mock's reply {REPLY!r}",
                            result, proxy), pytrace=False)
    try:
        proxy.wait_for(lambda: _requests_to(proxy, path, since), timeout=5)
    except AssertionError:
        pytest.fail(_report(f"the proxy logged no request to {path}", result, proxy), pytrace=False)


# --- Codex CLI and opencode ---------------------------------------------------------

def codex_exec_argv(codex: str) -> list[str]:
    """C{codex exec} of PROMPT, headless, with a config that must be all known keys."""
    return [codex, "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral",
            "--sandbox", "read-only", "--color", "never", PROMPT]


def opencode_env(home: Path, **extra: str) -> dict[str, str]:
    """L{client_env} for opencode: no downloads, updates, sharing or plugins."""
    return client_env(
        home,
        OPENCODE_DISABLE_MODELS_FETCH="1",  # no models.dev catalogue download
        OPENCODE_DISABLE_AUTOUPDATE="1",
        OPENCODE_DISABLE_SHARE="1",
        OPENCODE_DISABLE_LSP_DOWNLOAD="1",
        OPENCODE_DISABLE_DEFAULT_PLUGINS="1",
        OPENCODE_DISABLE_CLAUDE_CODE="1",
        OPENCODE_DISABLE_EXTERNAL_SKILLS="1",
        **extra,
    )


def opencode_config_dir(home: Path) -> Path:
    """opencode's global config directory under C{home} (as L{client_env}
    sets XDG_CONFIG_HOME), made ready to hold its opencode.json."""
    config_dir = home / "config" / "opencode"
    config_dir.mkdir(parents=True, exist_ok=True)
    # opencode npm-installs @opencode-ai/plugin into every config directory
    # (in the background, from the registry) unless the directory already is
    # an installed npm project whose lock lists it: make it one, backed by the
    # packages installed in tests/clients.
    for name in ("package.json", "package-lock.json"):
        shutil.copy(CLIENTS / name, config_dir / name)
    (config_dir / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return config_dir


# --- Claude Code --------------------------------------------------------------------

# What Claude Code is told to ask for when its environment is set by hand:
# a model id of MODELS_YAML for every one of its roles.
CLAUDE_MODEL = "gpt-4.1"


def claude_argv(prompt: str = PROMPT) -> list[str]:
    """C{claude -p PROMPT}: one headless turn (print the answer, exit),
    allowed to run Bash without asking."""
    return [installed(".bin/claude"), "-p", prompt, "--allowedTools", "Bash"]


def claude_env(home: Path, base_url: str | None, **extra: str) -> dict[str, str]:
    """L{client_env} for Claude Code: a fresh HOME (so no login, settings or
    history of the user's), and nothing but loopback: no telemetry, error
    reports, update checks or other traffic besides the API calls, which
    were measured to be C{POST /v1/messages?beta=true} and nothing else.

    With C{base_url} (the proxy's root, without C{/v1}: Claude Code adds
    it), the connection is set by hand: C{ANTHROPIC_BASE_URL}, the token
    L{TOKEN} as C{ANTHROPIC_AUTH_TOKEN} (sent as C{Authorization: Bearer}),
    and L{CLAUDE_MODEL} for every model role.  With C{None}, none of these
    is set: Claude Code must find them in C{HOME/.claude/settings.json}, as
    C{genai-proxy configure claude-code} writes it, whose C{apiKeyHelper}
    prints C{GENAI_PROXY_TOKEN} (set to L{TOKEN} here).  C{extra} is set
    last (C{CLAUDE_CODE_MAX_RETRIES}, say: Claude Code retries a 5xx up to
    10 times with backoff)."""
    env = client_env(
        home,
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        DISABLE_TELEMETRY="1",
        DISABLE_ERROR_REPORTING="1",
        DISABLE_AUTOUPDATER="1",
        GENAI_PROXY_TOKEN=TOKEN,
    )
    if base_url is not None:
        env.update({
            "ANTHROPIC_BASE_URL": base_url,
            "ANTHROPIC_AUTH_TOKEN": TOKEN,
            "ANTHROPIC_MODEL": CLAUDE_MODEL,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": CLAUDE_MODEL,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": CLAUDE_MODEL,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": CLAUDE_MODEL,
            # A window for the model id it does not know (else it assumes
            # 1M tokens, and says so on stderr).
            "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "128000",
        })
    env.update(extra)
    return env


@dataclass(frozen=True)
class Recorded:
    """One request L{recording_server} received."""

    method: str
    path: str
    headers: dict[str, str]  # by lower-case name
    body: Any  # the JSON body, or None


@contextlib.contextmanager
def recording_server(status: int = 400) -> Iterator[tuple[str, list[Recorded]]]:
    """A loopback HTTP server that records every request and answers each
    with C{status} and an Anthropic error document (a 400 is not retried
    by Claude Code); yields its root URL and the list it records into.
    To see what a client sends, without the proxy."""
    records: list[Recorded] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            records.append(Recorded(self.command, self.path,
                                    {k.lower(): v for k, v in self.headers.items()}, body))
            data = json.dumps({"type": "error", "error": {
                "type": "invalid_request_error", "message": "recorded"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", records
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- Open WebUI ---------------------------------------------------------------------

# Variables of the test process that would change how Open WebUI runs.
_OPEN_WEBUI_DROPPED = ("WEBUI_", "RAG_", "ENABLE_", "OLLAMA_", "DATABASE_", "REDIS_", "VECTOR_DB",
                       "CHROMA_", "HF_", "TRANSFORMERS_", "DATA_DIR")


def open_webui_environment(home: Path, data: Path, proxy_v1: str) -> dict[str, str]:
    """Open WebUI's environment: a scratch HOME, its data in C{data}, the
    proxy for chats and embeddings, offline and without telemetry."""
    env = {k: v for k, v in client_env(home).items() if not k.startswith(_OPEN_WEBUI_DROPPED)}
    env.update({
        "DATA_DIR": str(data),
        # No login page: sign-in with any credentials gives the admin user.
        "WEBUI_AUTH": "False",
        "WEBUI_SECRET_KEY": uuid.uuid4().hex,
        "ENABLE_OLLAMA_API": "False",
        "ENABLE_OPENAI_API": "True",
        "OPENAI_API_BASE_URL": proxy_v1,
        "OPENAI_API_KEY": TOKEN,
        "RAG_EMBEDDING_ENGINE": "openai",
        "RAG_OPENAI_API_BASE_URL": proxy_v1,
        "RAG_OPENAI_API_KEY": TOKEN,
        "RAG_EMBEDDING_MODEL": DEFAULT_EMBEDDING_MODEL,
        # Nothing from the internet: no model downloads, update checks,
        # requirement installs or analytics.
        "OFFLINE_MODE": "True",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "ENABLE_VERSION_UPDATE_CHECK": "False",
        "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "False",
        "RAG_RERANKING_MODEL_AUTO_UPDATE": "False",
        "WHISPER_MODEL_AUTO_UPDATE": "False",
        "SCARF_NO_ANALYTICS": "true",
        "DO_NOT_TRACK": "true",
        "ANONYMIZED_TELEMETRY": "False",
        "ENABLE_OTEL": "False",
    })
    return env
