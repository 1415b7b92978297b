"""Launchers for genai-proxy (from a given venv) and the Python mock upstream.

genai-proxy runs as ``twistd -n --pidfile= genaiproxy`` with the benchmark's
upstream settings and nothing else from the caller's environment, its
JSON-lines log written to a file as in production (bridged: with
``RESPONSES_API=chat`` or ``MESSAGES_API=chat``, answering ``POST
/v1/responses`` or ``/v1/messages`` through the upstream's chat completions,
checked before it is measured); the mock runs through
L{MOCK_LAUNCHER}, which time-stamps the events it writes and gives it a
large listen backlog.  Both are started through a L{Session}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    API_CHAT,
    API_KEY,
    API_RESPONSES,
    HOST,
    LIMITS_MODELS,
    SUBSCRIPTION_NAME,
    BenchError,
    StreamAPI,
    free_port,
    http_post,
    tail,
)
from bench.procs import Session, Target, wait_for_answer

# Variables the proxy reads: none may leak in from the caller's environment.
PROXY_ENV_KEYS = {
    "GENAI_SUBSCRIPTION_NAME", "GENAI_API_KEY", "GENAI_BASE_URL", "REQUEST_TIMEOUT",
    "MAX_RETRIES", "RETRY_BACKOFF_SEC", "LOG_BODIES", "ALLOWED_ORIGINS", "LOG_STREAM_MAX_BYTES",
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy",
    "AUTH_TOKEN", "MAX_REQUEST_BODY_MB", "SHUTDOWN_GRACE_SEC", "GENAI_API_VERSION",
    "GENAI_CA_BUNDLE", "RESPONSES_API", "MESSAGES_API", "LIMITS_STATE_FILE", "LIMITS_REDIS_URL",
    "LIMITS_REDIS_PASSWORD_FILE", "LIMITS_REDIS_FAILURE", "STATE_DIRECTORY", "STATUS_PUBLIC",
}
# Per translated API: the setting that makes the proxy answer it through the
# upstream's chat completions, the row's key and label, and the whole (not
# streamed) request it must answer with an object of the "object" (or
# "type") given before it is measured.
BRIDGES = {
    "responses": ("RESPONSES_API", "bridged", "bridged",
                  b'{"model":"gpt-4.1","input":"hi"}', ("object", "response")),
    "messages": ("MESSAGES_API", "messages", "Messages bridge",
                 b'{"model":"gpt-4.1","max_tokens":1000,'
                 b'"messages":[{"role":"user","content":"hi"}]}', ("type", "message")),
}


# Runs the project's own mock upstream unchanged, except that
# - every SSE event written for a request carrying ``X-Bench-Stream: TAG`` is
#   logged as "TAG MONOTONIC_SECONDS" to the file named by the first argument
#   (CLOCK_MONOTONIC is system-wide on Linux, so these compare with the
#   client's time.monotonic()); other writes pay a 6-byte prefix test;
# - it listens with a backlog of BENCH_MOCK_BACKLOG (default 4096) instead of
#   Twisted's 50, as a real upstream would: the proxy's accept queue is what
#   the open-streams phase measures, not the mock's;
# - with BENCH_MOCK_GC=off its cyclic garbage collector is off: with thousands
#   of open streams its full collections pause it for a third of a second and
#   more, which would be counted against the proxy in front of it.
MOCK_LAUNCHER = r"""
import gc, os, sys, time
if os.environ.get("BENCH_MOCK_GC") == "off":
    gc.disable()
from twisted.internet import reactor
from twisted.web import server
_listen = reactor.listenTCP
_backlog = int(os.environ.get("BENCH_MOCK_BACKLOG", "4096"))
def listenTCP(port, factory, backlog=50, interface=""):
    return _listen(port, factory, backlog=_backlog, interface=interface)
reactor.listenTCP = listenTCP
_out = open(sys.argv.pop(1), "a", buffering=1)
_write = server.Request.write
def write(self, data):
    if data[:6] == b"data: ":
        tag = self.requestHeaders.getRawHeaders(b"x-bench-stream")
        if tag:
            _out.write("%s %.9f\n" % (tag[0].decode("ascii", "replace"), time.monotonic()))
    return _write(self, data)
