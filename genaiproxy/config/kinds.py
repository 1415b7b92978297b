"""The kinds of value an environment setting holds: how a variable's text
becomes the value, the one-line message when it cannot, and how the value is
shown (in the start-up event and by the doctor) without giving a secret away.

Each kind reads text that is already stripped and not empty: the table
(L{genaiproxy.config.settings}) gives the default for an unset or empty
variable, so a kind never sees one unless its setting is required.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable.

    @ivar setting: the variable at fault, when it is one of the table's
        (the doctor shows that setting's line of the table with the message).
    """

    def __init__(self, message: str, setting: str = "") -> None:
        super().__init__(message)
        self.setting = setting


@dataclass(frozen=True)
class Text:
    """Any text."""

    def label(self) -> str:
        """What the reference's Type column calls this kind."""
        return "text"

    def read(self, variable: str, raw: str) -> Any:
        """The value of C{raw}, or L{ConfigError} naming C{variable}."""
        return raw

    def show(self, value: Any) -> Any:
        """The value as the start-up event and the doctor show it."""
        return value


@dataclass(frozen=True)
class Path(Text):
    """The path of a file (or a folder); whether it exists is checked by
    whatever reads it."""

    def label(self) -> str:
        return "path"


@dataclass(frozen=True)
class Secret(Text):
    """A key or a token: also read from C{<VARIABLE>_FILE} or from systemd's
    C{$CREDENTIALS_DIRECTORY/<credential>}; shown masked.

    @ivar credential: its file's name in C{$CREDENTIALS_DIRECTORY}.
    @ivar file_field: the L{Config} field of the file it was read from.
    """

    credential: str
    file_field: str
    def label(self) -> str:
        return "secret"

    def show(self, value: Any) -> Any:
        return mask(value)


@dataclass(frozen=True)
class Number(Text):
    """A number, C{minimum} or more."""

    minimum: float = 0.0
    def label(self) -> str:
        return "number" if self.minimum == 0 else f"number >= {self.minimum:g}"

    def read(self, variable: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a number, got {raw!r}", variable) from None
        if not math.isfinite(value) or value < self.minimum:
            raise ConfigError(f"{variable} must be a number >= {self.minimum:g}, got {raw!r}",
                              variable)
        return value


@dataclass(frozen=True)
class Integer(Text):
    """A whole number, 0 or more."""

    def label(self) -> str:
        return "whole number"

    def read(self, variable: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a whole number, got {raw!r}",
                              variable) from None
        if value < 0:
            raise ConfigError(f"{variable} must not be negative, got {raw!r}", variable)
        return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Boolean(Text):
    """true/false, 1/0, yes/no, on/off, in any letter case."""

    def label(self) -> str:
        return "true or false"

    def read(self, variable: str, raw: str) -> bool:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ConfigError(f"{variable} must be true or false, got {lowered!r}", variable)


@dataclass(frozen=True)
class Choice(Text):
    """One word of C{choices}, in any letter case; C{synonyms} are read as
    the word they name."""

    choices: tuple[str, ...]
    synonyms: tuple[tuple[str, str], ...] = ()

    def label(self) -> str:
        return ", ".join(self.choices)

    def read(self, variable: str, raw: str) -> str:
        lowered = raw.lower()
        lowered = dict(self.synonyms).get(lowered, lowered)
        if lowered not in self.choices:
            raise ConfigError(
                f"{variable} must be one of {', '.join(self.choices)}, got {lowered!r}", variable)
        return lowered


@dataclass(frozen=True)
class HttpUrl(Text):
    """An absolute http:// or https:// URL with a host; it may carry
    C{user:password@}, which is never shown.  C{ascii_only}: refused unless
    plain ASCII (what goes upstream in a request line)."""

    ascii_only: bool = False
    def label(self) -> str:
        return "URL"

    def read(self, variable: str, raw: str) -> str:
        if not raw:
            raise ConfigError(f"{variable} is required but empty", variable)
        if self.ascii_only and not raw.isascii():
            raise ConfigError(f"{variable} must be plain ASCII (percent-encode the path, use "
                              "the xn-- host name)", variable)
        return check_http_url(variable, raw)

    def show(self, value: Any) -> Any:
        return strip_userinfo(value)


@dataclass(frozen=True)
class RedisUrl(Text):
    """A C{redis://} or C{rediss://} (TLS) URL with a host, and optionally a
    port and a database number (C{/0}); a password in it is never shown."""

    def label(self) -> str:
        return "URL"

    def read(self, variable: str, raw: str) -> str:
        parts, port, shown = _url_parts(variable, raw)
        database = parts.path.strip("/")
        if parts.scheme not in ("redis", "rediss") or not parts.hostname or port == 0 or (
                database and not database.isdigit()):
            raise ConfigError(f"{variable} must be redis://host[:port][/db] or rediss://..., "
                              f"got {shown!r}", variable)
        return raw

    def show(self, value: Any) -> Any:
        return strip_userinfo(value)


@dataclass(frozen=True)
class HeaderName(Text):
    """An HTTP header name (an RFC 9110 token); empty is allowed (no header)."""

    def label(self) -> str:
        return "header name"

    def read(self, variable: str, raw: str) -> str:
        if raw and not is_token(raw):
            raise ConfigError(f"{variable} is not a valid header name: {raw!r}", variable)
        return raw


@dataclass(frozen=True)
class ApiVersion(Text):
    """An Azure OpenAI C{api-version} (letters, digits, C{-._})."""

    def label(self) -> str:
        return "text"

    def read(self, variable: str, raw: str) -> str:
        if not all(c.isalnum() or c in "-._" for c in raw):
            raise ConfigError(f"{variable} looks wrong: {raw!r} (e.g. 2024-10-21)", variable)
        return raw


@dataclass(frozen=True)
class Origins(Text):
    """Comma-separated browser origins (a trailing C{/} is dropped)."""

    def label(self) -> str:
        return "list"

    def read(self, variable: str, raw: str) -> tuple[str, ...]:
        return tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())

    def show(self, value: Any) -> Any:
        return list(value)


def _url_parts(variable: str, raw: str) -> tuple[SplitResult, int | None, str]:
    """C{raw} split, its port, and how it is shown (without credentials);
    L{ConfigError} naming C{variable} when it does not parse."""
    shown = strip_userinfo(raw)
    try:
        parts = urlsplit(raw)
        return parts, parts.port, shown
    except ValueError:
        raise ConfigError(f"{variable} is not a valid URL: {shown!r}", variable) from None


def check_http_url(variable: str, raw: str) -> str:
    """C{raw}, when it is an absolute http(s) URL with a host and a valid
    port; else L{ConfigError} naming C{variable} (the URL shown without its
    credentials)."""
    parts, port, shown = _url_parts(variable, raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{variable} must be an http:// or https:// URL with a host, got {shown!r}", variable)
    if port == 0:
        raise ConfigError(f"{variable} has an invalid port: {shown!r}", variable)
    return raw


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


_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def is_token(name: str) -> bool:
    """True when C{name} is a valid HTTP header field name (RFC 9110 token)."""
    return all(c in _TOKEN_CHARS for c in name)


def is_header_value(text: str) -> bool:
    """True when C{text} can go in a header as it is: no line break or NUL,
    and Latin-1 only."""
    if any(c in text for c in "\r\n\0"):
        return False
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True
