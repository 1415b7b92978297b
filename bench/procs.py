"""Starting, watching and stopping the processes the benchmark runs.

Every phase starts its own processes through a L{Session}: each in its own
process group (so nginx's workers go with their master), all stopped when the
phase or the run ends, fails, or is interrupted (Ctrl-C, SIGTERM, SIGHUP).
Also here: waiting for a process to answer, RSS and CPU readings from /proc,
the open-files limit, and the command-line options every phase shares (which
venvs, which tools).

The genai-proxy and mock launchers are in L{bench.launch}, nginx (static
upstream and proxy) in L{bench.nginx}, the LiteLLM peer in
L{bench.litellm_peer}.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import API_CHAT, CHAT_BODY, HOST, BenchError, StreamAPI, http_post, log, tail


class ProcessGone(Exception):
    """A process the benchmark measures has exited (or is exiting)."""


def rss_kib(pid: int) -> int:
    """VmRSS of C{pid} in KiB."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    raise ProcessGone(f"pid {pid} has exited")  # a zombie has no VmRSS line


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU time of the live processes of process group C{pgid}."""
    ticks = 0
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()  # fields from #3 (state) on
        if int(fields[2]) == pgid:  # #5 pgrp
            ticks += int(fields[11]) + int(fields[12])  # #14 utime, #15 stime
    return ticks / _CLK_TCK


def process_nofile(pid: int) -> str:
    """C{pid}'s 'Max open files' soft / hard limits, from /proc/PID/limits."""
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft} / {hard}"
    except OSError:
        pass
    return "unknown"


