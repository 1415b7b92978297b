"""The two private hooks of twisted.web's HTTP/1.1 channel the proxy needs,
and the two private attributes it sets ahead of a stream (for memory).

Twisted has no public way to do what these do; this module is the only
place in the server that names them, and each hook only hands over to a
method of ours with a public name.  tests/unit/test_twisted_private.py pins
what we rely on, so that a Twisted release that renames or reroutes them
fails a named test rather than quietly changing answers; setup.py keeps
Twisted below its next major release so that such a release is taken
deliberately.

The package's other private uses of Twisted are each kept to one module of a
lower layer, with their reason: C{twisted.internet._sslverify}'s trust root
interface in L{genaiproxy.config.tls} (pinned by the same tests), and
C{twisted.internet.endpoints._parse} in L{genaiproxy.config.listen}.
"""

from __future__ import annotations

from twisted.web.http import HTTPChannel


class HookedChannel(HTTPChannel):
    """An L{HTTPChannel} whose answer to a malformed request and whose end of
    a request body are methods a subclass overrides by their public names,
    L{bad_request} and L{body_ended}."""

    def __init__(self) -> None:
        super().__init__()
        # The two attributes a stream sets when its answer registers as the
        # channel's producer, set here at Twisted's class defaults (None),
        # so that CPython adds them to the keys it shares among the class's
        # instance dicts with the first connection rather than at the first
        # stream: the shared table takes no new key once some thirty
        # connections were made, and every stream's channel would then get
        # a dict of its own (1.6 KB instead of 0.4 KB).
        self._requestProducer = None
        self._requestProducerStreaming = None

    def bad_request(self) -> None:
        """A request that is not valid HTTP/1.1 (its request line, a header,
        the framing of its body): Twisted writes a bare C{400 Bad Request}
        and closes the connection."""
        super()._respondToBadRequestAndDisconnect()

    def body_ended(self, rest: bytes) -> None:
        """The current request's body is complete; C{rest} is what followed
        it in the same read (the start of a pipelined request).  Twisted
        keeps C{rest} and dispatches the request (L{allContentReceived})."""
        super()._finishRequestBody(rest)

    def _respondToBadRequestAndDisconnect(self) -> None:
        # HTTPChannel answers every malformed request it parses through this
        # method (and Request does, for a bad multipart form); there is no
        # public method, attribute or error to answer them otherwise.
        self.bad_request()

    def _finishRequestBody(self, data: bytes) -> None:
        # The transfer decoders report a body's end only through this method
        # (bound when a header chooses the decoder).  The public method it
        # calls, allContentReceived, cannot tell that end from one that
        # comes after the request was already dispatched (a chunked body
        # refused as it passed the limit, its last chunk in the same read).
        self.body_ended(data)
