"""Request bodies on their way upstream, as treq's C{data_to_body_producer} sees them.

A body is bytes held in memory (the JSON APIs, small uploads) or a file
twisted.web spooled a large upload to.  Bytes are written in one go, in the
same reactor turn as the request head; a file is read in pieces by Twisted's
L{FileBodyProducer}, paced by the connection, never loaded whole.
"""

from __future__ import annotations

import os
from typing import IO, Any, TypeAlias

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer
from twisted.web.client import FileBodyProducer
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

# A request body: in memory, or in a (spooled) file to stream from.
RequestBody: TypeAlias = bytes | IO[bytes] | None


@implementer(IBodyProducer)
class BytesProducer:
    """An L{IBodyProducer} for a body already in memory.

    Twisted's L{FileBodyProducer} would hand a short body to the cooperator
    and write it a reactor turn later; this writes it at once, and then lets
    go of it: Twisted keeps the producer with its request until the whole
    answer is read (a stream's whole life), and starts a producer only once.
    """

    __slots__ = ("_body", "length")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        body, self._body = self._body, b""
        consumer.write(body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body was written whole."""

    def resumeProducing(self) -> None:
        """Nothing to resume: the body was written whole."""

    def stopProducing(self) -> None:
        """Nothing to stop: the body was written whole."""


class KeepOpen:
    """A spooled upload as L{FileBodyProducer} reads it for one attempt:
    through a descriptor of its own, at a position of its own (positioned
    reads), starting where the caller put the file.

    twisted.web closes the upload's file with the finished request, and an
    upstream may answer before the whole upload went out (an early 401,
    413 or 429): Twisted's client then goes on sending the rest, which this
    copy can still read, while a retried call's next attempt reads the same
    file from its start through another copy.  The producer closes its copy
    when it is done.  A file with no descriptor (in memory) is read as it is
    and never closed here.
    """

    def __init__(self, file: IO[bytes]) -> None:
        self._file: IO[bytes] | None = None
        self._fd = -1
        try:
            descriptor = file.fileno()
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
            self._file = file
            return
        self._fd = os.dup(descriptor)
        self._position = file.tell()

    def read(self, size: int = -1) -> bytes:
        if self._file is not None:
            return self._file.read(size)
        if size < 0:
            size = max(os.fstat(self._fd).st_size - self._position, 0)
        data = os.pread(self._fd, size, self._position)
        self._position += len(data)
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self._file is not None:
            return self._file.seek(offset, whence)
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position,
                os.SEEK_END: os.fstat(self._fd).st_size}[whence]
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._file.tell() if self._file is not None else self._position

    def close(self) -> None:
        """Close this attempt's copy (never the caller's file)."""
        if self._file is None and self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        # An attempt that never started producing (its connection failed)
        # never closes its copy: the descriptor goes with the object.
        self.close()


def body_producer(data: Any) -> IBodyProducer:
    """treq's C{data_to_body_producer}: bytes as they are, a file from where
    it stands (the caller rewinds it before each attempt)."""
    if isinstance(data, bytes):
        return BytesProducer(data)
    if IBodyProducer.providedBy(data):
        return data  # already a producer (an empty body that must be announced)
    return FileBodyProducer(KeepOpen(data))


def body_length(body: RequestBody) -> int:
    """The size of a request body held in memory or in a file."""
    if body is None:
        return 0
    if isinstance(body, bytes):
        return len(body)
    return os.fstat(body.fileno()).st_size
