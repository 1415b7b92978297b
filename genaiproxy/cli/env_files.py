"""Env files as clients read them: a value written so that every reader
takes it as it is (docker and podman --env-file, systemd's
EnvironmentFile=, a POSIX shell's C{.}), and a file's assignments set in
place, every other line kept."""

from __future__ import annotations

import re

__all__ = ["PLAIN_PUNCTUATION", "env_value", "merge_env"]

_ASSIGNMENT = re.compile(r"^(\s*(?:export\s+)?)([A-Za-z_][A-Za-z0-9_]*)=(.*)$")

# What an env file's readers all take as it is when unquoted: docker and
# podman run --env-file (which take a value as written, quotes included),
# systemd's EnvironmentFile= and a POSIX shell's `.` (a '#' inside a word is
# no comment to either; '~' is left out: a shell expands it).
PLAIN_PUNCTUATION = "-_.:/+=@%,#"
_PLAIN_VALUE = re.compile(f"[A-Za-z0-9{re.escape(PLAIN_PUNCTUATION)}]*")
# The characters a backslash must protect inside double quotes, for a POSIX
# shell and for systemd's EnvironmentFile= alike.
_DOUBLE_QUOTED_SPECIAL = re.compile(r'([\\"$`])')


def env_value(value: str) -> str:
    """C{value} as an env file's assignment writes it: as it is when every
    reader takes it so; otherwise in double quotes with C{\\ " $ `}
    escaped, which a POSIX shell and systemd's EnvironmentFile= both read
    back as C{value} (systemd's rules: systemd.exec(5), "EnvironmentFile=")."""
    if _PLAIN_VALUE.fullmatch(value):
        return value
    return '"' + _DOUBLE_QUOTED_SPECIAL.sub(r"\\\1", value) + '"'


def merge_env(existing: str | None, values: list[tuple[str, str, bool]],
               header: list[str], export: bool) -> str:
    """C{existing} env-file text with each C{(name, value, force)} of
    C{values} set: in place where the name is assigned (a value the user
    gave is kept unless C{force}), appended otherwise; other lines kept."""
    lines = existing.splitlines() if existing is not None else list(header)
    wanted = {name: (value, force) for name, value, force in values}
    seen: set[str] = set()
    for i, line in enumerate(lines):
        match = _ASSIGNMENT.match(line)
        if match is None or match.group(2) not in wanted:
            continue
        name = match.group(2)
        value, force = wanted[name]
        seen.add(name)
        if force or not match.group(3).strip():
            lines[i] = f"{match.group(1)}{name}={value}"
    prefix = "export " if export else ""
    lines += [f"{prefix}{name}={value}" for name, value, _ in values if name not in seen]
    text = "\n".join(lines) + "\n"
    return existing if existing is not None and text.rstrip("\n") == existing.rstrip("\n") else text
