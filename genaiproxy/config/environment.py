"""The proxy's configuration: read once from the environment, validated, frozen.

Every setting the daemon uses lives in one L{Config}; nothing else reads
C{os.environ}.  Secrets are kept out of C{repr} and shown masked in the start-up
summary.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from genaiproxy.config.credentials import (
    SecretError,
    parse_header_secret,
    parse_tokens_file,
    read_secret_text,
)


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Config:
    """Validated settings of one proxy process."""

    subscription_name: str
    api_key: str = field(repr=False)
    base_url: str = field(repr=False)  # may carry user:password@
    request_timeout: float = 60.0
    max_retries: int = 2
    retry_backoff_sec: float = 0.5
    log_bodies: bool = True
    allowed_origins: tuple[str, ...] = ()
    log_stream_max_bytes: int = 0
    stream_usage: bool = True
    https_proxy: str = field(default="", repr=False)
    auth_token: str = field(default="", repr=False)
    no_proxy: str = ""
    ca_bundle: str = ""
    ssl_cert_file: str = ""
    api_version: str = ""
    shutdown_grace_sec: float = 30.0
    shutdown_delay_sec: float = 0.0
    max_request_body_mb: float = 100.0
    log_format: str = ""  # "json" or "text"; empty: decided by where logs go
    log_level: str = "info"
    max_header_line_bytes: int = 16384
    max_header_bytes: int = 65536
    max_header_count: int = 100
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_client_connections: int = 10000
    retry_after_max_sec: float = 10.0
    # Files the secrets were read from (re-read when they change); empty
    # when the secret came from its variable.
    api_key_file: str = ""
    auth_token_file: str = ""
    auth_tokens_file: str = ""

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
        return {
            "SUBSCRIPTION_NAME": self.subscription_name,
            "SUBSCRIPTION_KEY": mask(self.api_key),
            "GENAI_BASE_URL": self.upstream_display,
            "REQUEST_TIMEOUT": self.request_timeout,
            "MAX_RETRIES": self.max_retries,
            "RETRY_BACKOFF_SEC": self.retry_backoff_sec,
            "RETRY_AFTER_MAX_SEC": self.retry_after_max_sec,
            "LOG_BODIES": self.log_bodies,
            "ALLOWED_ORIGINS": list(self.allowed_origins),
            "LOG_STREAM_MAX_BYTES": self.log_stream_max_bytes,
            "STREAM_USAGE": self.stream_usage,
            "HTTPS_PROXY": self.proxy_display,
            "PROXY_ENABLED": bool(self.https_proxy),
            "NO_PROXY": self.no_proxy,
            "GENAI_CA_BUNDLE": self.ca_bundle,
            "GENAI_API_VERSION": self.api_version,
            "SHUTDOWN_GRACE_SEC": self.shutdown_grace_sec,
            "SHUTDOWN_DELAY_SEC": self.shutdown_delay_sec,
            "MAX_REQUEST_BODY_MB": self.max_request_body_mb,
            "LOG_LEVEL": self.log_level,
            "MAX_HEADER_LINE_BYTES": self.max_header_line_bytes,
            "MAX_HEADER_BYTES": self.max_header_bytes,
            "MAX_HEADER_COUNT": self.max_header_count,
            "HEADER_TIMEOUT": self.header_timeout,
            "KEEPALIVE_TIMEOUT": self.keepalive_timeout,
            "MAX_CLIENT_CONNECTIONS": self.max_client_connections,
            "GENAI_API_KEY_FILE": self.api_key_file,
            "AUTH_TOKEN_FILE": self.auth_token_file,
            "AUTH_TOKENS_FILE": self.auth_tokens_file,
            "AUTH_ENABLED": bool(self.auth_token or self.auth_tokens_file),
        }


def derive_upstream(default: Config, name: str, settings: Mapping[str, Any],
                    api_key: str, api_key_file: str = "") -> Config:
    """The settings of another upstream, C{name}, from its entry in
    models.yaml: what it gives replaces the default's; the rest (timeouts,
    retries, HTTPS_PROXY, NO_PROXY, ...) is inherited.  Raises L{ConfigError}."""
    where = f"upstream {name!r}"
    base_url = settings.get("base_url")
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError(f"{where}: base_url is required")
    base_url = base_url.strip()
    if not base_url.isascii():
        raise ConfigError(f"{where}: base_url must be plain ASCII")
    _http_url(f"{where}: base_url", base_url, strip_userinfo(base_url))
    subscription_name = settings.get("subscription_name", "")
    if not isinstance(subscription_name, str):
        raise ConfigError(f"{where}: subscription_name must be text")
    subscription_name = subscription_name.strip()
    if subscription_name and not _is_token(subscription_name):
        raise ConfigError(f"{where}: subscription_name is not a valid header name")
    if bool(subscription_name) != bool(api_key):
        raise ConfigError(f"{where}: a subscription_name needs a key (api_key_env or "
                          "api_key_file), and a key needs a subscription_name")
    if any(c in api_key for c in "\r\n\0") or not _is_latin1(api_key):
        raise ConfigError(f"{where}: the key holds a character that cannot go in a header")
    env = {"GENAI_API_VERSION": str(settings.get("api_version", default.api_version) or "")}
    try:
        api_version = _api_version(env)
    except ConfigError:
        raise ConfigError(f"{where}: api_version looks wrong (e.g. 2024-10-21)") from None
    changes: dict[str, Any] = {
        "base_url": base_url, "subscription_name": subscription_name, "api_key": api_key,
        "api_key_file": api_key_file, "api_version": api_version,
    }
    ca_bundle = settings.get("ca_bundle")
    if ca_bundle is not None:
        if not isinstance(ca_bundle, str):
            raise ConfigError(f"{where}: ca_bundle must be a file path")
        changes["ca_bundle"] = ca_bundle.strip()
    for field_name, kind in (("request_timeout", float), ("max_retries", int),
                             ("retry_backoff_sec", float)):
        if field_name not in settings:
            continue
        value = settings[field_name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                kind is int and not isinstance(value, int)) or not math.isfinite(value):
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{where}: {field_name} must be {what} >= 0")
        changes[field_name] = kind(value)
    if changes.get("request_timeout", 1) == 0:
        raise ConfigError(f"{where}: request_timeout must be above 0")
    return replace(default, **changes)


def mask(secret: str) -> str:
    """Show the first four characters of C{secret} and hide the rest."""
    return secret[:4] + "*" * max(len(secret) - 4, 0)


def strip_userinfo(url: str) -> str:
    """Remove C{user:password@} from C{url}; other parts are kept."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=host))


