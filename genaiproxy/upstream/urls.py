"""Upstream URLs: built once per request as bytes, handed to treq as they are.

treq parses every URL it is given with hyperlink and re-encodes it
(C{to_uri}: IDNA for the host, maximal percent-encoding of path and query)
before Twisted's Agent parses it again.  For a proxy that is both a cost
(about a quarter of the upstream client's CPU per request, measured with
callgrind) and a change to what the client sent: a query such as
C{?ids=[1,2]} would reach the upstream as C{?ids=%5B1%2C2%5D}.  The URLs
built here are already valid request targets, so L{as_sent} gives treq a
hyperlink URL whose C{to_uri} and C{to_text} return it unchanged.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import cast

from hyperlink import EncodedURL

# What an HTTP/1.1 request target may hold as it is (Twisted's own check):
# printable ASCII without the space, and without "#", which Twisted's Agent
# would take for the start of a fragment and cut off.  Anything else is
# percent-encoded.
_NOT_IN_TARGET = re.compile(rb"[^\x21\x22\x24-\x7e]")


def join_url(base_url: str, path: str, query: bytes = b"") -> bytes:
    """C{base_url} + C{path} (+ C{?query}), with exactly one slash between."""
    url = base_url.rstrip("/") + "/" + path.lstrip("/")
    encoded = url.encode("ascii")
    return encoded + b"?" + query if query else encoded


def target_safe(raw: bytes) -> bytes:
    """C{raw} with every byte a request target may not carry (controls, the
    space, "#", non-ASCII) percent-encoded; everything else left as it is."""
    if _NOT_IN_TARGET.search(raw) is None:
        return raw
    return _NOT_IN_TARGET.sub(lambda match: b"%%%02X" % match.group()[0], raw)


class SentAsIs(EncodedURL):
    """A hyperlink URL that treq sends exactly as it was written.

    treq calls C{url.to_uri().to_text()}; for a URL made by L{as_sent} both
    return it unchanged.  Any URL derived from it (C{replace}, ...) renders as
    hyperlink would.
    """

    _as_text: str | None = None

    def to_uri(self) -> EncodedURL:
        return self if self._as_text is not None else super().to_uri()

    def to_text(self, with_password: bool = False) -> str:
        return self._as_text if self._as_text is not None else super().to_text(with_password)


@lru_cache(maxsize=1024)
def as_sent(url: bytes) -> EncodedURL:
    """The URL C{url} (a valid request target, from L{target_safe} parts)
    for treq.  Parsed once per distinct URL: most requests go to a handful."""
    text = url.decode("ascii")
    parsed = cast(SentAsIs, SentAsIs.from_text(text))  # from_text is typed as URL's
    parsed._as_text = text
    return parsed
