"""Structured logging: twisted.logger events rendered as one JSON object a line.

Our own events are emitted with C{log.info("event_name", field=value, ...)} on a
L{Logger} in the C{genaiproxy} namespace; the observer writes them as
C{{"time", "level", "event", ...fields}}.  Events from Twisted itself keep
their formatted text under C{"message"}.  Header values that carry secrets are
replaced before they reach an event.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import IO, Any, Iterable

from twisted.logger import ILogObserver, LogLevel, formatEvent
from twisted.web.http_headers import Headers
from zope.interface import implementer

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
        else:
            shown[name.decode("latin-1")] = ", ".join(v.decode("latin-1") for v in values)
    return shown


def body_for_log(body: bytes, content_type: str) -> dict[str, Any]:
    """Fields that describe C{body} in a log event: the JSON itself when it is
    JSON, otherwise its length and content type."""
    if "json" in content_type or (body[:1] in (b"{", b"[") and not content_type):
        try:
            return {"body": json.loads(body)}
        except ValueError:
            pass
    return {"body_length": len(body), "content_type": content_type}


@implementer(ILogObserver)
class JSONLinesObserver:
    """Write each log event to C{stream} as one JSON object and a newline.

    The stream is flushed after every line so that a container or journald
    sees events at once.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, event: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0), timezone.utc)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": _LEVEL_NAMES.get(event.get("log_level"), "INFO"),
        }
        namespace = event.get("log_namespace", "")
        if namespace.startswith(_OWN_NAMESPACE):
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
        try:
            line = json.dumps(record, default=str)
        except (TypeError, ValueError):
            line = json.dumps({"time": record["time"], "level": record["level"],
                               "event": "unserializable_log_event", "repr": repr(record)})
        self._stream.write(line + "\n")
        self._stream.flush()
