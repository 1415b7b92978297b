"""What the proxy tells its operators: structured log events (one JSON object
a line, or text for a terminal) with secrets redacted, and the Prometheus
metrics.  Every other package may report here; this one imports none of
them.
"""

from genaiproxy.observe.logs import (
    LEVELS,
    CheckedJSON,
    LinesObserver,
    LoggedHeaders,
    TextSink,
    body_for_log,
    log_stream,
    secret_header_names,
)
from genaiproxy.observe.metrics import CONTENT_TYPE_LATEST, ProxyMetrics

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LEVELS",
    "CheckedJSON",
    "LinesObserver",
    "LoggedHeaders",
    "ProxyMetrics",
    "TextSink",
    "body_for_log",
    "log_stream",
    "secret_header_names",
]
