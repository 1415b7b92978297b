"""The settings as a terminal shows them: the environment settings, one
line each, for C{twistd genaiproxy --help}; the plugin options' defaults;
the version line.

The README's Configuration table says more; this list is what a terminal
shows, so that nobody needs the README to find a setting's name.
"""

from __future__ import annotations

import sys

from genaiproxy import __version__

# The plugin's options' defaults, shared with genai-proxy doctor and configure
# (which describe the daemon these options would start) without their
# importing the service.
DEFAULT_LISTEN = "tcp:8111:interface=127.0.0.1"
DEFAULT_MODELS = "./models.yaml"


def version_text() -> str:
    """genai-proxy's version, with the versions of the stack it runs on."""
    from importlib.metadata import version

    return (f"genai-proxy {__version__} (Twisted {version('Twisted')}, treq {version('treq')}, "
            f"Python {sys.version.split()[0]})")

# (variable, default as shown, what it does)
ENVIRONMENT: tuple[tuple[str, str, str], ...] = (
    ("GENAI_SUBSCRIPTION_NAME", "required", "header that carries the key (empty: no key)"),
    ("GENAI_API_KEY", "required", "the key sent in that header"),
    ("GENAI_API_KEY_FILE", "", "instead: a file holding the key, re-read when it changes"),
    ("GENAI_BASE_URL", "required", "upstream base URL; request paths are appended"),
    ("GENAI_API_VERSION", "", "adds api-version=<value> to upstream query strings"),
    ("REQUEST_TIMEOUT", "60", "seconds to connect and get headers; longest silence in a body"),
    ("MAX_RETRIES", "2", "retries of a failed upstream attempt (0: none)"),
    ("RETRY_BACKOFF_SEC", "0.5", "wait before retry n: RETRY_BACKOFF_SEC * 2^n"),
    ("RETRY_AFTER_MAX_SEC", "10", "longest Retry-After of a 429/503 the proxy waits out itself"),
    ("LOG_BODIES", "true", "log request and response bodies"),
    ("LOG_STREAM_MAX_BYTES", "0", "above 0: log each streamed chunk, previewing this many bytes"),
    ("STREAM_USAGE", "true", "ask chat streams for their token usage (hidden from the client)"),
    ("LOG_FORMAT", "text on a terminal, else json", "json (an object a line) or text (for people)"),
    ("LOG_LEVEL", "info", "debug, info, warn or error: the least severe events logged"),
    ("AUTH_TOKEN", "", "clients must send Authorization: Bearer <token>"),
    ("AUTH_TOKEN_FILE", "", "instead: a file holding that token, re-read when it changes"),
    ("AUTH_TOKENS_FILE", "", "instead: YAML file of client names to tokens, one per client"),
    ("CREDENTIALS_DIRECTORY", "", "systemd's; its genai_api_key and auth_token files are used"),
    ("ALLOWED_ORIGINS", "", "comma-separated browser origins allowed by CORS (* for any)"),
    ("MAX_REQUEST_BODY_MB", "100", "largest request body accepted (0: no limit)"),
    ("MAX_HEADER_LINE_BYTES", "16384", "longest request line or header line (0: no limit)"),
    ("MAX_HEADER_BYTES", "65536", "largest request head, all lines together (0: no limit)"),
    ("MAX_HEADER_COUNT", "100", "most header lines in one request (0: no limit)"),
    ("HEADER_TIMEOUT", "10", "seconds for a request head to arrive after its first byte"),
    ("KEEPALIVE_TIMEOUT", "75", "seconds an idle client connection is kept open"),
    ("MAX_CLIENT_CONNECTIONS", "10000", "client connections open at once; more are closed"),
    ("SHUTDOWN_GRACE_SEC", "30", "on SIGTERM, time for requests in flight to finish"),
    ("SHUTDOWN_DELAY_SEC", "0", "on SIGTERM, seconds /readyz says 503 before the port closes"),
    ("HTTPS_PROXY", "", "forward proxy for upstream calls, http://[user:pass@]host:port"),  # also https_proxy
    ("NO_PROXY", "", "upstream hosts reached directly: names, IPs, networks, *"),
    ("GENAI_CA_BUNDLE", "", "PEM file of extra CAs to trust for an https upstream"),
    ("SSL_CERT_FILE", "", "the same, honoured as well"),
)


def environment_help() -> str:
    """The settings as a block of text: name, default, meaning."""
    width = max(len(name) for name, _, _ in ENVIRONMENT)
    lines = ["Environment settings (default in brackets; see the README for more):"]
    for name, default, meaning in ENVIRONMENT:
        shown = f"[{default}]" if default else "[empty]"
        lines.append(f"  {name:<{width}}  {shown:<10} {meaning}")
    return "\n".join(lines) + "\n"
