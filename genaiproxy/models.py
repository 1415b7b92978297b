"""The model list served on C{/v1/models}, read from models.yaml.

The file is read again whenever its modification time or size changes (on
the next request, on SIGHUP, and by a periodic check), so an edit shows
without a restart.  Two layouts are accepted: a top-level list
of models, or that list under a C{models:} key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import yaml
from twisted.logger import Logger

log = Logger(namespace="genaiproxy.models")

DEFAULT_OBJECT = "model"
DEFAULT_OWNER = "genai"


class ModelsFileError(Exception):
    """models.yaml exists but cannot be used; the message says why."""


def parse_models(text: str, now: int) -> list[dict[str, Any]]:
    """The model objects described by YAML C{text}, with defaults filled in.

    Entries without an C{id} are skipped.  C{now} is the default C{created}.
    """
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ModelsFileError(f"invalid YAML: {e}") from None
    if document is None:
        return []
    if isinstance(document, dict):
        if "models" not in document:
            raise ModelsFileError("expected a list of models or a 'models:' key")
        document = document["models"] or []
    if not isinstance(document, list):
        raise ModelsFileError("'models' must be a list")
    models = []
    for entry in document:
        if not isinstance(entry, dict) or entry.get("id") in (None, ""):
            log.warn("models_entry_skipped", reason="entry has no id", entry=repr(entry)[:200])
            continue
        model = dict(entry)
        model["id"] = str(model["id"])
        model.setdefault("object", DEFAULT_OBJECT)
        model.setdefault("owned_by", DEFAULT_OWNER)
        model.setdefault("created", now)
        models.append(model)
    return models


class ModelCatalog:
    """models.yaml at C{path}, read again when the file changes.

    A file that changes into something unusable keeps the last good list in
    service (and logs why); only when there never was a good list does
    L{models} raise L{ModelsFileError}.
    """

    def __init__(self, path: str, now: Callable[[], float] = time.time,
                 on_load: Callable[[bool], None] | None = None) -> None:
        # Absolute, so that every message names the very file looked at.
        self.path = os.path.abspath(path)
        self._now = now
        # Told of each load of the file: whether it succeeded (for the metrics).
        self._on_load = on_load
        self._stamp: tuple[int, int] | None = None
        self._models: list[dict[str, Any]] | None = None
        self._problem: ModelsFileError | None = None
        self._missing_logged = False

    def models(self) -> list[dict[str, Any]]:
        """The current model list (re-read first if the file changed)."""
        self.refresh()
        if self._models is None:
            assert self._problem is not None
            raise self._problem
        return self._models

    def refresh(self, force: bool = False) -> None:
        """Read the file again if it changed (or always, with C{force})."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing_logged:
                log.warn("models_file_missing", path=self.path, models=0)
                self._missing_logged = True
            self._stamp, self._models, self._problem = None, [], None
            return
        self._missing_logged = False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp and not force:
            return
        self._stamp = stamp
        try:
            try:
                with open(self.path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise ModelsFileError(f"cannot read {self.path}: {e}") from None
            models = parse_models(text, int(self._now()))
        except ModelsFileError as problem:
            self._problem = problem
            if self._models is None:
                log.error("models_load_failed", path=self.path, error=str(problem))
            else:
                log.error("models_reload_failed", path=self.path, error=str(problem),
                          models_kept=len(self._models))
            if self._on_load is not None:
                self._on_load(False)
            return
        self._models, self._problem = models, None
        log.info("models_loaded", path=self.path, models=len(models))
        if self._on_load is not None:
            self._on_load(True)
