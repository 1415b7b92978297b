"""Secrets read from files, re-read when they change, and the clients' tokens.

The upstream key and the clients' tokens may live in files (GENAI_API_KEY_FILE,
AUTH_TOKEN_FILE, AUTH_TOKENS_FILE, or systemd's C{$CREDENTIALS_DIRECTORY}), so
that they appear in no environment or command line.  A L{SecretFile} is read
again when its content changes (checked every few seconds, and at once on
SIGHUP): a rotated key is used from the next request on, while requests in
flight keep the one they started with.  A file that becomes unreadable, empty
or invalid keeps the last good value in service and logs why (each new
failure once).  A file that changes during a read is read again, so that a
key caught mid-write is not taken (see L{genaiproxy.config.whole_file}).  No
message here ever holds a secret's value.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import yaml
from twisted.logger import Logger

from genaiproxy.config.whole_file import read_whole_file

log = Logger(namespace="genaiproxy.credentials")

T = TypeVar("T")

# The name the single AUTH_TOKEN (or AUTH_TOKEN_FILE) goes by in logs.
DEFAULT_CLIENT = "default"
_MAX_NAME = 64


class SecretError(ValueError):
    """A secret file cannot be used; the message says why, never what it holds."""


def read_secret_text(path: str) -> str:
    """The text of a secret file, not caught mid-write (see
    L{read_whole_file}), or L{SecretError}."""
    try:
        return read_whole_file(path)[0]
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else type(e).__name__
        raise SecretError(f"cannot read {path}: {reason}") from None


def parse_header_secret(text: str, path: str) -> str:
    """A key or token file: one value, surrounding white space ignored."""
    value = text.strip()
    if not value:
        raise SecretError(f"{path} is empty")
    if any(c in value for c in "\r\n\0"):
        raise SecretError(f"{path} holds more than one line (or a NUL)")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise SecretError(f"{path} holds a character that cannot go in a header") from None
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with the same key twice (PyYAML
    would keep the last one silently: a duplicated client name)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, str):
            raise SecretError("client names must be text")
        if key in seen:
            raise SecretError(f"client name {key!r} appears twice")
        seen.add(key)
    return loader.construct_mapping(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def parse_tokens_file(text: str, path: str) -> dict[str, str]:
    """AUTH_TOKENS_FILE: a YAML mapping of client names to tokens."""
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except SecretError as e:
        raise SecretError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise SecretError(f"{path} is not valid YAML{where}") from None
    if not isinstance(document, dict) or not document:
        raise SecretError(f"{path} must be a mapping of client names to tokens")
    tokens: dict[str, str] = {}
    owners: dict[str, str] = {}
    for name, token in document.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME or not name.isprintable():
            raise SecretError(f"{path}: client names must be printable text of 1 to "
                              f"{_MAX_NAME} characters")
        if not isinstance(token, str):
            raise SecretError(f"{path}: the token of {name!r} must be a string")
        token = parse_header_secret(token, f"{path}: the token of {name!r}")
        if token in owners:
            raise SecretError(f"{path}: {owners[token]!r} and {name!r} have the same token")
        owners[token] = name
        tokens[name] = token
    return tokens


class SecretFile(Generic[T]):
    """A secret kept in a file, parsed by C{parse}, read again when it
    changes; C{on_change} receives each new value, the first one included."""

    def __init__(self, setting: str, path: str, parse: Callable[[str, str], T],
                 on_change: Callable[[T], None],
                 on_load: Callable[[str, bool], None] | None = None) -> None:
        self.setting = setting
        self.path = path
        self._parse = parse
        self._on_change = on_change
        # Told of each reload (the setting's name, whether it succeeded).
        self._on_load = on_load
        self._text = read_secret_text(path)
        self.value: T = parse(self._text, path)  # start-up: errors stop it
        # The last failure logged, while the file cannot be used: the text
        # that failed (None when it could not be read) and why.
        self._failure: tuple[str | None, str] | None = None
        on_change(self.value)

    def refresh(self, force: bool = False) -> None:
        """Read the file again; take a new value, or keep the last good one
        and log why the file cannot be used.  Each new failure is logged (a
        new content, or a new reason); the very same one again is not,
        unless C{force} (SIGHUP) asks for it."""
        text: str | None = None
        try:
            text = read_secret_text(self.path)
            if text == self._text and not force and self._failure is None:
                return
            value = self._parse(text, self.path)
        except SecretError as problem:
            failure = (text, str(problem))
            if failure != self._failure or force:
                log.error("credentials_reload_failed", setting=self.setting, path=self.path,
                          error=str(problem), kept="the last good value")
                if self._on_load is not None:
                    self._on_load(self.setting, False)
            self._failure = failure
            return
        # A file mended back to the value in service is told too: the
        # operator who saw the error sees it is over.
        changed, mended = text != self._text, self._failure is not None
        self._text, self.value, self._failure = text, value, None
        if changed:
            self._on_change(value)
        if changed or mended:
            log.info("credentials_reloaded", setting=self.setting, path=self.path)
            if self._on_load is not None:
                self._on_load(self.setting, True)


class ClientTokens:
    """The tokens clients may present, by client name, checked in constant time.

    Each token is kept as its SHA-256 digest; a presented token is hashed
    and compared with every digest (no early exit), so neither the time
    taken nor the number of comparisons says which token came close.
    """

    def __init__(self) -> None:
        self._single: dict[str, str] = {}
        self._named: dict[str, str] = {}
        self._digests: tuple[tuple[str, bytes], ...] = ()

    @property
    def enabled(self) -> bool:
        """Whether clients must present a token at all."""
        return bool(self._digests)

    def __len__(self) -> int:
        return len(self._digests)

    def set_single(self, token: str) -> None:
        """AUTH_TOKEN (or its file): the client named L{DEFAULT_CLIENT}."""
        self._single = {DEFAULT_CLIENT: token} if token else {}
        self._rebuild()

    def set_named(self, tokens: Mapping[str, str]) -> None:
        """AUTH_TOKENS_FILE's mapping of names to tokens."""
        self._named = dict(tokens)
        self._rebuild()

    def _rebuild(self) -> None:
        merged = {**self._named, **self._single}
        self._digests = tuple(
            (name, hashlib.sha256(token.encode("utf-8")).digest()) for name, token in merged.items()
        )

    def match(self, presented: bytes) -> str | None:
        """The name of the client whose token C{presented} is, else None."""
        digest = hashlib.sha256(presented).digest()
        found = None
        for name, expected in self._digests:
            if hmac.compare_digest(digest, expected):
                found = name
        return found
