"""What went wrong with an upstream call, in words fit for a client and a log.

Twisted reports a failed request as one of its wrapper exceptions
(L{ResponseNeverReceived}, L{RequestTransmissionFailed}, L{ResponseFailed})
around the real reasons; L{classify} looks inside and decides the error kind
and whether another attempt may help.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, error
from twisted.python.failure import Failure
from twisted.web.client import (
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)

from genaiproxy.upstream.tunnel import ProxyConnectError


@dataclass
class UpstreamError(Exception):
    """Why an upstream call failed: a kind (C{connect_error}, C{tls_error},
    ...), a message, and whether the call may be retried."""

    kind: str
    message: str
    retryable: bool

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


def _reasons(failure: Failure) -> list[Failure]:
    reasons = getattr(failure.value, "reasons", None)
    return list(reasons) if reasons else [failure]


def _type_name(failure: Failure) -> str:
    # Only a Failure of no exception lacks a type, and that cannot be made.
    assert failure.type is not None
    return failure.type.__name__


def _describe(failures: list[Failure]) -> str:
    return "; ".join(f.getErrorMessage() or _type_name(f) for f in failures)


def describe_failure(failure: Failure) -> str:
    """Words for a failure, looking inside Twisted's wrapper exceptions."""
    return _describe(_reasons(failure))


def classify(failure: Failure) -> UpstreamError:
    """Turn the failure of one upstream attempt into an L{UpstreamError}.

    Retryable, as the error table of the README says: refused or failed
    connections, timeouts waiting for the upstream, a forward proxy that
    cannot be used, and a connection lost before or while the response came
    (including a stale pooled keep-alive connection).  TLS verification
    failures are not: another attempt would fail the same way.
    """
    if failure.check(UpstreamError):
        return cast(UpstreamError, failure.value)
    if failure.check(ProxyConnectError):
        return UpstreamError("proxy_error", failure.getErrorMessage(), True)
    if failure.check(defer.TimeoutError):
        return UpstreamError("read_timeout", "timed out waiting for the upstream", True)
    if failure.check(error.TimeoutError, error.TCPTimedOutError):
        return UpstreamError("connect_timeout", "timed out connecting to the upstream", True)
    if failure.check(error.ConnectError, error.DNSLookupError):
        return UpstreamError("connect_error", failure.getErrorMessage(), True)
    if failure.check(ResponseNeverReceived, RequestTransmissionFailed, ResponseFailed):
        reasons = _reasons(failure)
        if any(r.check(SSL.Error, VerificationError) for r in reasons):
            return UpstreamError("tls_error", _describe(reasons), False)
        proxy_refusal = [r for r in reasons if r.check(ProxyConnectError)]
        if proxy_refusal:
            return UpstreamError("proxy_error", proxy_refusal[0].getErrorMessage(), True)
        kind = "connection_lost"
        if any(r.check(error.ConnectionLost, error.ConnectionDone) is None for r in reasons):
            kind = "protocol_error"
        return UpstreamError(kind, _describe(reasons), True)
    return UpstreamError("request_error", failure.getErrorMessage(), False)
