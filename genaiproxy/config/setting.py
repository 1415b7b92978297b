"""One environment setting as the table of L{genaiproxy.config.settings}
declares it: its variable, default, kind, help and secrecy, and how its
value is read from an environment and shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from genaiproxy.config.kinds import ConfigError, HttpUrl, RedisUrl, Text

__all__ = ["REQUIRED", "Setting", "setting"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


# The default of a setting that must be set.
REQUIRED: Any = _Required()

@dataclass(frozen=True)
class Setting:
    """One environment setting, as the table declares it.

    @ivar name: the environment variable.
    @ivar default: the value when the variable is unset or empty;
        L{REQUIRED} when it must be set.
    @ivar help: one line, for C{--help}.
    @ivar kind: what text it accepts and how its value is shown.
    @ivar group: the heading it is listed under.
    @ivar secret: a key or a token: never shown whole.
    @ivar shown_default: how the default reads, when not the value itself.
    @ivar details: more than the help line, for the reference page.
    @ivar aliases: other variables honoured when this one is unset or empty.
    @ivar logged_as: its field in the C{startup_config} event: empty for its
        own name, None when the event leaves it out.
    @ivar attribute: its L{Config} field.
    """

    name: str
    default: Any
    help: str
    kind: Text
    group: str
    secret: bool = False
    shown_default: str = ""
    details: str = ""
    aliases: tuple[str, ...] = ()
    logged_as: str | None = ""
    attribute: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def default_text(self) -> str:
        """The default as a person reads it; empty for an empty default."""
        if self.shown_default:
            return self.shown_default
        return "required" if self.required else self.text(self.default)

    @staticmethod
    def text(value: Any) -> str:
        """A value as it would be written in the variable."""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, tuple | list):
            return ",".join(map(str, value))
        return str(value)

    def raw(self, env: Mapping[str, str]) -> str | None:
        """The variable's text in C{env}, stripped (its aliases' when it is
        empty), or None when none of them is set."""
        given = [env[name].strip() for name in (self.name, *self.aliases) if name in env]
        if not given:
            return None
        return next((text for text in given if text), "")

    def read(self, env: Mapping[str, str]) -> Any:
        """The value in C{env}: the default when unset or empty, else what
        the kind makes of the text.  Raises L{ConfigError}."""
        raw = self.raw(env)
        if raw is None and self.required:
            raise ConfigError(f"{self.name} is required but not set", self.name)
        if not raw and not self.required:
            return self.default
        return self.kind.read(self.name, raw or "")

    def shown(self, value: Any) -> Any:
        """C{value} as the start-up event and the doctor show it."""
        return self.kind.show(value)


def setting(name: str, default: Any, help: str, kind: Text | None = None, **more: Any) -> Any:
    """A field of L{Config} that is the environment setting C{name} (see
    L{Setting} for C{more}).  Keys, tokens and URLs (which may carry a
    password) are left out of the C{repr}."""
    declared = Setting(name, default, help, kind or Text(), **more)
    hidden = declared.secret or isinstance(declared.kind, HttpUrl | RedisUrl)
    return field(repr=not hidden, metadata={"setting": declared})
