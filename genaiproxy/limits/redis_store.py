"""The windows every replica shares, kept in Redis (C{LIMITS_REDIS_URL}).

L{RedisWindows} is the L{genaiproxy.limits.SharedWindows} of the
L{genaiproxy.limits.Limiter}: each request is one Lua script in Redis
(L{genaiproxy.limits.redis_scripts}) that checks and takes all of its
client's windows at once, with Redis's clock, so that N proxies enforce one
limit; while Redis's last answer leaves room (L{genaiproxy.limits.redis_view}),
the request goes at once, its script behind it.  The end of a request (its
tokens and cost, its slot given back) rides the client's next admission,
counted first, so that a request costs one round trip, not three; ends that
no admission takes within C{SETTLE_DELAY} are told in a script of their
own, as all of them are at the stop.  The scripts are loaded on each
connection and run by digest (C{EVALSHA}), sent whole (C{EVAL}) when Redis
does not know them (C{NOSCRIPT}: it restarted, or flushed its scripts).

A concurrency slot is a lease with an end: this process pushes the end of
its open requests' leases forward every third of their time, and removes
a lease when its request ends, so that the slots of a replica that died
are free again C{LIMITS_REDIS_LEASE_SEC} later.

The client is txredisapi (Twisted's own protocol, maintained), one lazy
connection that reconnects by itself; once it is up, the scripts go on it
directly (not through the pool's handler, which looks the connection up
anew for every command).  While Redis cannot be reached (the connection is
lost, a command fails or times out), L{RedisWindows.available} is false
and the L{Limiter} counts in this process (or refuses,
C{LIMITS_REDIS_FAILURE=closed}); C{limits_store_unavailable} is logged
once per outage, the gauge C{genai_proxy_limits_store_unavailable} is 1,
and a probe every second tells when Redis answers again.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from txredisapi import (  # type: ignore[import-untyped]
    ScriptDoesNotExist,
)

from genaiproxy.config import (
    ClientLimits,
    Config,
    ConfigError,
    SecretError,
    SystemAndExtraTrust,
    client_tls,
    read_secret_text,
    strip_userinfo,
    trust_root,
)
from genaiproxy.limits.redis_connection import (
    COMMAND_TIMEOUT,
    CONNECT_TIMEOUT,
    RedisPool,
)
from genaiproxy.limits.redis_scripts import ADMIT, REFRESH, SETTLE, Ends, Script, admit_verdict, limits_arg
from genaiproxy.limits.redis_view import VIEW_AGE, ClientView, Send, Views
from genaiproxy.limits.windows import Admission
from genaiproxy.observe import ProxyMetrics

__all__ = ["RedisWindows", "redis_windows"]

log = Logger(namespace="genaiproxy.limits")

# While Redis is away: how often it is asked whether it is back.
PROBE_INTERVAL = 1.0
# Leases refreshed in one script at most (a few milliseconds of Redis each).
REFRESH_BATCH = 500
# Seconds the ends of a client's requests wait for its next admission to
# carry them, at most; then a script of their own tells them.
SETTLE_DELAY = 0.05
# Ends of one client carried by one script at most (more are told at once).
SETTLE_BATCH = 500


class RedisWindows:
    """Every client's windows, in the Redis at C{url}, shared by every
    replica pointed at it.

    @ivar url: where, without credentials (for the logs).
    """

    def __init__(self, url: str, metrics: ProxyMetrics, reactor: Any,
                 password: str | None = None, trust: SystemAndExtraTrust | None = None,
                 lease_sec: float = 60.0, settle_delay: float = SETTLE_DELAY,
                 now: Callable[[], float] | None = None, view_age: float = VIEW_AGE) -> None:
        """
        @param password: Redis's password (else the URL's, if any).
        @param trust: the CAs a C{rediss://} server's certificate is checked
            against (L{genaiproxy.config.trust_root}; the system's by
            default).
        @param lease_sec: how long a concurrency slot outlives a replica that
            stopped refreshing it.
        @param settle_delay: how long the ends of a client's requests wait
            for its next admission, at most.
        @param now: for tests: the time the scripts count with, in place of
            Redis's own.
        @param view_age: how long Redis's answer for a client is acted on
            (0: every request waits for its verdict).
        """
        parts = urlsplit(url)
        self.url = strip_userinfo(url)
        self._metrics = metrics
        self._reactor = reactor
        self._lease_sec = lease_sec
        self._settle_delay = settle_delay
        self._now = now
        self._view_age = view_age
        self._up = True
        self._probing = False
        self._stopping = False
        host, port = parts.hostname or "localhost", parts.port or 6379
        endpoint: Any = HostnameEndpoint(reactor, host, port, timeout=CONNECT_TIMEOUT)
        if parts.scheme == "rediss":
            trusted = trust if trust is not None else trust_root("", "")
            endpoint = wrapClientTLS(client_tls(host, trusted), endpoint)
        self._endpoint = endpoint
        database = parts.path.strip("/")
        if password is None and parts.password is not None:
            password = unquote(parts.password)
        username = unquote(parts.username) if parts.username else None
        self._pool = RedisPool(url, int(database) if database else None, password, username,
                           on_ready=self._probe, on_lost=self._down)
        self._redis = self._pool.handler
        # This process's open leases: lease id -> its client's leases key.
        self._leases: dict[str, str] = {}
        # The ends not told yet, by client; when they will be at the latest.
        self._ends: dict[str, Ends] = {}
        self._settling: IDelayedCall | None = None
        # Each client's room as Redis last told it (all dropped when the
        # answers may not come in order: Redis failed, or forgot a script).
        self._views = Views()
        self._lease_ids = (f"{secrets.token_hex(6)}-{n}" for n in itertools.count())
        self._refresh_loop = LoopingCall(self._refresh_open)
        self._refresh_loop.clock = reactor
        self._probe_loop = LoopingCall(self._probe)
        self._probe_loop.clock = reactor

    @property
    def available(self) -> bool:
        """Whether Redis answers (else this process's windows stand in)."""
        return self._up

    def connect(self) -> None:
        """Connect (and keep connecting); refresh the open leases from now on."""
        self._pool.startConnecting(self._endpoint)
        self._refresh_loop.start(self._lease_sec / 3, now=False)
        self._probe()

    def disconnect(self) -> Deferred[None]:
        """Stop refreshing, tell the ends not told yet, let the commands
        sent be answered, then close the connection."""
        self._settle_all()
        self._stopping = True
        for loop in (self._refresh_loop, self._probe_loop):
            if loop.running:
                loop.stop()
        answered: Deferred[Any] = self._redis.ping() if self._up else succeed(None)
        answered.addTimeout(COMMAND_TIMEOUT, self._reactor)
        answered.addErrback(lambda _: None)
        return answered.addCallback(lambda _: self._pool.disconnect())

    def ping(self, timeout: float = CONNECT_TIMEOUT + COMMAND_TIMEOUT) -> Deferred[Any]:
        """Ask Redis to answer (a PING, once connected and logged in), for
        the doctor: fails with why it did not within C{timeout} seconds."""
        answered: Deferred[Any] = self._redis.ping()
        return answered.addTimeout(timeout, self._reactor)

    @staticmethod
    def _key(name: str) -> str:
        return f"genai-proxy:limits:{{{name}}}"

    def _time(self) -> tuple[str, float]:
        """The time for the scripts ('': Redis's own) and this process's."""
        if self._now is None:
            return "", self._reactor.seconds()
        now = self._now()
        return repr(now), now

    def _connection(self) -> Any:
        """The connection, once up (else the pool's handler, which waits
        for one)."""
        pool = self._pool.pool
        if pool and pool[0].connected:
            return pool[0]
        return self._redis

    def _run(self, script: Script, keys: list[str], args: list[str]) -> Deferred[Any]:
        """Run C{script} by its digest, or whole when Redis lacks it; a
        failure or a silence of COMMAND_TIMEOUT marks Redis unavailable."""
        ran: Deferred[Any] = self._connection().evalsha(script.sha, keys, args)
        ran.addErrback(self._run_whole, script, keys, args)
        ran.addTimeout(COMMAND_TIMEOUT, self._reactor)
        return ran.addErrback(self._failed)

    def _run_whole(self, failure: Failure, script: Script, keys: list[str],
                   args: list[str]) -> Deferred[Any]:
        failure.trap(ScriptDoesNotExist)
        # Sent again, it runs after later scripts: answers come out of order.
        self._views.forget()
        return self._connection().eval(script.text, keys, args)

    def _failed(self, failure: Failure) -> Failure:
        self._views.forget()
        self._down(failure.getErrorMessage() or repr(failure.value))
        return failure

    def admit(self, name: str, limits: ClientLimits) -> Deferred[Admission]:
        """L{MemoryWindows.admit}, for every replica at once: one script
        that counts the ends of the client's requests not told yet, then
        checks and takes all of its windows.  The request goes at once
        (an already fired Deferred) when the client's view has room for
        it; else it waits for the script's verdict."""
        if limits.requests_per_minute is None and limits.tokens_per_minute is None and (
                limits.concurrent_requests is None and limits.tokens_per_day is None
                and limits.budget_per_day is None and limits.budget_per_month is None):
            return succeed(Admission(shared=True))
        lease = "" if limits.concurrent_requests is None else next(self._lease_ids)
        key = self._key(name)
        view = self._views.of(name)
        ahead = view.ahead(limits, self._reactor.seconds(), self._view_age, lease or None)
        time, now = self._time()
        ends = self._ends.pop(name, None)
        args = [time, limits_arg(limits), f"{lease} {self._lease_sec!r}" if lease else "",
                *(ends.args(now) if ends is not None else ("", ""))]
        send = view.sent(admission=True)
        answered = self._run(ADMIT, [key], args).addCallback(
            self._verdict, name, limits, view, send, lease, ahead is not None)
        if ahead is None:
            return answered
        if lease:
            self._leases[lease] = key + ":leases"
        answered.addErrback(self._behind_failed)
        return succeed(ahead)

    def _behind_failed(self, failure: Failure) -> None:
        """The script behind a request that went ahead failed: Redis's
        failures are told as an outage (L{_failed}); anything else is ours."""
        if self._up and not self._stopping:
            log.failure("admit_ahead_verdict", failure)

    def _verdict(self, answer: str, name: str, limits: ClientLimits, view: ClientView,
                 send: Send, lease: str, ahead: bool) -> Admission:
        """Redis's verdict on an admission (C{ahead}: the request already
        went), which its client's view takes as its room."""
        admission, room = admit_verdict(answer, limits, lease)
        if room is None and ahead:
            # Another replica took the room meanwhile; the request went all
            # the same.  Its lease is given back (a refresh may have put it
            # in Redis), and the client's next request waits for Redis.
            if lease and self._leases.pop(lease, None) is not None:
                self._ends_of(name).leases.append(lease)
            self._views.forget(name)
            return admission
        if self._views.current(name, view):
            view.answered(send, limits, room, self._reactor.seconds())
        if room is not None and lease and not ahead:
            self._leases[lease] = self._key(name) + ":leases"
        return admission

    def spend(self, name: str, limits: ClientLimits, tokens: int, cost: float) -> None:
        """Count an answer's C{tokens} and C{cost} in its client's windows
        (L{MemoryWindows.spend}, for every replica), with the client's next
        admission (an answer of nothing changes nothing)."""
        if tokens or cost:
            ends = self._ends_of(name)
            ends.spend(self._time()[1], limits, tokens, cost)
            self._views.spent(name, tokens, cost)
            self._settle_if_full(name, ends)

    def release(self, name: str, lease: str) -> None:
        """Give the concurrency slot C{lease} back, with the client's next
        admission."""
        if self._leases.pop(lease, None) is not None:
            ends = self._ends_of(name)
            ends.leases.append(lease)
            self._views.released(name)
            self._settle_if_full(name, ends)

    def _ends_of(self, name: str) -> Ends:
        """The ends of C{name}'s requests not told yet (told within the
        settle delay at the latest)."""
        ends = self._ends.get(name)
        if ends is None:
            ends = self._ends[name] = Ends()
            if self._settling is None and not self._stopping:
                self._settling = self._reactor.callLater(self._settle_delay, self._settle_all)
        return ends

    def _settle_if_full(self, name: str, ends: Ends) -> None:
        if len(ends) >= SETTLE_BATCH:
            del self._ends[name]
            self._settle(name, ends)

    def _settle_all(self) -> None:
        """Tell Redis the ends that no admission took (dropped while Redis
        is away: the leases end by themselves, the tokens were counted in
        this process)."""
        if self._settling is not None:
            if self._settling.active():
                self._settling.cancel()
            self._settling = None
        waiting, self._ends = self._ends, {}
        for name, ends in waiting.items():
            self._settle(name, ends)

    def _settle(self, name: str, ends: Ends) -> None:
        if self._up:
            time, now = self._time()
            self._run(SETTLE, [self._key(name)], [time, *ends.args(now)]).addErrback(
                lambda _: None)
            self._views.settled(name)
        else:
            self._views.forget(name)

    def _refresh(self) -> Deferred[Any]:
        """Push the end of this process's open leases forward (and put back
        any Redis lost); with none open, this asks Redis whether it answers."""
        open_leases = list(self._leases.items())
        batches = [open_leases[start:start + REFRESH_BATCH]
                   for start in range(0, len(open_leases), REFRESH_BATCH)] or [[]]
        time, seconds = self._time()[0], repr(self._lease_sec)
        return gatherResults([self._run(REFRESH, [key for _, key in batch],
                                        [time, seconds, *(lease for lease, _ in batch)])
                              for batch in batches], consumeErrors=True)

    def _refresh_open(self) -> None:
        if self._up and self._leases:
            self._refresh().addErrback(lambda _: None)

    def _probe(self) -> None:
        """Ask Redis whether it answers (at the start, on each new
        connection, and every second while it is away)."""
        if self._probing:
            return
        self._probing = True

        def answered(_: object) -> None:
            self._probing = False
            self._back()

        def silent(_: Failure) -> None:
            self._probing = False

        self._refresh().addCallbacks(answered, silent)

    def _down(self, reason: str) -> None:
        """Redis cannot be reached: said once per outage."""
        if not self._up or self._stopping:
            return
        self._up = False
        log.error("limits_store_unavailable", url=self.url, reason=reason)
        self._metrics.limits_store_down.set(1)
        if not self._probe_loop.running:
            self._probe_loop.start(PROBE_INTERVAL, now=False)

    def _back(self) -> None:
        if self._up:
            return
        self._up = True
        log.info("limits_store_available", url=self.url)
        self._metrics.limits_store_down.set(0)
        if self._probe_loop.running:
            self._probe_loop.stop()


def redis_windows(config: Config, metrics: ProxyMetrics, reactor: Any) -> RedisWindows:
    """The shared windows C{config} names (C{LIMITS_REDIS_URL}), with the
    password of C{LIMITS_REDIS_PASSWORD_FILE}, the leases of
    C{LIMITS_REDIS_LEASE_SEC} and, for C{rediss://}, the CAs the proxy
    trusts for its upstreams (the system's, C{GENAI_CA_BUNDLE}'s).

    @raise ConfigError: the password file cannot be read, or is empty.
    """
    password = None
    if config.limits_redis_password_file:
        path = config.limits_redis_password_file
        try:
            password = read_secret_text(path).strip()
        except SecretError as e:
            raise ConfigError(f"LIMITS_REDIS_PASSWORD_FILE: {e}") from None
        if not password:
            raise ConfigError(f"LIMITS_REDIS_PASSWORD_FILE: {path} is empty")
    trust = None
    if config.limits_redis_url.startswith("rediss:"):
        trust = trust_root(config.ca_bundle, config.ssl_cert_file)
    return RedisWindows(config.limits_redis_url, metrics, reactor, password, trust,
                        config.limits_redis_lease_sec)
