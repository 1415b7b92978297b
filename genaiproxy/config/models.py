"""The model list served on C{/v1/models}, read from models.yaml.

The file is read again whenever its modification time or size changes (on
the next request, on SIGHUP, and by a periodic check), so an edit shows
without a restart; while its last load failed, the periodic check reads it
again even unchanged (a key file it names may have appeared since).  Two
layouts are accepted: a top-level list of models, or that list under a
C{models:} key (beside which an C{upstreams:} key may name more upstreams;
see L{genaiproxy.config.routing}).
The keys are declared in L{genaiproxy.config.models_keys}.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import yaml
from twisted.logger import Logger
from twisted.python.failure import Failure

from genaiproxy.config.limits import NO_LIMITS, LimitRules, LimitsError, parse_limits
from genaiproxy.config.models_keys import (
    COUNT_KEYS,
    DEFAULT_OBJECT,
    DEFAULT_OWNER,
    UNLISTED_KEYS,
)
from genaiproxy.config.routing import NO_ROUTING, RoutingError, RoutingTable
from genaiproxy.config.whole_file import Stamp, read_whole_file, stamp_of

log = Logger(namespace="genaiproxy.models")


class ModelsFileError(Exception):
    """models.yaml exists but cannot be used; the message says why."""


# Builds the routing table of a file from its upstreams section and its
# entries (or raises RoutingError).
RoutingBuilder = Callable[[Any, list[dict[str, Any]]], RoutingTable]


def parse_models(text: str, now: int) -> list[dict[str, Any]]:
    """The model objects described by YAML C{text}, with defaults filled in.

    Entries without an C{id} are skipped.  C{now} is the default C{created}.
    """
    return parse_models_file(text, now)[0]


def parse_models_file(text: str, now: int) -> tuple[list[dict[str, Any]], Any]:
    """The model entries of YAML C{text} (defaults filled in, routing keys
    kept) and its C{upstreams} section (None when absent).  A number of
    tokens (C{max_output_tokens}, C{context_window}) that is not a whole
    number above 0 refuses the file."""
    entries, upstreams, _ = parse_models_document(text, now)
    return entries, upstreams


def parse_models_document(text: str, now: int) -> tuple[list[dict[str, Any]], Any, Any]:
    """L{parse_models_file}'s, and the file's C{limits} section (None when
    absent)."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # Where, not what: PyYAML's message quotes the line, which may hold a key.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ModelsFileError(f"invalid YAML{where}") from None
    if document is None:
        return [], None, None
    upstreams = limits = None
    if isinstance(document, dict):
        if "models" not in document:
            raise ModelsFileError("expected a list of models or a 'models:' key")
        upstreams, limits = document.get("upstreams"), document.get("limits")
        document = document["models"] or []
    if not isinstance(document, list):
        raise ModelsFileError("'models' must be a list")
    models = []
    for entry in document:
        if not isinstance(entry, dict) or entry.get("id") in (None, ""):
            keys = sorted(map(str, entry)) if isinstance(entry, dict) else type(entry).__name__
            log.warn("models_entry_skipped", reason="entry has no id", keys=keys)
            continue
        model = dict(entry)
        model["id"] = str(model["id"])
        _check_counts(model)
        model.setdefault("object", DEFAULT_OBJECT)
        model.setdefault("owned_by", DEFAULT_OWNER)
        model.setdefault("created", now)
        models.append(model)
    return models, upstreams, limits


def _check_counts(model: dict[str, Any]) -> None:
    """Each number of tokens of C{model} is a whole number above 0 (YAML's
    C{true} is not one, nor is C{8k} or C{1e6})."""
    for key in COUNT_KEYS:
        value = model.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ModelsFileError(f"model {model['id']!r}: {key} must be a whole number of "
                                  f"tokens above 0, not {str(value)[:40]!r}")