server.Request.write = write
from genaiproxy.mock.cli import main
main()
"""



@dataclass
class ProxySpec:
    """One genai-proxy configuration to measure: which venv, which settings."""

    key: str
    label: str
    kind: str  # "proxy" (the venv under test), "baseline", or "variant" (a setting's cost)
    bindir: Path
    log_bodies: bool | None  # None: the default (true)
    # RESPONSES_API=chat (MESSAGES_API=chat), measured with streamed Responses
    # (Messages) requests; API_CHAT: chat requests, passed through
    api: StreamAPI = API_CHAT
    # Its own models.yaml (the rows with limits), and more settings.
    models: str | None = None
    settings: dict[str, str] | None = None


def start_redis(session: Session) -> str:
    """Debian's redis-server on a free loopback port, nothing persisted:
    the store of the row with limits in Redis.  Returns its URL."""
    redis = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(redis, os.X_OK):
        raise BenchError("no redis-server (apt-get install redis-server)")
    port = free_port()
    argv = [redis, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
    session.start("redis", argv, None, session.path("redis.log"), session.path("redis.err"),
                  cwd=session.tmp)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return f"redis://{HOST}:{port}/0"
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"redis-server did not answer on port {port}")


def limits_spec(args: argparse.Namespace, redis_url: str = "") -> ProxySpec:
    """A row with every kind of limit counted (L{LIMITS_MODELS}), none
    reached: in process, or shared through the Redis at C{redis_url}."""
    bindir = venv_bindir(args.venv)
    if redis_url:
        return ProxySpec("limits_redis", f"{args.label} (limits in Redis, LOG_BODIES=true)",
                         "proxy", bindir, None, models=LIMITS_MODELS,
                         settings={"LIMITS_REDIS_URL": redis_url})
    return ProxySpec("limits", f"{args.label} (limits in process, LOG_BODIES=true)", "proxy",
                     bindir, None, models=LIMITS_MODELS)


def quiet_spec(args: argparse.Namespace) -> ProxySpec:
    """A row of the proxy under test with C{LOG_LEVEL=warn}: no C{request}
    and C{response} events, so that it shows what they cost."""
    return ProxySpec("quiet", f"{args.label} (LOG_LEVEL=warn: no request and response events)",
                     "variant", venv_bindir(args.venv), False,
                     settings={"LOG_LEVEL": "warn"})


def venv_bindir(venv: str | None) -> Path:
    """The bin directory of C{venv}, or of the python running this script."""
    return Path(venv) / "bin" if venv else Path(sys.executable).parent


def proxy_specs(args: argparse.Namespace, with_nolog: bool = True) -> list[ProxySpec]:
    """The genai-proxy rows: the venv under test and, with --baseline-venv, the
    baseline; each in the default configuration and (C{with_nolog}) with
    LOG_BODIES=false."""
    specs = []
    venvs = [("proxy", args.label, args.venv)]
    if args.baseline_venv:
        venvs.append(("baseline", args.baseline_label, args.baseline_venv))
    for kind, label, venv in venvs:
        bindir = venv_bindir(venv)
        if not (bindir / "twistd").exists():
            raise BenchError(f"no twistd in {bindir} (is genai-proxy installed in that venv?)")
        specs.append(ProxySpec(kind, f"{label} (default, LOG_BODIES=true)", kind, bindir, None))
        if with_nolog:
            specs.append(ProxySpec(f"{kind}_nolog", f"{label} (LOG_BODIES=false)", kind,
                                   bindir, False))
    return specs


def bridged_spec(args: argparse.Namespace, api: StreamAPI = API_RESPONSES) -> ProxySpec:
    """A bridged row: the venv under test in its default configuration with
    C{RESPONSES_API=chat} (C{api} Responses, key C{bridged}) or
    C{MESSAGES_API=chat} (C{api} Messages, key C{messages}), measured with
    streamed requests of that API, which it answers through the upstream's
    chat completions."""
    bindir = venv_bindir(args.venv)
    if not (bindir / "twistd").exists():
        raise BenchError(f"no twistd in {bindir} (is genai-proxy installed in that venv?)")
    setting, key, name, _, _ = BRIDGES[api.name]
    return ProxySpec(key, f"{args.label} {name} ({setting}=chat, LOG_BODIES=true)",
                     "proxy", bindir, None, api=api)


def check_bridge(label: str, port: int, api: StreamAPI) -> None:
    """Make sure the proxy on C{port} answers a whole request of C{api} with
    that API's object (the upstream, being chat-only, would answer 404 to a
    Responses request it forwarded to /v1/responses)."""
    setting, _, _, check_body, (field_name, wanted) = BRIDGES[api.name]
    try:
        status, _, body = http_post(port, check_body, headers=api.headers, path=api.path)
        answer = json.loads(body)
    except (OSError, ValueError) as e:
        raise BenchError(f"{label}: POST {api.path} failed: {e}") from None
    if status != 200 or not isinstance(answer, dict) or answer.get(field_name) != wanted:
        raise BenchError(f"{label} does not bridge POST {api.path} (does this genai-proxy "
                         f"know {setting}?): status {status}, {body[:300]!r}")


def start_genai_proxy(session: Session, spec: ProxySpec, base_url: str,
                      timeout: float = 30.0, wrapper: list[str] | None = None) -> Target:
    """Start C{twistd -n --pidfile= genaiproxy} from C{spec}'s venv, forwarding
    to C{base_url}, its JSON-lines log written to a file as in production.
    C{wrapper} goes before the twistd script (e.g. python -m cProfile -o F)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV_KEYS}
    env.update(GENAI_SUBSCRIPTION_NAME=SUBSCRIPTION_NAME, GENAI_API_KEY=API_KEY,
               GENAI_BASE_URL=base_url)
    if spec.log_bodies is not None:
        env["LOG_BODIES"] = "true" if spec.log_bodies else "false"
    if spec.api is not API_CHAT:
        env[BRIDGES[spec.api.name][0]] = "chat"
    env.update(spec.settings or {})
    env.setdefault("LIMITS_STATE_FILE", str(session.path(f"{spec.key}-limits.json")))
    models = session.path(f"{spec.key}-models.yaml" if spec.models else "models.yaml")
    if spec.models:
        models.write_text(spec.models)
    elif not models.exists():
        models.write_text("models:\n  - id: gpt-4.1\n  - id: gpt-5\n")
    out, err = session.path(f"{spec.key}.log"), session.path(f"{spec.key}.err")
    argv = (wrapper or []) + [str(spec.bindir / "twistd"), "-n", "--pidfile=", "genaiproxy",
            "--listen", f"tcp:{port}:interface={HOST}", "--models", str(models)]

    def launch() -> subprocess.Popen[bytes]:
        proc = session.start(spec.label, argv, env, out, err, cwd=session.tmp)
        wait_for_answer(spec.label, proc, port, err, timeout)
        if spec.api is not API_CHAT:
            check_bridge(spec.label, port, spec.api)
        return proc

    target = Target(spec.key, spec.label, spec.kind, port, launch(), launch, log_file=out,
                    api=spec.api)
    session.targets[spec.key] = target
    return target


