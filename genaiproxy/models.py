"""The model list served on C{/v1/models}, read from models.yaml.

The file is read again whenever its modification time or size changes, so an
edit shows on the next request.  Two layouts are accepted: a top-level list
of models, or that list under a C{models:} key.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Optional

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
    """models.yaml at C{path}, re-read when the file changes."""

    def __init__(self, path: str, now: Callable[[], float] = time.time) -> None:
        self.path = path
        self._now = now
        self._stamp: Optional[tuple[int, int]] = None
        self._models: list[dict[str, Any]] = []
        self._missing_logged = False

    def models(self) -> list[dict[str, Any]]:
        """The current model list; raises L{ModelsFileError} for a bad file."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if not self._missing_logged:
                log.warn("models_file_missing", path=self.path, models=0)
                self._missing_logged = True
            self._stamp = None
            return []
        self._missing_logged = False
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                raise ModelsFileError(f"cannot read {self.path}: {e}") from None
            self._models = parse_models(text, int(self._now()))
            self._stamp = stamp
            log.info("models_loaded", path=self.path, models=len(self._models))
        return self._models
