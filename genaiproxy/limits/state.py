"""The state file: this process's day and month windows across restarts.

L{StateFile} reads the file when the proxy starts and writes it (whole,
through a temporary file renamed over it: Twisted's
C{FilePath.setContent}) every few seconds while the windows change, and
once more at the end of a stop.  A file that cannot be read is logged
(ERROR) and the windows start from zero: it never stops the proxy.  Only
the calendar windows are kept; a minute window refills within a minute
anyway.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.filepath import FilePath

from genaiproxy.config import Config
from genaiproxy.limits.memory import MemoryWindows

__all__ = ["SAVE_INTERVAL", "StateFile", "state_path"]

log = Logger(namespace="genaiproxy.limits")

SAVE_INTERVAL = 5.0
_VERSION = 1


def state_path(config: Config, environ: Mapping[str, str]) -> str:
    """Where the state file is: C{LIMITS_STATE_FILE}; else in systemd's
    C{STATE_DIRECTORY}; else under C{$XDG_STATE_HOME} (or C{~/.local/state})."""
    if config.limits_state_file:
        return os.path.abspath(os.path.expanduser(config.limits_state_file))
    if config.state_directory:
        # systemd may list several directories, separated by colons.
        return os.path.join(config.state_directory.split(":")[0], "limits.json")
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                         "state")
    return os.path.join(base, "genai-proxy", "limits.json")


class StateFile(Service):
    """Keeps C{windows}' days and months in the file at C{path}."""

    def __init__(self, path: str, windows: MemoryWindows, clock: IReactorTime) -> None:
        self.path = path
        self._windows = windows
        self._clock = clock
        self._saver = LoopingCall(self.save)
        self._saver.clock = clock
        self._failing = False

    def startService(self) -> None:
        super().startService()
        self.load()
        self._saver.start(SAVE_INTERVAL, now=False)

    def stopService(self) -> None:
        """Stop the periodic writes (the stop's own write comes once the
        requests in flight have ended: L{save})."""
        super().stopService()
        if self._saver.running:
            self._saver.stop()

    def load(self) -> None:
        """Take the windows of the file back, if there is one."""
        try:
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
            if not isinstance(saved, dict) or saved.get("version") != _VERSION or (
                    not isinstance(saved.get("clients"), dict)):
                raise ValueError("not a state file of this version")
            self._windows.restore(saved["clients"], self._clock.seconds())
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, AttributeError) as e:
            log.error("limits_state_unreadable", path=self.path, error=str(e)[:200])
            return
        log.info("limits_state_loaded", path=self.path, clients=len(saved["clients"]))

    def save(self) -> None:
        """Write the windows when they changed since the last write."""
        if not self._windows.changed:
            return
        saved = {"version": _VERSION, "saved_at": self._clock.seconds(),
                 "clients": self._windows.snapshot()}
        target = FilePath(self.path)
        try:
            target.parent().makedirs(ignoreExistingDirectory=True)
            target.setContent(json.dumps(saved, separators=(",", ":")).encode())
        except OSError as e:
            self._windows.changed = True  # try again next time
            if not self._failing:
                log.error("limits_state_write_failed", path=self.path, error=str(e)[:200])
            self._failing = True
            return
        self._failing = False
