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
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import ProxyProcess, free_port, run_proxy

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
_DROPPED = ("OPENAI_", "CODEX_", "OPENCODE_", "XDG_", "NODE_OPTIONS", "NPM_CONFIG_", "npm_")


@pytest.fixture(scope="module")
def guarded_proxy(mock_url: str):
    """The daemon in front of the session's mock, requiring TOKEN."""
    with run_proxy(mock_url, models=MODELS_YAML, AUTH_TOKEN=TOKEN) as running:
        yield running


def _installed(relative: str) -> str:
    """The path of C{relative} under tests/clients/node_modules; fail with the
    install command when it is missing."""
    path = NODE_MODULES / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: install the real clients first with\n"
                    f"    npm install --prefix {CLIENTS}", pytrace=False)
    return str(path)


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH (Node.js 20 or later is needed for tests/clients)")
    return node


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


def _assert_reply(result: subprocess.CompletedProcess[str], proxy: ProxyProcess,
                  path: str, since: int) -> None:
    """The client printed exactly the mock's reply, and went through C{path}."""
    if result.stdout.strip() != REPLY:
        pytest.fail(_report(f"{Path(result.args[0]).name} did not print just the mock's reply {REPLY!r}",
                            result, proxy), pytrace=False)
    try:
        proxy.wait_for(lambda: _requests_to(proxy, path, since), timeout=5)
    except AssertionError:
        pytest.fail(_report(f"the proxy logged no request to {path}", result, proxy), pytrace=False)


def _fill(template: str, proxy: ProxyProcess) -> str:
    return (CLIENTS / template).read_text().replace("@PROXY_V1_URL@", proxy.url + "/v1")


# --- the openai Node SDK ---------------------------------------------------------

@pytest.mark.parametrize("api, path", [
    ("chat", "/v1/chat/completions"),
    ("responses", "/v1/responses"),
])
def test_openai_node_sdk_streams(guarded_proxy, tmp_path, api, path):
    _installed("openai/package.json")
    env = client_env(tmp_path / "home", OPENAI_BASE_URL=guarded_proxy.url + "/v1",
                     OPENAI_API_KEY=TOKEN, MODEL="gpt-4.1")
    since = len(guarded_proxy.events("request"))
    result = run_client([_node(), str(CLIENTS / "openai_stream.mjs"), api], env, tmp_path, guarded_proxy,
                        timeout=60)
    _assert_reply(result, guarded_proxy, path, since)


@pytest.mark.parametrize("asks", [False, True])
def test_openai_node_sdk_gets_the_usage_it_asked_for(guarded_proxy, tmp_path, asks):
    """The Node SDK sees a usage chunk only when it asked for one (the proxy
    asks the upstream either way, and logs the usage on streaming_end)."""
    _installed("openai/package.json")
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
    codex = _installed(".bin/codex")
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(_fill("codex.template.toml", guarded_proxy))
    work = tmp_path / "work"  # not a git repository: --skip-git-repo-check
    work.mkdir()
    env = client_env(tmp_path / "home", CODEX_HOME=str(codex_home), GENAI_PROXY_TOKEN=TOKEN)
    since = len(guarded_proxy.events("request"))
    result = run_client(codex_exec_argv(codex), env, work, guarded_proxy)
    _assert_reply(result, guarded_proxy, "/v1/responses", since)


def codex_exec_argv(codex: str) -> list[str]:
    """C{codex exec} of PROMPT, headless, with a config that must be all known keys."""
    return [codex, "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral",
            "--sandbox", "read-only", "--color", "never", PROMPT]


# --- opencode ---------------------------------------------------------------------

def test_opencode_run(guarded_proxy, tmp_path):
    opencode = _installed(".bin/opencode")
    home = tmp_path / "home"
    env = opencode_env(home, GENAI_PROXY_TOKEN=TOKEN)
    config_dir = opencode_config_dir(home)
    (config_dir / "opencode.json").write_text(_fill("opencode.template.json", guarded_proxy))
    work = tmp_path / "work"
    work.mkdir()
    since = len(guarded_proxy.events("request"))
    result = run_client([opencode, "run", PROMPT], env, work, guarded_proxy)
    _assert_reply(result, guarded_proxy, "/v1/chat/completions", since)


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
