"""Structured logging: twisted.logger events rendered as one JSON object a line.

Our own events are emitted with C{log.info("event_name", field=value, ...)} on a
L{Logger} in the C{genaiproxy} namespace; the observer writes them as
C{{"time", "level", "event", ...fields}}.  Events from Twisted itself keep
their formatted text under C{"message"}.  Header values that carry secrets are
replaced before they reach an event.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from threading import get_ident
from typing import IO, Any, Protocol, cast

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import ILogObserver, LogLevel, formatEvent
from twisted.python import threadable
from twisted.python.logfile import LogFile
from twisted.web.http_headers import Headers
from zope.interface import implementer

from genaiproxy.observe.logtext import render_text

REDACTED = "[redacted]"

# Header names whose values are never logged, whatever the configuration.
ALWAYS_SECRET_HEADERS = frozenset(
    {
        b"authorization",
        b"proxy-authorization",
        b"api-key",
        b"x-api-key",
        b"cookie",
        b"set-cookie",
        b"ocp-apim-subscription-key",
    }
)

_LEVEL_NAMES = {
    LogLevel.debug: "DEBUG",
    LogLevel.info: "INFO",
    LogLevel.warn: "WARNING",
    LogLevel.error: "ERROR",
    LogLevel.critical: "CRITICAL",
}

_OWN_NAMESPACE = "genaiproxy"

# Events rendered per reactor turn when writing out a batch: at most
# _SLICE, or fewer once their lines pass _SLICE_CHARS (a request logged with
# a 64 KB body takes a third of a millisecond to render and write), so that
# a quiet proxy pauses for little at a time; and at least a sixteenth of the
# backlog, so that a busy one never falls behind.
_SLICE = 8
_SLICE_CHARS = 64 * 1024
_BACKLOG_SHARE = 16


class TextSink(Protocol):
    """Where rendered log lines are written: a text file, stdout, syslog."""

    def write(self, text: str, /) -> Any: ...

    def flush(self) -> None: ...


def secret_header_names(extra: Iterable[str]) -> frozenset[bytes]:
    """The redacted header set plus C{extra} names (e.g. the subscription header)."""
    return ALWAYS_SECRET_HEADERS | {name.lower().encode("latin-1") for name in extra if name}


def redact_headers(headers: Headers, secret_names: frozenset[bytes]) -> dict[str, str]:
    """A loggable copy of C{headers}: lower-case names, secret values replaced."""
    shown: dict[str, str] = {}
    for raw_name, values in headers.getAllRawHeaders():
        name = raw_name.lower()
        if name in secret_names:
            shown[name.decode("latin-1")] = REDACTED
        elif len(values) == 1:
            shown[name.decode("latin-1")] = values[0].decode("latin-1")
        else:
            shown[name.decode("latin-1")] = b", ".join(values).decode("latin-1")
    return shown


class LoggedHeaders:
    """Headers for a log event, redacted when the event is rendered.

    Rendering happens when log lines are written, after the request has been
    answered, so the work stays off the request's latency path.
    """

    __slots__ = ("_headers", "_secret_names")

    def __init__(self, headers: Headers, secret_names: frozenset[bytes]) -> None:
        self._headers = headers
        self._secret_names = secret_names

    def for_log(self) -> dict[str, str]:
        return redact_headers(self._headers, self._secret_names)


class LoggedJSON:
    """A JSON body for a log event, parsed when the event is rendered."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body = body

    def for_log(self) -> Any:
        try:
            return json.loads(self._body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return {"unparsable_json_length": len(self._body)}


# What a JSON text may hold that a log line may not: line breaks (only ever
# whitespace between tokens in valid JSON), and non-ASCII characters (only
# ever inside strings), which the line shows as \u escapes as json.dumps does.
_NON_ASCII = re.compile("[^\x00-\x7f]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # a surrogate pair, as JSON spells it
        code -= 0x10000
        return f"\\u{0xD800 | (code >> 10):04x}\\u{0xDC00 | (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


class CheckedJSON(LoggedJSON):
    """A JSON body the proxy has already parsed (so it is valid JSON), which
    a JSON log line carries as the text it is rather than parsed and
    encoded again: for a request of 64 KB that is a quarter of a
    millisecond of CPU saved per event."""

    __slots__ = ()

    def line_text(self) -> str | None:
        """The body as it goes into a line (None: it must be parsed)."""
        body = self._body
        if b"\x00" in body:
            # UTF-16 or -32, which json.loads reads too, and whose ASCII
            # decodes as UTF-8 full of NULs (and of control characters, with
            # chosen ones).  Strictly parsed UTF-8 JSON holds no control
            # character but the whitespace between tokens, and every other
            # encoding writes its ASCII with NULs.
            return None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return None
        # (Two replace() calls: str.translate is thirty times slower here.)
        text = text.removeprefix("\ufeff").replace("\r", " ").replace("\n", " ")
        return text if text.isascii() else _NON_ASCII.sub(_escape, text)


def body_for_log(body: bytes, content_type: str) -> dict[str, Any]:
    """Fields that describe C{body} in a log event: the JSON itself when it is
    JSON, otherwise its length and content type."""
    if "json" in content_type or (body[:1] in (b"{", b"[") and not content_type):
        return {"body": LoggedJSON(body)}
    return {"body_length": len(body), "content_type": content_type}


def _for_json(value: Any) -> Any:
    """json.dumps hook: render the lazy values above; anything else as text."""
    render = getattr(value, "for_log", None)
    return render() if render is not None else str(value)


# How severe each level is, to drop the events below LOG_LEVEL.
_SEVERITY = {LogLevel.debug: 0, LogLevel.info: 1, LogLevel.warn: 2, LogLevel.error: 3,
             LogLevel.critical: 4}
LEVELS = {"debug": LogLevel.debug, "info": LogLevel.info, "warn": LogLevel.warn,
          "error": LogLevel.error}


@implementer(ILogObserver)
class LinesObserver:
    """Write each log event to C{stream} as one line: a JSON object, or with
    C{text} a line a person reads (L{genaiproxy.observe.logtext}).  Events less severe
    than C{level} are dropped.

    Without a C{clock} every event is rendered, written and flushed at once.
    With one, events logged on the reactor thread while the reactor runs are
    gathered and, C{flush_delay} seconds after the first of them, rendered
    and written a slice per reactor turn: rendering JSON and writing to
    stdout cost as much as the rest of a small request, and this keeps them
    off its latency path.
    """

    def __init__(self, stream: TextSink, clock: IReactorTime | None = None,
                 flush_delay: float = 0.05, text: bool = False,
                 level: LogLevel = LogLevel.info) -> None:
        self._stream = stream
        self._text = text
        self._least = _SEVERITY[level]
        self._debug = level is LogLevel.debug
        self._clock = clock
        self._flush_delay = flush_delay
        self._pending: list[dict[str, Any]] = []
        # The last second whose date and time of day were formatted, and them.
        self._second: tuple[int | None, str] = (None, "")
        self._flush_call: IDelayedCall | None = None

    def flush(self) -> None:
        """Render and write out every gathered event now."""
        self._write_out(len(self._pending))

    def _drain(self) -> None:
        """Write out a slice of the gathered events, then yield to the reactor.

        Rendering a whole batch at once would hold up every request waiting
        behind it; a slice at a time keeps that pause short.
        """
        self._flush_call = None
        backlog = len(self._pending) // _BACKLOG_SHARE
        self._write_out(max(_SLICE, backlog), at_least=max(1, backlog), chars=_SLICE_CHARS)
        if self._pending and self._clock is not None:
            self._flush_call = self._clock.callLater(0, self._drain)

    def _write_out(self, count: int, at_least: int = 1, chars: float = math.inf) -> None:
        """Render and write the first C{count} gathered events, or stop
        early, once at least C{at_least} of them were, when their lines pass
        C{chars} characters."""
        if self._flush_call is not None and self._flush_call.active() and count >= len(self._pending):
            self._flush_call.cancel()
            self._flush_call = None
        if self._pending:
            lines: list[str] = []
            size = 0
            for event in self._pending[:count]:
                line = self.render(event)
                lines.append(line)
                size += len(line)
                if size >= chars and len(lines) >= at_least:
                    break
            del self._pending[:len(lines)]
            self._stream.write("".join(lines))
        self._stream.flush()

    def __call__(self, event: dict[str, Any]) -> None:
        if _SEVERITY.get(event.get("log_level"), 1) < self._least:
            return
        clock = self._clock
        # (threadable.isInIOThread, without its current_thread() call.)
        if clock is None or not getattr(clock, "running", True) or (
                threadable.ioThread != get_ident()):
            self._stream.write(self.render(event))
            self._stream.flush()
            return
        self._pending.append(event)
        if self._flush_call is None:
            self._flush_call = clock.callLater(self._flush_delay, self._drain)

    def render(self, event: dict[str, Any]) -> str:
        """One event as a line of JSON or text.  Never raises: an event that
        cannot be shown is written as L{_unshown}, and the lines after it
        go on."""
        try:
            record = self._record(event)
            if self._text:
                return render_text(record, self._debug, _for_json)
            body = record.get("body")
            text = body.line_text() if type(body) is CheckedJSON else None
            if text is None:
                return json.dumps(record, default=_for_json) + "\n"
            del record["body"]
            return f'{json.dumps(record, default=_for_json)[:-1]}, "body": {text}}}\n'
        except Exception:  # a field that cannot be shown: say which event, not what
            return self._unshown(event)

    def _unshown(self, event: dict[str, Any]) -> str:
        """The line of an event that cannot be shown: which event it was and
        the names of its fields, never their values."""
        try:
            when = self._time_of(event["log_time"])
        except Exception:  # no time, or not a number
            when = self._time_of(time.time())
        level = event.get("log_level")
        name = event.get("log_format")
        return json.dumps({
            "time": when,
            "level": _LEVEL_NAMES.get(level, "INFO") if isinstance(level, LogLevel) else "INFO",
            "event": "unserializable_log_event",
            "of": name if isinstance(name, str) else None,
            "fields": sorted(str(key) for key in event if not str(key).startswith("log_")),
        }) + "\n"

    def _time_of(self, when: float) -> str:
        """C{when} in UTC to the millisecond (C{2026-12-04T19:47:13.123Z}),
        rounded to the microsecond first as C{datetime} does; the date and
        time of day are formatted once per second."""
        fraction, whole = math.modf(when)
        micros = round(fraction * 1_000_000)
        second = int(whole)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        elif micros < 0:
            second, micros = second - 1, micros + 1_000_000
        cached_second, text = self._second
        if second != cached_second:
            text = datetime.fromtimestamp(second, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)  # one store: other threads render too
        return f"{text}.{micros // 1000:03d}Z"

    def _record(self, event: dict[str, Any]) -> dict[str, Any]:
        """The fields of one event, in the order they are shown."""
        record: dict[str, Any] = {
            "time": self._time_of(event.get("log_time", 0)),
            "level": _LEVEL_NAMES.get(event.get("log_level"), "INFO"),
        }
        namespace = event.get("log_namespace", "")
        # Ours: an event name from one of our modules' loggers.  A Twisted
        # class logging on behalf of a subclass of ours (ProxyRequest's
        # namespace is genaiproxy.server.site.ProxyRequest) writes a sentence.
        log_format = event.get("log_format")
        if namespace.startswith(_OWN_NAMESPACE) and isinstance(log_format, str) and (
                log_format.isidentifier()):
            record["event"] = event.get("log_format")
            for key, value in event.items():
                if not key.startswith("log_"):
                    record[key] = value
        else:
            record["event"] = "twisted"
            record["namespace"] = namespace
            record["message"] = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        return record


class SyslogStream:
    """A text stream whose lines go to syslog, one message each (twistd
    C{--syslog}); the priority follows the line's level."""

    def __init__(self, prefix: str) -> None:
        import syslog

        self._syslog = syslog
        syslog.openlog(prefix, syslog.LOG_PID, syslog.LOG_DAEMON)

    def write(self, text: str) -> None:
        syslog = self._syslog
        for line in text.splitlines():
            # The level: a JSON line's "level" field, or a text line's second word.
            if line.startswith("{"):
                level = line.split('"level": "', 1)[-1].split('"', 1)[0]
            else:
                words = line.split(None, 2)
                level = words[1] if len(words) > 1 else ""
            if level in ("ERROR", "CRITICAL"):
                priority = syslog.LOG_ERR
            elif level == "WARNING":
                priority = syslog.LOG_WARNING
            else:
                priority = syslog.LOG_INFO
            syslog.syslog(priority, line)

    def flush(self) -> None:
        """Each line was sent as it was written."""


def log_stream(twistd_options: Mapping[str, Any] | None) -> TextSink:
    """Where log lines go, by twistd's own options, as twistd decides for
    its own log: C{--syslog}; C{--logfile PATH} (C{-} for stdout); otherwise
    stdout in the foreground (C{-n}) and C{twistd.log} when daemonized."""
    if not twistd_options:
        return sys.stdout
    if twistd_options.get("syslog"):
        return SyslogStream(twistd_options.get("prefix") or "twisted")
    name = twistd_options.get("logfile")
    if name == "-" or (not name and twistd_options.get("nodaemon")):
        return sys.stdout
    # Absolute: a daemon may change directory (--rundir) after this.
    return cast(IO[str], LogFile.fromFullPath(os.path.abspath(name or "twistd.log")))
