"""Log events as one line a person reads in a terminal (LOG_FORMAT=text).

The same record as the JSON form, in a fixed order: time, level, event,
request id, method and path, status, duration, model, then for streams bytes
and events, then anything else as C{key=value}.  Headers and bodies are shown
only at LOG_LEVEL=debug; they are the values of the JSON form, so secrets
are redacted the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# Fields shown in their own place, not as key=value.
_PLACED = {"time", "level", "event", "id", "method", "path", "status", "duration_ms",
           "model", "bytes", "events", "error", "message", "namespace", "traceback"}
# Fields shown only when debugging: they make a line long.
_DEBUG_ONLY = {"headers", "upstream_headers", "body", "preview"}


def render_text(record: dict[str, Any], debug: bool, for_json: Callable[[Any], Any]) -> str:
    """One record (as the JSON form has it) as one line of text."""
    parts = [record["time"], f"{record['level']:<7}", str(record["event"])]
    if record["event"] == "twisted":
        parts.append(f"{record.get('namespace', '')}: {record.get('message', '')}")
    if "id" in record:
        parts.append(f"id={_safe(record['id'])}")
    if "method" in record and "path" in record:
        parts.append(f"{_safe(record['method'])} {_safe(record['path'])}")
    elif "path" in record:
        parts.append(_safe(record["path"]))
    if "status" in record:
        parts.append(str(record["status"]))
    if "duration_ms" in record:
        parts.append(f"{record['duration_ms']} ms")
    if record.get("model"):
        parts.append(f"model={_safe(record['model'])}")
    if "bytes" in record:
        parts.append(f"{record['bytes']} bytes")
    if "events" in record:
        parts.append(f"{record['events']} events")
    error = record.get("error")
    if isinstance(error, dict):
        parts.append(f"error={_safe(error.get('type'))}: {_safe(error.get('message'))}")
    elif error is not None:
        parts.append(f"error={_safe(error)}")
    for key, value in record.items():
        if key in _PLACED or (key in _DEBUG_ONLY and not debug):
            continue
        parts.append(f"{key}={_compact(value, for_json)}")
    line = " ".join(parts)
    if "traceback" in record:
        line += "\n" + str(record["traceback"]).rstrip()
    return line + "\n"


def _safe(value: Any) -> str:
    """C{value} as text that stays on its line: anything with a control
    character (a line break, an escape sequence) is shown JSON-quoted, so
    that what a client sent cannot forge another log line or move the
    terminal's cursor."""
    text = str(value)
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return json.dumps(text)
    return text


def _compact(value: Any, for_json: Callable[[Any], Any]) -> str:
    if isinstance(value, str):
        return _safe(value) if value and " " not in value else json.dumps(value)
    try:
        return json.dumps(value, default=for_json, separators=(",", ":"))
    except (TypeError, ValueError):
        return repr(value)