def _required(env: Mapping[str, str], name: str) -> str:
    if name not in env:
        raise ConfigError(f"{name} is required but not set")
    return env[name].strip()


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise ConfigError(f"{name} must be a number >= {minimum:g}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {raw!r}")
    return value


LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("debug", "info", "warn", "error")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw == "warning" and "warn" in choices:
        return "warn"
    if raw not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _boolean(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _http_url(name: str, raw: str, shown: str) -> str:
    """Check that C{raw} is an absolute http(s) URL with a host and valid port."""
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL: {shown!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{name} must be an http:// or https:// URL with a host, got {shown!r}"
        )
    if port == 0:
        raise ConfigError(f"{name} has an invalid port: {shown!r}")
    return raw


def load_config(env: Mapping[str, str]) -> Config:
    """Build a L{Config} from environment variables, or raise L{ConfigError}.

    The three upstream variables must be present.  The subscription name and
    key may be set to empty strings together (an upstream such as Ollama that
    needs no key): then no header is injected.
    """
    subscription_name = _required(env, "GENAI_SUBSCRIPTION_NAME")
    api_key, api_key_file = _secret(env, "GENAI_API_KEY", "genai_api_key")
    if api_key is None:
        raise ConfigError("GENAI_API_KEY is required but not set (or GENAI_API_KEY_FILE, or "
                          "a genai_api_key credential in $CREDENTIALS_DIRECTORY)")
    auth_token, auth_token_file = _secret(env, "AUTH_TOKEN", "auth_token")
    auth_tokens_file = env.get("AUTH_TOKENS_FILE", "").strip()
    if auth_tokens_file:
        if auth_token:
            raise ConfigError("AUTH_TOKENS_FILE and AUTH_TOKEN (or AUTH_TOKEN_FILE) are both set: "
                              "use one (put that token in the file, under a name)")
        try:
            parse_tokens_file(read_secret_text(auth_tokens_file), auth_tokens_file)
        except SecretError as e:
            raise ConfigError(f"AUTH_TOKENS_FILE: {e}") from None
    if bool(subscription_name) != bool(api_key):
        missing = "GENAI_API_KEY" if subscription_name else "GENAI_SUBSCRIPTION_NAME"
        raise ConfigError(
            f"{missing} is empty; set both GENAI_SUBSCRIPTION_NAME and "
            "GENAI_API_KEY, or leave both empty for an upstream without a key"
        )
    if subscription_name and not _is_token(subscription_name):
        raise ConfigError(
            f"GENAI_SUBSCRIPTION_NAME is not a valid header name: {subscription_name!r}"
        )
    if any(c in api_key for c in "\r\n\0") or not _is_latin1(api_key):
        raise ConfigError(
            "GENAI_API_KEY contains a line break, NUL or a character that cannot go in a header"
        )

    base_url = _required(env, "GENAI_BASE_URL")
    if not base_url:
        raise ConfigError("GENAI_BASE_URL is required but empty")
    if not base_url.isascii():
        raise ConfigError(
            "GENAI_BASE_URL must be plain ASCII (percent-encode the path, use the xn-- host name)"
        )
    _http_url("GENAI_BASE_URL", base_url, strip_userinfo(base_url))

    https_proxy = env.get("HTTPS_PROXY", "").strip() or env.get("https_proxy", "").strip()
    if https_proxy:
        _http_url("HTTPS_PROXY", https_proxy, strip_userinfo(https_proxy))

    origins = tuple(
        origin.strip().rstrip("/")
        for origin in env.get("ALLOWED_ORIGINS", "").split(",")
        if origin.strip()
    )

    return Config(
        subscription_name=subscription_name,
        api_key=api_key,
        base_url=base_url,
        request_timeout=_number(env, "REQUEST_TIMEOUT", 60.0, minimum=0.001),
        max_retries=_integer(env, "MAX_RETRIES", 2),
        retry_backoff_sec=_number(env, "RETRY_BACKOFF_SEC", 0.5, minimum=0.0),
        retry_after_max_sec=_number(env, "RETRY_AFTER_MAX_SEC", 10.0, minimum=0.0),
        log_bodies=_boolean(env, "LOG_BODIES", True),
        allowed_origins=origins,
        log_stream_max_bytes=_integer(env, "LOG_STREAM_MAX_BYTES", 0),
        stream_usage=_boolean(env, "STREAM_USAGE", True),
        https_proxy=https_proxy,
        auth_token=auth_token or "",
        auth_token_file=auth_token_file,
        auth_tokens_file=auth_tokens_file,
        api_key_file=api_key_file,
        no_proxy=(env.get("NO_PROXY", "") or env.get("no_proxy", "")).strip(),
        ca_bundle=env.get("GENAI_CA_BUNDLE", "").strip(),
        ssl_cert_file=env.get("SSL_CERT_FILE", "").strip(),
        api_version=_api_version(env),
        shutdown_grace_sec=_number(env, "SHUTDOWN_GRACE_SEC", 30.0, minimum=0.0),
        shutdown_delay_sec=_number(env, "SHUTDOWN_DELAY_SEC", 0.0, minimum=0.0),
        max_request_body_mb=_number(env, "MAX_REQUEST_BODY_MB", 100.0, minimum=0.0),
        log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS, ""),
        log_level=_choice(env, "LOG_LEVEL", LOG_LEVELS, "info"),
        max_header_line_bytes=_integer(env, "MAX_HEADER_LINE_BYTES", 16384),
        max_header_bytes=_integer(env, "MAX_HEADER_BYTES", 65536),
        max_header_count=_integer(env, "MAX_HEADER_COUNT", 100),
        header_timeout=_number(env, "HEADER_TIMEOUT", 10.0, minimum=0.0),
        keepalive_timeout=_number(env, "KEEPALIVE_TIMEOUT", 75.0, minimum=0.0),
        max_client_connections=_integer(env, "MAX_CLIENT_CONNECTIONS", 10000),
    )


