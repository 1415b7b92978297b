"""The one reader of C{--listen}: a strports endpoint description
(C{tcp:8111:interface=127.0.0.1}, C{ssl:...}, C{systemd:domain=INET:index=0})
read as C{strports.service} reads it, into what the callers need: the
daemon (its listen queue), the doctor (the address to probe), C{configure}
and C{quickstart} (the URL a client on this machine uses).

Twisted parses descriptions with C{twisted.internet.endpoints._parse}, which
is private: there is no public parser (C{serverFromString} gives an endpoint
whose port and interface are private attributes).  It is used here only,
so that the proxy reads a description exactly as Twisted does, escapes
(C{interface=\\:\\:1}) included; tests/unit/test_settings_table.py pins
what it gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.endpoints import _parse

# The endpoint types that listen on a TCP port.
TCP_KINDS = ("tcp", "tcp6", "ssl")


@dataclass(frozen=True)
class Listen:
    """A C{--listen} endpoint description, read.

    @ivar description: as given.
    @ivar kind: the endpoint type (C{tcp}, C{tcp6}, C{ssl}, C{unix}, C{systemd}...).
    @ivar port: the port, given by position or as C{port=}; None when none
        is given or it is not a number.
    @ivar interface: the address to listen on, unescaped; empty when not given.
    @ivar options: every C{key=value} of the description.
    """

    description: str
    kind: str
    port: int | None = None
    interface: str = ""
    options: dict[str, str] = field(default_factory=dict)

    @property
    def bound_interface(self) -> str:
        """The address the socket is bound to: C{interface}, else every
        address (C{0.0.0.0}, or C{::} for C{tcp6})."""
        return self.interface or ("::" if self.kind == "tcp6" else "0.0.0.0")

    def with_option(self, name: str, value: str) -> str:
        """The description with C{name=value} added, unless it gives C{name}."""
        if name in self.options:
            return self.description
        return f"{self.description}:{name}={value}"


def parse_listen(description: str) -> Listen:
    """Read an endpoint description as Twisted does; C{ValueError} when it
    cannot be split (a trailing backslash)."""
    try:
        args, options = _parse(description)
    except (RuntimeError, StopIteration):  # a backslash escaping nothing
        raise ValueError(f"cannot read the endpoint description {description!r}") from None
    kind = args[0] if args else ""
    given = options.get("port") or (args[1] if len(args) > 1 else "")
    port = int(given) if given.isascii() and given.isdigit() else None
    return Listen(description, kind, port, options.get("interface", ""), dict(options))