def raise_nofile(wanted: int) -> tuple[int, str | None]:
    """Raise this process's RLIMIT_NOFILE (inherited by every process it starts)
    to C{wanted}, raising the hard limit too if needed and allowed; failing
    that, the soft limit goes to the hard limit.  Return (soft limit now in
    force, the error that kept the hard limit from rising, or None)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    error = None
    if wanted > hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted, None
        except (ValueError, OSError) as e:
            error = f"setrlimit(RLIMIT_NOFILE, ({wanted}, {wanted})): {type(e).__name__}: {e}"
    target = min(wanted, hard) if hard != resource.RLIM_INFINITY else wanted
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0], error


@dataclass
class Target:
    """A process (group) the benchmark sends requests to, on C{port}."""

    key: str
    label: str
    kind: str  # "direct", "proxy", "baseline", "variant", "nginx", "litellm", "floor"
    port: int
    proc: subprocess.Popen[bytes]  # the process serving the port (group leader)
    restart: Callable[[], subprocess.Popen[bytes]]  # start it again on the same port
    log_file: Path | None = None  # genai-proxy's JSON-lines log
    restarts: int = 0
    # The API of the streamed requests it is sent: chat, or for genai-proxy
    # with RESPONSES_API=chat (MESSAGES_API=chat) streamed Responses (Messages)
    # requests, POST /v1/responses (/v1/messages), which it answers through
    # the upstream's chat completions.
    api: StreamAPI = API_CHAT

    @property
    def bridged(self) -> bool:
        """Sent requests of an API it translates to chat completions."""
        return self.api is not API_CHAT

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/v1/chat/completions"


class Session:
    """One benchmark run's shared state: a temporary directory, the processes
    started, the targets they serve, and the problems and notes to report."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="genai-bench-"))
        self.tmp.chmod(0o755)  # nginx workers drop to an unprivileged user as root
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.targets: dict[str, Target] = {}
        self.problems: list[str] = []
        self.notes: list[str] = []

    def problem(self, message: str) -> None:
        """Record a measurement that saw errors (the run then exits 1)."""
        self.problems.append(message)
        log("PROBLEM: " + message)

    def path(self, name: str) -> Path:
        return self.tmp / name

    def start(self, name: str, argv: list[str], env: dict[str, str] | None,
              stdout_path: Path, stderr_path: Path,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start C{argv} in a new session (process group); output is appended
        to the two files, so a restarted process keeps adding to them."""
        with open(stdout_path, "ab") as out, open(stderr_path, "ab") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                    env=env, cwd=cwd, start_new_session=True)
        self.started.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], name: str = "", grace: float = 5.0) -> None:
        """SIGTERM C{proc}'s process group, SIGKILL it after C{grace} seconds."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {proc.pid}) ignored SIGTERM, killing its process group")
        try:  # the leader is not reaped yet, so its group id is still ours
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            log(f"could not stop {name} (pid {proc.pid})")

    def stop_all(self) -> None:
        """Stop every process started, newest first; forget the targets."""
        for _name, proc in reversed(self.started):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for name, proc in reversed(self.started):
            self.stop(proc, name, max(0.1, deadline - time.monotonic()))
        self.started.clear()
        self.targets.clear()

    def revive(self, during: str) -> list[str]:
        """Restart any target that died, say so in the notes, return their keys.

        The machine may be shared: another session ending processes by name
        kills ours too.  The caller repeats the measurement that was disturbed.
        A target dying a sixth time ends the benchmark.
        """
        died = []
        for t in self.targets.values():
            code = t.proc.poll()
            if code is None:
                continue
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            if t.restarts >= 5:
                raise BenchError(f"{t.label} died again ({how}) during {during}")
            self.notes.append(
                f"{t.label} (pid {t.proc.pid}) died with {how} during {during} at "
                f"{time.strftime('%H:%M:%S')}; it was restarted and the run repeated.")
            log(f"!!! {t.label} died ({how}) during {during}: restarting it")
            t.restarts += 1
            t.proc = t.restart()
            died.append(t.key)
        return died

    def repeat_if_disturbed(self, name: str, measure: Callable[[], Any]) -> Any:
        """Run C{measure}; if a process died meanwhile, restart it and run it again."""
        for _ in range(3):
            self.revive(f"the pause before {name}")
            problems = len(self.problems)
            try:
                result = measure()
            except (ProcessGone, OSError) as e:
                log(f"{name} interrupted: {e}")
                time.sleep(0.5)
                if not self.revive(name):
                    raise BenchError(f"{name} failed: {e}") from None
            else:
                if not self.revive(name):
                    return result
            del self.problems[problems:]
            log(f"repeating {name}")
        raise BenchError(f"processes keep dying during {name}")


def wait_for_answer(name: str, proc: subprocess.Popen[bytes], port: int, stderr_path: Path,
                    timeout: float = 20.0, marker: bytes = b'"chat.completion"') -> bytes:
    """Wait until C{port} answers the benchmark's chat completion with 200 and
    a body containing C{marker}; return that body."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"{name} exited with status {proc.returncode}:\n{tail(stderr_path)}")
        try:
            status, _, body = http_post(port, CHAT_BODY, timeout=max(2.0, timeout / 10))
            if status == 200 and marker in body:
                return body
            last = f"status {status}: {body[:300]!r}"
        except OSError as e:
            last = str(e)
        time.sleep(0.2)
    raise BenchError(f"{name} did not answer on port {port} within {timeout:.0f} s ({last})\n"
                     f"{tail(stderr_path)}")


def find_tool(name: str, given: str | None, fallback: str) -> str:
    """C{given}, else C{name} from PATH, else C{fallback}; it must be executable."""
    path = given or shutil.which(name) or fallback
    if not os.access(path, os.X_OK):
        raise BenchError(f"{name} not found (apt-get install -y nginx-light wrk; or --{name})")
    return path


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options every phase takes: venvs, labels, tools, output."""
    p.add_argument("--venv", help="venv with the genai-proxy under test installed (default: the "
                   "venv of the python running this script)")
    p.add_argument("--label", default="genai-proxy",
                   help="name of the proxy under test in the report (default: %(default)s)")
    p.add_argument("--baseline-venv", metavar="DIR",
                   help="venv with a baseline genai-proxy (e.g. the previous release) to "
                   "measure side by side")
    p.add_argument("--baseline-label", default="baseline genai-proxy",
                   help="name of the baseline in the report (default: %(default)s)")
    p.add_argument("--nginx", help="nginx binary (default: from PATH, else /usr/sbin/nginx)")
    p.add_argument("--wrk", help="wrk binary (default: from PATH, else /usr/bin/wrk)")
    p.add_argument("--write", metavar="FILE", help="also write the Markdown report to FILE")
    p.add_argument("--keep-tmp", action="store_true",
                   help="keep the temporary directory (configs, logs)")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(args: argparse.Namespace, body: Callable[[Session], str]) -> int:
    """Run C{body} in a fresh L{Session}, print (and with --write save) the
    Markdown it returns, and stop everything whatever happens.

    Exit status: 0 when every measurement ran cleanly (PASS or FAIL alike), 1
    when a measurement saw errors, 2 when the benchmark could not be set up,
    130 when interrupted."""
    t0 = time.monotonic()
    # SIGINT too: a shell starts background jobs with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    raise_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    session = Session(args)
    status = 0
    try:
        log(f"temporary directory {session.tmp}")
        report = body(session)
        print(report)
        if args.write:
            Path(args.write).write_text(report + "\n")
            log(f"report written to {args.write}")
        if session.problems:
            log("!" * 70)
            log(f"{len(session.problems)} PROBLEM(S): some runs saw errors, figures are suspect:")
            for p in session.problems:
                log("  " + p)
            log("!" * 70)
            status = 1
    except BenchError as e:
        log(f"benchmark failed: {e}")
        status = 2
    except KeyboardInterrupt:
        log("interrupted")
        status = 130
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        session.stop_all()
        if args.keep_tmp or status not in (0, 130):
            log(f"kept {session.tmp}")
        else:
            shutil.rmtree(session.tmp, ignore_errors=True)
    log(f"done in {time.monotonic() - t0:.0f} s")
    return status


def command_line() -> str:
    """This process's command line, for the report."""
    return shlex.join([sys.executable] + sys.argv)