@dataclass
class Mock:
    """The Python mock upstream: its port and its event time-stamp file."""

    target: Target
    stamps: Path = field(default_factory=Path)


def start_mock(session: Session, python: Path, key: str = "direct",
               label: str = "direct to mock", gc_off: bool = False,
               chat_only: bool = False) -> Mock:
    """Start the project's mock upstream (from C{python}'s venv) through
    L{MOCK_LAUNCHER}, on a free port; C{gc_off} turns its cyclic GC off;
    C{chat_only} makes it a gateway without the Responses API (404 on
    /v1/responses; its chat completions are unchanged), the upstream of the
    Responses and Messages bridges."""
    env = dict(os.environ, BENCH_MOCK_GC="off" if gc_off else "on")
    out, err = session.path("mock.out"), session.path("mock.err")
    stamps = session.path("mock-stamps.txt")
    stamps.touch()
    ports: list[int] = []

    def launch() -> subprocess.Popen[bytes]:
        argv = [str(python), "-c", MOCK_LAUNCHER, str(stamps), "--port",
                str(ports[0] if ports else 0), "--interface", HOST] + (
                    ["--chat-only"] if chat_only else [])
        before = len(tail(out, 10**6))
        proc = session.start("mock upstream", argv, env, out, err, cwd=session.tmp)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = re.findall(r"listening on http://[^:]+:(\d+)", tail(out, 10**6)[before:])
            if found:
                if not ports:
                    ports.append(int(found[-1]))
                break
            if proc.poll() is not None:
                raise BenchError(f"mock upstream exited with {proc.returncode}:\n{tail(err)}")
            time.sleep(0.05)
        else:
            raise BenchError("mock upstream did not print its address within 20 s")
        wait_for_answer("mock upstream", proc, ports[0], err)
        return proc

    proc = launch()
    target = Target(key, label, "direct", ports[0], proc, launch)
    session.targets[key] = target
    return Mock(target, stamps)
