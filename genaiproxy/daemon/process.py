"""What the daemon asks of its process and its system: the garbage
collector's thresholds, the open-files limit, the listen queue, and how a
start that cannot go on ends (one line, status 2)."""

from __future__ import annotations

import resource
import sys
from typing import NoReturn

from twisted.internet.error import CannotListenError

from genaiproxy.config import parse_listen

__all__ = ["FDS_RESERVED", "GC_THRESHOLDS", "LISTEN_BACKLOG", "describe_listen_error",
           "fail_start", "raise_open_files_limit", "with_backlog"]

# The cyclic garbage collector's thresholds (Python's default: 700, 10, 10).
# Thousands of open streams are millions of long-lived objects, and a full
# collection walks all of them while the reactor waits: with the defaults,
# the repeated full passes while 9,900 streams opened held some first events
# back 2.4 s (bench/phase_open_streams.py).  A larger youngest generation
# (2000, as Python 3.13 has it) and full passes considered ten times less
# often brought the longest wait to 0.14 s, for about 20 MB more memory
# under a steady churn of short streams.
GC_THRESHOLDS = (2000, 10, 100)

# Descriptors the process holds besides its connections (listening sockets,
# log files, the reactor's own).
FDS_RESERVED = 32


def raise_open_files_limit() -> tuple[int, int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit: each open stream holds
    two descriptors (the client's connection and the upstream's), and the
    usual soft limit of 1024 would cap the proxy near 500 streams.

    Returns the soft limit before, the soft limit now, and the hard limit.
    """
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(before, 1 << 20)
    if before != resource.RLIM_INFINITY and before < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep what we have; the logged figures say so
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return before, soft, hard


LISTEN_BACKLOG = 1024


def with_backlog(listen: str) -> str:
    """A TCP endpoint description with a listen queue of LISTEN_BACKLOG unless
    it names its own: Twisted's default of 50 drops the connections of a
    burst of clients (each then waits a second for the kernel to retry)."""
    try:
        endpoint = parse_listen(listen)
    except ValueError:
        return listen  # strports says what is wrong with it
    if endpoint.kind in ("tcp", "tcp6"):
        return endpoint.with_option("backlog", str(LISTEN_BACKLOG))
    return listen


def describe_listen_error(error: CannotListenError) -> str:
    """C{host:port: cause} for a port that could not be listened on, the cause
    in lower case as a sentence part (C{address already in use})."""
    interface = error.interface or "0.0.0.0"
    host = f"[{interface}]" if ":" in interface else interface
    cause = error.socketError
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror[0].lower() + cause.strerror[1:]
    else:
        reason = str(cause)
    return f"{host}:{error.port}: {reason}"


def fail_start(message: str) -> NoReturn:
    """End start-up with one clear line on stderr and exit status 2.

    The process's own stderr: once twistd has begun logging, C{sys.stderr}
    is a log file object that would turn the line into a log event.
    """
    stream = sys.__stderr__ or sys.stderr
    stream.write(f"genai-proxy: {message}\n")
    stream.flush()
    raise SystemExit(2)
