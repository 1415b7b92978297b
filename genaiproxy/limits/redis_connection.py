"""The connection to the Redis of the shared windows
(L{genaiproxy.limits.redis_store}): txredisapi's lazy pool of one
connection, which reconnects by itself, loads the scripts on each new
connection before any request's C{EVALSHA}, and says when a connection is
ready and when the last one is lost."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from txredisapi import ConnectionHandler, RedisFactory  # type: ignore[import-untyped]

from genaiproxy.config import strip_userinfo
from genaiproxy.limits.redis_scripts import ADMIT, REFRESH, SETTLE

__all__ = ["COMMAND_TIMEOUT", "CONNECT_TIMEOUT", "REPLY_TIMEOUT", "RedisPool"]

# Seconds a request waits for Redis's verdict before its process's windows
# (or a 503) stand in; a connection that leaves a command unanswered this
# long is closed and made again.
COMMAND_TIMEOUT = 1.0
REPLY_TIMEOUT = 5.0
CONNECT_TIMEOUT = 5.0
class RedisPool(RedisFactory):
    """txredisapi's (lazy, reconnecting) pool of one connection, which
    loads the scripts on each new connection and says when one is ready
    (C{on_ready}) and when the last one is lost (C{on_lost})."""

    # Seconds between attempts to connect again, at most (txredisapi: 10).
    maxDelay = 3

    def __init__(self, url: str, dbid: int | None, password: str | None, username: str | None,
                 on_ready: Callable[[], None], on_lost: Callable[[str], None]) -> None:
        super().__init__(strip_userinfo(url), dbid, 1, isLazy=True, handler=ConnectionHandler,
                         password=password, replyTimeout=REPLY_TIMEOUT, convertNumbers=False,
                         username=username)
        self._on_ready = on_ready
        self._on_lost = on_lost
        # Fires when the pool is full, or fails: a lazy pool's user has no
        # use for it (its failures go to on_lost, below).
        self.deferred.addErrback(lambda _: None)

    def addConnection(self, conn: Any) -> None:
        if conn.connected:
            # A command goes out at once, not after the last one's answer
            # (Nagle's algorithm), as every Redis client does.
            conn.transport.setTcpNoDelay(True)
            # The scripts first, before any request's EVALSHA.
            for script in (ADMIT, SETTLE, REFRESH):
                conn.script_load(script.text).addErrback(lambda _: None)
        super().addConnection(conn)
        if conn in self.pool:
            self._on_ready()

    def connectionError(self, why: str) -> None:
        """A connection was refused for good (a wrong password, a database
        that does not exist): txredisapi stops trying."""
        super().connectionError(why)
        self._on_lost(why)

    def delConnection(self, conn: Any) -> None:
        super().delConnection(conn)
        if not self.pool and not self.disconnectCalled:
            self._on_lost("connection lost")