def _secret(env: Mapping[str, str], name: str, credential: str) -> tuple[str | None, str]:
    """A secret from C{name}, from the file C{name}_FILE names, or from
    systemd's C{$CREDENTIALS_DIRECTORY/credential}: C{(value, file)}, with
    C{(None, "")} when none of them is set."""
    file_setting = f"{name}_FILE"
    path = env.get(file_setting, "").strip()
    if path and name in env:
        raise ConfigError(f"{name} and {file_setting} are both set: use one")
    if not path:
        if name in env:
            return env[name].strip(), ""
        directory = env.get("CREDENTIALS_DIRECTORY", "").strip()
        if not directory or not os.path.isfile(os.path.join(directory, credential)):
            return None, ""
        path, file_setting = os.path.join(directory, credential), f"credential {credential}"
    try:
        return parse_header_secret(read_secret_text(path), path), path
    except SecretError as e:
        raise ConfigError(f"{file_setting}: {e}") from None


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _api_version(env: Mapping[str, str]) -> str:
    value = env.get("GENAI_API_VERSION", "").strip()
    if value and not all(c.isalnum() or c in "-._" for c in value):
        raise ConfigError(f"GENAI_API_VERSION looks wrong: {value!r} (e.g. 2024-10-21)")
    return value


def _is_latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _is_token(name: str) -> bool:
    """True when C{name} is a valid HTTP header field name (RFC 9110 token)."""
    return all(c in _TOKEN_CHARS for c in name)
