"""A real redis-server (Debian's package; ./run-tests installs it) for the
tests of the limits shared through Redis: started on a free loopback port
with no persistence, stopped and started again on the same port when a test
asks (an outage), stopped at the end.  And the global reactor, run in a
thread, for the tests that drive L{genaiproxy.limits.redis_store} in
process."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import strategies as st

from genaiproxy.config import ClientLimits
from genaiproxy.limits import MemoryWindows
from genaiproxy.limits.redis_store import RedisWindows
from genaiproxy.observe import ProxyMetrics
from support import _stop, free_port

T = TypeVar("T")


class RedisServer:
    """A redis-server process on 127.0.0.1 (and its port kept across a
    restart).

    @ivar password: the C{requirepass} it was started with, if any.
    @ivar tls: (certificate, key) PEM files it serves TLS with, if any.
    """

    def __init__(self, password: str | None = None, tls: tuple[Path, Path] | None = None
                 ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server")
        self._binary = binary
        self.password = password
        self.tls = tls
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="genai-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, without the password (which goes in a file)."""
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it, and wait until it answers."""
        args = [self._binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir)]
        if self.tls:
            certificate, key = self.tls
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file",
                     str(certificate), "--tls-key-file", str(key), "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError as e:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from e
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop it (its data is gone: no persistence)."""
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def command(self, *args: str, db: int = 0) -> str:
        """What redis-cli prints for one command (a plain-text server only)."""
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        return subprocess.run(["redis-cli", "-p", str(self.port), "-n", str(db), *auth, *args],
                              capture_output=True, text=True, check=True, timeout=10
                              ).stdout.strip()


@contextlib.contextmanager
def run_redis(password: str | None = None, tls: tuple[Path, Path] | None = None
              ) -> Iterator[RedisServer]:
    """A started L{RedisServer}, stopped at the end."""
    server = RedisServer(password, tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()


_reactor_thread: threading.Thread | None = None


def in_reactor(call: Callable[..., Any], *args: Any) -> Any:
    """C{call(*args)} in the global reactor, running in a thread of its own
    (started at the first call, for the rest of the session); what it
    returns, or what its Deferred gives."""
    global _reactor_thread
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread

    if _reactor_thread is None:
        _reactor_thread = threading.Thread(
            target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True)
        _reactor_thread.start()
    return blockingCallFromThread(reactor, call, *args)


def replica(redis: RedisServer, **options: Any) -> RedisWindows:
    """A replica's windows in C{redis}, connected (C{options}: those of
    L{RedisWindows})."""
    from twisted.internet import reactor

    windows = RedisWindows(redis.url, ProxyMetrics("test", lambda: 0.0), reactor, **options)
    in_reactor(windows.connect)
    return windows


def scripts_run(redis: RedisServer, commands: str = "eval(?:sha)?") -> int:
    """The scripts Redis ran since its statistics were last reset (by
    C{commands}, a pattern: EVAL and EVALSHA by default)."""
    stats = redis.command("INFO", "commandstats")
    return sum(int(calls) for calls in re.findall(rf"cmdstat_{commands}:calls=(\d+)", stats))


# A client's limits, every kind or none, small enough to be reached in a
# few steps (the property tests that run a store against another).
_limit_values = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
client_limits = st.builds(
    ClientLimits,
    requests_per_minute=_limit_values,
    tokens_per_minute=st.one_of(st.none(), st.sampled_from([0, 100, 1000, 5000])),
    concurrent_requests=st.one_of(st.none(), st.integers(min_value=0, max_value=3)),
    tokens_per_day=st.one_of(st.none(), st.sampled_from([0, 500, 2000])),
    budget_per_day=st.one_of(st.none(), st.sampled_from([0.0, 0.005, 0.02])),
    budget_per_month=st.one_of(st.none(), st.sampled_from([0.0, 0.01, 0.05])),
)


def end_step(windows: RedisWindows, memory: MemoryWindows, name: str, limits: ClientLimits, action: str,
             tokens: int, cost: float, now: float, open_leases: list[Any]) -> None:
    """A step of a property test that is not an admission, in both stores
    (L{RedisWindows} and L{MemoryWindows} at C{now}):
    C{spend} counts an answer's C{tokens} and C{cost}; anything else ends
    the oldest request still open in C{open_leases} (their admissions)."""
    if action == "spend":
        memory.spend(name, limits, tokens, cost, now)
        in_reactor(windows.spend, name, limits, tokens, cost)
    elif open_leases:
        memory.release(name)
        lease = open_leases.pop(0).lease
        if lease is not None:
            in_reactor(windows.release, name, lease)
