"""The one table of environment settings.

Each setting is declared once, as a field of L{Config}: its variable, its
default, its kind (what text it accepts, and how the value is shown), a
one-line help, and whether it is secret.  Everything else is made from the
table: loading and its messages (L{genaiproxy.config.environment.load_config}),
C{twistd genaiproxy --help} (L{environment_help}), the start-up event
(L{Config.summary}), the doctor's view, and the configuration reference
(L{genaiproxy.config.reference}).  A new setting is one field here.

The plugin's two options (C{--listen}, C{--models}) are declared here too,
so that C{genai-proxy doctor} and C{configure}, which describe the daemon
these options would start, share their defaults without importing the
service.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from functools import cached_property
from typing import Any

from genaiproxy import __version__
from genaiproxy.config.kinds import (
    ApiVersion,
    Boolean,
    Choice,
    HeaderName,
    HttpUrl,
    Integer,
    Number,
    Origins,
    Path,
    RedisUrl,
    Secret,
    strip_userinfo,
)
from genaiproxy.config.setting import REQUIRED, Setting, setting

DEFAULT_LISTEN = "tcp:8111:interface=127.0.0.1"
DEFAULT_MODELS = "./models.yaml"
LISTEN_HELP = "Where to listen, as a strports endpoint description."
MODELS_HELP = (f"Path of the model list served on /v1/models [default: {DEFAULT_MODELS}, "
               "which may be missing; a path given here must exist].")


# The groups the settings are listed in, in this order.
UPSTREAM = "The upstream"
RETRIES = "Timeouts and retries"
LOGGING = "Logging"
ACCESS = "Access"
CLIENTS = "Limits on clients"
LIMITS = "Limits and budgets (models.yaml's limits:)"
SHUTDOWN = "Shutdown"
NETWORK = "Corporate networks"


@dataclass(frozen=True, kw_only=True)
class Config:
    """The validated settings of one proxy process (or of one upstream of
    models.yaml, which inherits what it does not set): one field a setting."""

    subscription_name: str = setting(
        "GENAI_SUBSCRIPTION_NAME", REQUIRED, "header that carries the key (empty: no key)",
        HeaderName(), group=UPSTREAM, logged_as="SUBSCRIPTION_NAME",
        details="The name of the header that carries the key, e.g. `Ocp-Apim-Subscription-Key` "
                "or `api-key`. Set it and `GENAI_API_KEY` both to the empty string for an "
                "upstream that needs no key (Ollama): then no header is added.")
    api_key: str = setting(
        "GENAI_API_KEY", REQUIRED, "the key sent in that header",
        Secret(credential="genai_api_key", file_field="api_key_file"), group=UPSTREAM,
        secret=True, logged_as="SUBSCRIPTION_KEY",
        details="The key sent in that header. Better kept in a file: `GENAI_API_KEY_FILE`, or "
                "systemd's credential `genai_api_key`.")
    api_key_file: str = setting(
        "GENAI_API_KEY_FILE", "", "instead: a file holding the key, re-read when it changes",
        Path(), group=UPSTREAM,
        details="A file holding the key, instead of `GENAI_API_KEY` (setting both is an "
                "error); read again when it changes, without a restart.")
    base_url: str = setting(
        "GENAI_BASE_URL", REQUIRED, "upstream base URL; request paths are appended",
        HttpUrl(ascii_only=True), group=UPSTREAM,
        details="The upstream's base URL; request paths are appended to it (`https://gw/genai` "
                "+ `/v1/chat/completions`). It may carry `user:password@`, which is never "
                "shown.")
    api_version: str = setting(
        "GENAI_API_VERSION", "", "adds api-version=<value> to upstream query strings",
        ApiVersion(), group=UPSTREAM,
        details="For Azure OpenAI \"classic\" deployments: adds `api-version=<value>` to every "
                "upstream query string that does not already carry one.")
    stream_usage: bool = setting(
        "STREAM_USAGE", True, "ask chat streams for their token usage (hidden from the client)",
        Boolean(), group=UPSTREAM,
        details="Ask streamed chat completions for their token usage when the client did not, "
                "and take the extra usage chunk back out of what the client gets. `false` "
                "sends such requests as they came.")
    responses_api: str = setting(
        "RESPONSES_API", "auto", "auto, native or chat: how /v1/responses reaches the upstream",
        Choice(("auto", "native", "chat")), group=UPSTREAM,
        details="How `/v1/responses` reaches the upstream. `native`: passed through. `chat`: "
                "answered by the proxy through the upstream's `/chat/completions` (for a "
                "gateway that publishes only chat completions). `auto`: passed through, and "
                "when the upstream answers 404 or 405 there, answered through "
                "`/chat/completions` from then on (until a reload or restart).")
    messages_api: str = setting(
        "MESSAGES_API", "chat", "chat or native: how /v1/messages (Anthropic) reaches the upstream",
        Choice(("chat", "native")), group=UPSTREAM,
        details="How the Anthropic Messages API (`/v1/messages`) reaches the upstream. `chat`: "
                "answered by the proxy through the upstream's `/chat/completions`. `native`: "
                "passed through, for an upstream that speaks the Messages API itself (LiteLLM, "
                "Ollama 0.14 and later, an Anthropic gateway).")

    request_timeout: float = setting(
        "REQUEST_TIMEOUT", 60.0, "seconds to connect and get headers; longest silence in a body",
        Number(minimum=0.001), group=RETRIES,
        details="Seconds allowed to connect and to receive the response headers, and the "
                "longest silence allowed while a body streams. Not a cap on the total time: an "
                "answer that keeps sending runs as long as it needs.")
    max_retries: int = setting(
        "MAX_RETRIES", 2, "retries of a failed upstream attempt (0: none)", Integer(),
        group=RETRIES,
        details="Retries of a failed upstream attempt (a connection error, a timeout, a broken "
                "answer, or a 429/503 asking for a short wait), only before the first byte reached "
                "the client; any other status is passed through. `0` disables them.")
    retry_backoff_sec: float = setting(
        "RETRY_BACKOFF_SEC", 0.5, "wait before retry n: RETRY_BACKOFF_SEC * 2^n", Number(),
        group=RETRIES,
        details="Seconds. The wait before retry *n* (from 0) is `RETRY_BACKOFF_SEC × 2^n`: "
                "0.5 s, 1 s, 2 s, ...")
    retry_after_max_sec: float = setting(
        "RETRY_AFTER_MAX_SEC", 10.0, "longest Retry-After of a 429/503 the proxy waits out itself",
        Number(), group=RETRIES,
        details="The longest wait asked by an upstream 429 or 503 (`Retry-After`, "
                "`retry-after-ms`) that the proxy waits out itself before retrying; a longer "
                "one goes to the client. `0`: only waits of 0.")

    log_bodies: bool = setting(
        "LOG_BODIES", True, "log request and response bodies", Boolean(), group=LOGGING,
        details="Log request and response bodies (JSON as JSON; other content as its length "
                "and type).")
    log_stream_max_bytes: int = setting(
        "LOG_STREAM_MAX_BYTES", 0, "above 0: log each streamed chunk, previewing this many bytes",
        Integer(), group=LOGGING,
        details="When above 0, log each streamed chunk with a preview of up to this many "
                "bytes.")
    log_format: str = setting(
        "LOG_FORMAT", "", "json (an object a line) or text (for people)",
        Choice(("json", "text")), group=LOGGING, shown_default="text on a terminal, else json",
        logged_as=None,  # the service logs the format it chose
        details="`json`: one JSON object a line, for machines (systemd, containers, files). "
                "`text`: one line a person reads.")
    log_level: str = setting(
        "LOG_LEVEL", "info", "debug, info, warn or error: the least severe events logged",
        Choice(("debug", "info", "warn", "error"), synonyms=(("warning", "warn"),)),
        group=LOGGING,
        details="The least severe events written: `debug`, `info`, `warn` (or `warning`) or "
                "`error`.")

    auth_token: str = setting(
        "AUTH_TOKEN", "", "clients must send Authorization: Bearer <token>",
        Secret(credential="auth_token", file_field="auth_token_file"), group=ACCESS,
        secret=True, logged_as=None,
        details="When set, clients must send `Authorization: Bearer <token>`.")
    auth_token_file: str = setting(
        "AUTH_TOKEN_FILE", "", "instead: a file holding that token, re-read when it changes",
        Path(), group=ACCESS,
        details="A file holding that token, instead of `AUTH_TOKEN`; read again when it changes.")
    auth_tokens_file: str = setting(
        "AUTH_TOKENS_FILE", "", "instead: YAML file of client names to tokens, one per client",
        Path(), group=ACCESS,
        details="A YAML file of client names and their tokens, one token per person or tool, "
                "instead of `AUTH_TOKEN`; read again when it changes.")
    credentials_directory: str = setting(
        "CREDENTIALS_DIRECTORY", "", "systemd's; its genai_api_key and auth_token files are used",
        Path(), group=ACCESS, logged_as=None,
        details="Set by systemd for a unit with `LoadCredential=`: its `genai_api_key` and "
                "`auth_token` files are used when the variables above are not set.")
    allowed_origins: tuple[str, ...] = setting(
        "ALLOWED_ORIGINS", (), "comma-separated browser origins allowed by CORS (* for any)",
        Origins(), group=ACCESS,
        details="Comma-separated browser origins allowed by CORS; CORS is off when empty. `*` "
                "allows any origin.")
    status_public: bool = setting(
        "STATUS_PUBLIC", False, "open /status without a token (a browser cannot send one)",
        Boolean(), group=ACCESS,
        details="Open the `/status` page to anyone who reaches the port, without a token, so "
                "that a browser can show it. The page holds no secret, but it shows the "
                "version, each upstream's URL (without credentials), and the model and client "
                "names with their counts. `/metrics` and `/v1` still need a token.")

    limits_state_file: str = setting(
        "LIMITS_STATE_FILE", "", "where the day and month windows are kept across restarts",
        Path(), group=LIMITS,
        shown_default="$STATE_DIRECTORY/limits.json, else "
                      "~/.local/state/genai-proxy/limits.json",
        details="The file the proxy keeps its clients' day and month windows in (tokens and "
                "budget used), written every few seconds and at stop, read at start, so that "
                "they survive a restart. Under systemd the default is in the unit's "
                "`StateDirectory=`; elsewhere under `$XDG_STATE_HOME` (or "
                "`~/.local/state`). Used only when models.yaml has `limits:` and Redis is not "
                "set.")
    state_directory: str = setting(
        "STATE_DIRECTORY", "", "systemd's; the default LIMITS_STATE_FILE is in it",
        Path(), group=LIMITS, logged_as=None,
        details="Set by systemd for a unit with `StateDirectory=`: the default "
                "`LIMITS_STATE_FILE` is `limits.json` in it.")
    limits_redis_url: str = setting(
        "LIMITS_REDIS_URL", "", "Redis that several replicas share the limits through",
        RedisUrl(), group=LIMITS,
        details="`redis://host:port/db`, or `rediss://` for TLS (trusting `GENAI_CA_BUNDLE` "
                "as well as the system's CAs): every window lives there, so that all the "
                "replicas pointed at it enforce one limit. Empty: limits are kept in "
                "process.")
    limits_redis_password_file: str = setting(
        "LIMITS_REDIS_PASSWORD_FILE", "", "a file holding Redis's password",
        Path(), group=LIMITS,
        details="A file holding the password Redis asks for (`requirepass`, or an ACL "
                "user's, with the user in the URL): never put it in the URL, which is "
                "logged.")
    limits_redis_failure: str = setting(
        "LIMITS_REDIS_FAILURE", "open", "open or closed: what requests get while Redis is away",
        Choice(("open", "closed")), group=LIMITS,
        details="While Redis cannot be reached: `open` serves, enforcing the limits in each "
                "process meanwhile (and logs `limits_store_unavailable`); `closed` answers "
                "503 with `Retry-After`. Either way the proxy reconnects by itself.")
    limits_redis_lease_sec: float = setting(
        "LIMITS_REDIS_LEASE_SEC", 60.0, "how long a replica that died keeps its concurrency slots",
        Number(minimum=1), group=LIMITS,
        details="With Redis, each request under way holds a concurrency slot as a lease that "
                "its proxy renews every third of this time and gives back when the request "
                "ends; the slots of a replica that died (killed, its node lost) are free again "
                "this many seconds later.")

    max_request_body_mb: float = setting(
        "MAX_REQUEST_BODY_MB", 100.0, "largest request body accepted (0: no limit)", Number(),
        group=CLIENTS,
        details="The largest request body accepted, in megabytes (`0`: no limit); a larger one "
                "is answered 413 before it is read, and never stored or forwarded.")
    max_header_line_bytes: int = setting(
        "MAX_HEADER_LINE_BYTES", 16384, "longest request line or header line (0: no limit)",
        Integer(), group=CLIENTS,
        details="The longest request line or header line; a longer one is answered 414 or 431. "
                "`0`: no limit.")
    max_header_bytes: int = setting(
        "MAX_HEADER_BYTES", 65536, "largest request head, all lines together (0: no limit)",
        Integer(), group=CLIENTS,
        details="The largest request head (request line and all headers); a larger one is "
                "answered 431. `0`: no limit.")
    max_header_count: int = setting(
        "MAX_HEADER_COUNT", 100, "most header lines in one request (0: no limit)", Integer(),
        group=CLIENTS,
        details="The most header lines in one request; more are answered 431. `0`: no limit.")
    header_timeout: float = setting(
        "HEADER_TIMEOUT", 10.0, "seconds for a request head to arrive after its first byte",
        Number(), group=CLIENTS,
        details="Seconds for a whole request head to arrive, counted from its first byte however "
                "slowly it trickles; then 408. `0`: no limit.")
    keepalive_timeout: float = setting(
        "KEEPALIVE_TIMEOUT", 75.0, "seconds an idle client connection is kept open", Number(),
        group=CLIENTS,
        details="Seconds an idle keep-alive client connection stays open between requests. "
                "`0`: no limit.")
    max_client_connections: int = setting(
        "MAX_CLIENT_CONNECTIONS", 10000, "client connections open at once; more are closed",
        Integer(), group=CLIENTS,
        details="Client connections open at once; past it, new ones are closed as they arrive. "
                "`0`: no limit.")

    shutdown_grace_sec: float = setting(
        "SHUTDOWN_GRACE_SEC", 30.0, "on SIGTERM, time for requests in flight to finish",
        Number(), group=SHUTDOWN,
        details="On SIGTERM, how long requests and streams in flight may take to finish before "
                "they are cut.")
    shutdown_delay_sec: float = setting(
        "SHUTDOWN_DELAY_SEC", 0.0, "on SIGTERM, seconds /readyz says 503 before the port closes",
        Number(), group=SHUTDOWN,
        details="On SIGTERM, how long the proxy keeps listening while `/readyz` already answers "
                "503, before it closes the port and drains.")

    https_proxy: str = setting(
        "HTTPS_PROXY", "", "forward proxy for upstream calls, http://[user:pass@]host:port",
        HttpUrl(), group=NETWORK, aliases=("https_proxy",),
        details="The corporate forward proxy for every upstream call, e.g. "
                "`http://proxy.example:8080`, with credentials if it wants them: "
                "`http://user:password@proxy.example:8080` (never shown). `https_proxy` is "
                "honoured as well.")
    no_proxy: str = setting(
        "NO_PROXY", "", "upstream hosts reached directly: names, IPs, networks, *",
        group=NETWORK, aliases=("no_proxy",),
        details="Upstream hosts reached directly despite `HTTPS_PROXY`: comma-separated names "
                "(covering their subdomains), IP addresses or networks, optionally `:port`; `*` "
                "for all. `no_proxy` is honoured as well.")
    ca_bundle: str = setting(
        "GENAI_CA_BUNDLE", "", "PEM file of extra CAs to trust for an https upstream", Path(),
        group=NETWORK,
        details="A PEM file of extra certificate authorities to trust for an `https://` "
                "upstream, added to the system's.")
    ssl_cert_file: str = setting(
        "SSL_CERT_FILE", "", "the same, honoured as well", Path(), group=NETWORK, logged_as=None,
        details="The same as `GENAI_CA_BUNDLE`, honoured as well.")

    @cached_property
    def upstream_display(self) -> str:
        """The base URL with any user-info removed, safe to show anywhere."""
        return strip_userinfo(self.base_url)

    @cached_property
    def proxy_display(self) -> str:
        """HTTPS_PROXY with credentials removed, safe to log."""
        return strip_userinfo(self.https_proxy)

    def summary(self) -> dict[str, object]:
        """The start-up configuration event's fields; secrets masked."""
        shown: dict[str, object] = {
            item.logged_as or item.name: item.shown(getattr(self, item.attribute))
            for item in SETTINGS if item.logged_as is not None
        }
        shown["PROXY_ENABLED"] = bool(self.https_proxy)
        shown["AUTH_ENABLED"] = bool(self.auth_token or self.auth_tokens_file)
        return shown

    def changed(self) -> list[tuple[str, str]]:
        """The settings not at their default, as (variable, value as shown;
        a secret only as set); the required ones are left out (always set)."""
        return [(item.name, "(set)" if item.secret else item.text(item.shown(value)))
                for item in SETTINGS
                if not item.required and (value := getattr(self, item.attribute)) != item.default]


# The table, in the order it is listed: every setting of Config.
SETTINGS: tuple[Setting, ...] = tuple(
    replace(item.metadata["setting"], attribute=item.name) for item in fields(Config))
BY_NAME: dict[str, Setting] = {item.name: item for item in SETTINGS}
GROUPS: tuple[str, ...] = tuple(dict.fromkeys(item.group for item in SETTINGS))


def default_of(name: str) -> Any:
    """The default of the setting C{name} (for what is built without a
    L{Config}, such as a site's client limits)."""
    return BY_NAME[name].default


def version_text() -> str:
    """genai-proxy's version, with the versions of the stack it runs on."""
    from importlib.metadata import version

    return (f"genai-proxy {__version__} (Twisted {version('Twisted')}, treq {version('treq')}, "
            f"Python {sys.version.split()[0]})")


def environment_help() -> str:
    """The settings as a block of text: name, default, meaning."""
    width = max(len(item.name) for item in SETTINGS)
    lines = ["Environment settings (default in brackets; docs/reference/configuration.md "
             "says more):"]
    for item in SETTINGS:
        shown = f"[{item.default_text() or 'empty'}]"
        lines.append(f"  {item.name:<{width}}  {shown:<10} {item.help}")
    return "\n".join(lines) + "\n"
