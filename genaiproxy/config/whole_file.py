"""Reading a watched file whole, as its writer left it.

A file rewritten in place (C{echo NEW > key}, an editor that saves over the
file) is truncated, then written: a read at the wrong moment gets part of it,
a prefix of a key that would then be used until the next check.  The file is
read again while its size or modification time changed during the read.  This
cannot see a writer that pauses between two writes; a file written beside and
renamed into place (C{mv}, which is atomic) is never seen half written, and
is the way to rotate a secret.
"""

from __future__ import annotations

import errno
import os
import stat

# How many reads a file that keeps changing gets before it is refused (it is
# tried again at the next check).
READ_ATTEMPTS = 5

# A file's modification time (in ns) and size: what tells a change.
Stamp = tuple[int, int]


class FileChangingError(OSError):
    """The file changed during each of L{READ_ATTEMPTS} reads."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EAGAIN, "it kept changing while it was read", path)


def stamp_of(status: os.stat_result) -> Stamp:
    """The L{Stamp} of a file's status."""
    return status.st_mtime_ns, status.st_size


def read_whole_file(path: str) -> tuple[str, Stamp]:
    """The UTF-8 text of the file at C{path} and its L{Stamp}, from a read
    during which neither its size nor its modification time changed (what
    is not a regular file, a pipe or a device, is read once).

    @raise OSError: it cannot be read, or kept changing (L{FileChangingError}).
    @raise UnicodeDecodeError: it is not UTF-8.
    """
    for _ in range(READ_ATTEMPTS):
        with open(path, "rb") as f:
            status = os.fstat(f.fileno())
            data = f.read()
            after = stamp_of(os.fstat(f.fileno()))
        if not stat.S_ISREG(status.st_mode) or (
                stamp_of(status) == after and len(data) == after[1]):
            return data.decode("utf-8"), after
    raise FileChangingError(path)
