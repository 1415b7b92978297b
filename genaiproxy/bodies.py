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
    and write it a reactor turn later; this writes it at once.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body was written whole."""

    def resumeProducing(self) -> None:
        """Nothing to resume: the body was written whole."""

    def stopProducing(self) -> None:
        """Nothing to stop: the body was written whole."""


class KeepOpen:
    """A spooled upload as L{FileBodyProducer} reads it for one attempt:
    through a descriptor of its own (a duplicate, which shares the file's
    position, so the attempt starts where the caller put it).

    twisted.web closes the upload's file with the finished request, and an
    upstream may answer before the whole upload went out (an early 401 or
    413): Twisted's client then goes on sending the rest, which this copy
    can still read.  The producer closes the copy when it is done; a retried
    call's next attempt makes another.  A file with no descriptor (in
    memory) is read as it is and never closed here.
    """

    def __init__(self, file: IO[bytes]) -> None:
        try:
            descriptor = file.fileno()
        except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
            self._file: IO[bytes] = file
            self._owned = False
        else:
            self._file = open(os.dup(descriptor), "rb", buffering=0)  # noqa: SIM115
            self._owned = True

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        """Close this attempt's copy (never the caller's file)."""
        if self._owned:
            self._file.close()


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