def served(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The model objects of C{entries} as C{/v1/models} shows them: without
    the keys that are not listed, such as the routing keys (hidden ones
    included, for the caller to filter)."""
    if not any(UNLISTED_KEYS & entry.keys() for entry in entries):
        return entries
    return [{key: value for key, value in entry.items() if key not in UNLISTED_KEYS}
            for entry in entries]


class ModelCatalog:
    """models.yaml at C{path}, read again when the file changes.

    A file that changes into something unusable keeps the last good list in
    service (and logs why); only when there never was a good list does
    L{models} raise L{ModelsFileError}.
    """

    def __init__(self, path: str, now: Callable[[], float] = time.time,
                 on_load: Callable[[bool], None] | None = None,
                 routing: RoutingBuilder | None = None) -> None:
        # Absolute, so that every message names the very file looked at.
        self.path = os.path.abspath(path)
        self._now = now
        # Told of each load of the file: whether it succeeded (for the metrics).
        self._on_load = on_load
        self._build_routing = routing
        self._stamp: Stamp | None = None
        self._models: list[dict[str, Any]] | None = None
        self._all: list[dict[str, Any]] = []  # hidden ones too
        # The routing of the file in service; swapped whole with the list.
        self.routing: RoutingTable = NO_ROUTING
        # Told of each new routing table that took service.
        self.on_routing: Callable[[RoutingTable], None] | None = None
        # The limits of the file in service, and who is told of new ones.
        self.limits: LimitRules = NO_LIMITS
        self.on_limits: Callable[[LimitRules], None] | None = None
        # Why the last load failed (None when it did not), and the text that
        # failed (None when the file could not be read).
        self._problem: ModelsFileError | None = None
        self._failed_text: str | None = None
        self._missing_logged = False

    def models(self) -> list[dict[str, Any]]:
        """The current model list (re-read first if the file changed)."""
        self.refresh()
        if self._models is None:
            assert self._problem is not None
            raise self._problem
        return self._models

    @property
    def usable(self) -> bool:
        """False while the file exists but no version of it could be loaded."""
        self.refresh()
        return self._models is not None

    def find(self, model_id: str) -> dict[str, Any] | None:
        """The model object with C{model_id}, hidden ones included."""
        self.models()
        for model in self._all:
            if model["id"] == model_id:
                return model
        return None

    def refresh(self, force: bool = False) -> None:
        """Read the file again if it changed (or always, with C{force}: SIGHUP,
        which logs a failure again even when it is the same one)."""
        self._load(again=force, force=force)

    def check(self) -> None:
        """The periodic check: read the file again if it changed, or while its
        last load failed even if it did not, since a key file or variable it
        names may have appeared.  The same failure again is not logged again;
        a new one is."""
        self._load(again=self._problem is not None, force=False)

    def _load(self, again: bool, force: bool) -> None:
        """Read the file if it changed (or C{again}); log a failure unless it
        is the last one again (C{force} logs it in any case)."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing_logged:
                log.warn("models_file_missing", path=self.path, models=0)
                self._missing_logged = True
            self._stamp, self._models, self._problem = None, [], None
            self._all = []
            self._set_routing(NO_ROUTING)
            self._set_limits(NO_LIMITS)
            return
        self._missing_logged = False
        stamp = stamp_of(stat)
        if stamp == self._stamp and not again:
            return
        self._stamp = stamp
        text: str | None = None
        bug: Failure | None = None
        try:
            try:
                # Its stamp as read: a write during the read is seen next time.
                text, self._stamp = read_whole_file(self.path)
            except (OSError, UnicodeDecodeError) as e:
                raise ModelsFileError(f"cannot read {self.path}: {e}") from None
            entries, upstreams, limits_section = parse_models_document(text, int(self._now()))
            try:
                limits = parse_limits(limits_section, entries)
            except LimitsError as e:
                raise ModelsFileError(str(e)) from None
            routing = NO_ROUTING
            if self._build_routing is not None:
                try:
                    routing = self._build_routing(upstreams, entries)
                except RoutingError as e:
                    raise ModelsFileError(str(e)) from None
            # The upstreams take service before the list does, so that no
            # model is listed whose upstream could not be set up.
            try:
                self._set_routing(routing)
            except Exception as e:  # a bug of ours: the last good file stays
                bug = Failure()
                raise ModelsFileError(
                    f"its upstreams could not be set up ({type(e).__name__})") from None
        except ModelsFileError as problem:
            again_the_same = (self._problem is not None and text == self._failed_text
                              and str(problem) == str(self._problem))
            self._problem, self._failed_text = problem, text
            if again_the_same and not force:
                return
            if bug is not None:
                log.failure("cannot set up the upstreams of {path}", bug, path=self.path)
            if self._models is None:
                log.error("models_load_failed", path=self.path, error=str(problem))
            else:
                log.error("models_reload_failed", path=self.path, error=str(problem),
                          models_kept=len(self._models))
            if self._on_load is not None:
                self._on_load(False)
            return
        self._set_limits(limits)
        shown = served(entries)
        self._all = shown
        self._models = [model for model, entry in zip(shown, entries, strict=True)
                        if entry.get("hidden") is not True]
        self._problem = None
        log.info("models_loaded", path=self.path, models=len(self._models),
                 **({"upstreams": sorted(routing.upstreams)} if routing.upstreams else {}))
        if self._on_load is not None:
            self._on_load(True)

    def _set_limits(self, limits: LimitRules) -> None:
        if limits == self.limits:
            return
        self.limits = limits
        if self.on_limits is not None:
            self.on_limits(limits)

    def _set_routing(self, routing: RoutingTable) -> None:
        if routing is self.routing:
            return
        self.routing = routing
        if self.on_routing is not None:
            self.on_routing(routing)
