"""The upstream HTTP/1.1 client on in-memory transports."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import error
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from genaiproxy.client import ConnectionPool, UpstreamConnection, serialize_head


class Body(Protocol):
    """Collects a delivered body and how it ended."""

    def __init__(self) -> None:
        self.data = b""
        self.reason: Any = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.reason = reason


class FakeEndpoint:
    """Connects every request to a new StringTransport, recording them."""

    def __init__(self) -> None:
        self.transports: list[StringTransport] = []
        self.connections: list[UpstreamConnection] = []

    def connect(self, factory: Any) -> Deferred[UpstreamConnection]:
        connection = factory.buildProtocol(None)
        transport = StringTransport()
        connection.makeConnection(transport)
        self.transports.append(transport)
        self.connections.append(connection)
        return succeed(connection)


def make_pool():
    clock, endpoint = Clock(), FakeEndpoint()
    return ConnectionPool(clock, lambda key: endpoint, idle_timeout=30), clock, endpoint


def fire(pool, head=b"GET / HTTP/1.1\r\n\r\n", head_request=False):
    responses: list[Any] = []
    pool.request(("http", "h", 80), head, None, head_request).addBoth(responses.append)
    return responses


def deliver(response) -> Body:
    body = Body()
    response.deliverBody(body)
    return body


def test_content_length_response_and_reuse():
    pool, clock, endpoint = make_pool()
    responses = fire(pool, b"POST /x HTTP/1.1\r\n\r\n")
    got = fire(pool)
    # Both requests went out; the second needed a second connection since the
    # first was busy.
    assert len(endpoint.transports) == 2
    endpoint.connections[0].dataReceived(
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    first = responses[0]
    assert (first.code, first.phrase) == (201, b"Created")
    assert first.headers.getRawHeaders(b"content-type") == [b"application/json"]
    body = deliver(first)
    assert body.data == b"{}" and body.reason.check(ResponseDone)
    assert got == []
    # The first connection is idle again and is reused.
    fire(pool)
    assert len(endpoint.transports) == 2
    assert endpoint.transports[0].value().endswith(b"GET / HTTP/1.1\r\n\r\n")


def test_chunked_body_arrives_in_pieces():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    connection = endpoint.connections[0]
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    body = deliver(responses[0])
    connection.dataReceived(b"5\r\nhello\r\n")
    assert body.data == b"hello" and body.reason is None
    connection.dataReceived(b"6\r\n world\r\n0\r\n\r\n")
    assert body.data == b"hello world" and body.reason.check(ResponseDone)


def test_body_until_close_ends_with_potential_data_loss():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    connection = endpoint.connections[0]
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nsome data")
    body = deliver(responses[0])
    connection.connectionLost(Failure(error.ConnectionDone()))
    assert body.data == b"some data" and body.reason.check(PotentialDataLoss)


def test_connection_close_is_not_reused():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].dataReceived(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    deliver(responses[0])
    assert endpoint.transports[0].disconnecting
    fire(pool)
    assert len(endpoint.transports) == 2


def test_head_answer_has_no_body():
    pool, clock, endpoint = make_pool()
    responses = fire(pool, b"HEAD / HTTP/1.1\r\n\r\n", head_request=True)
    endpoint.connections[0].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n")
    body = deliver(responses[0])
    assert body.data == b"" and body.reason.check(ResponseDone)


def test_informational_answers_are_skipped():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].dataReceived(
        b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    )
    assert responses[0].code == 200
    assert deliver(responses[0]).data == b"x"


def test_lost_before_response_is_never_received():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].connectionLost(Failure(error.ConnectionLost()))
    assert responses[0].check(ResponseNeverReceived)


def test_lost_mid_body_fails_the_body():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    connection = endpoint.connections[0]
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    body = deliver(responses[0])
    connection.connectionLost(Failure(error.ConnectionLost()))
    assert body.data == b"abc" and body.reason.check(ResponseFailed)


def test_garbage_is_a_protocol_error():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].dataReceived(b"NOT HTTP AT ALL\r\n\r\n")
    assert responses[0].check(ResponseNeverReceived)
    assert endpoint.transports[0].disconnecting or endpoint.transports[0].disconnected


def test_cancel_abandons_the_connection():
    pool, clock, endpoint = make_pool()
    d = pool.request(("http", "h", 80), b"GET / HTTP/1.1\r\n\r\n", None)
    d.addErrback(lambda f: None)
    d.cancel()
    assert endpoint.transports[0].disconnecting or endpoint.transports[0].disconnected


def test_paused_reader_does_not_leave_a_paused_idle_connection():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    connection, transport = endpoint.connections[0], endpoint.transports[0]
    connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    body = Body()
    responses[0].deliverBody(body)
    body.transport.pauseProducing()
    assert transport.producerState == "paused"
    connection.dataReceived(b"cd")
    assert body.reason.check(ResponseDone)
    assert transport.producerState == "producing"
    # After the end, the old body's transport no longer controls the connection.
    body.transport.stopProducing()
    assert not transport.disconnecting


def test_idle_connections_expire():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    deliver(responses[0])
    clock.advance(30)
    assert endpoint.transports[0].disconnecting


@pytest.mark.parametrize("method, size, length", [(b"GET", 0, None), (b"POST", 0, b"0"), (b"POST", 2, b"2")])
def test_serialize_head(method, size, length):
    head = serialize_head(method, b"/v1/x?a=1", b"h:8080", Headers({b"X-A": [b"1", b"2"]}), size)
    lines = head.split(b"\r\n")
    assert lines[0] == method + b" /v1/x?a=1 HTTP/1.1"
    assert lines[1] == b"Host: h:8080"
    assert b"X-A: 1" in lines and b"X-A: 2" in lines
    assert head.endswith(b"\r\n\r\n")
    if length is None:
        assert not [line for line in lines if line.startswith(b"Content-Length")]
    else:
        assert b"Content-Length: " + length in lines


def test_unsolicited_answer_retires_the_connection():
    """An idle connection that receives an answer nobody asked for (an
    upstream's 408 before closing) is never handed out again."""
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    deliver(responses[0])
    endpoint.connections[0].dataReceived(b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
    assert endpoint.transports[0].disconnecting or endpoint.transports[0].disconnected
    endpoint.connections[0].connectionLost(Failure(error.ConnectionDone()))
    fire(pool)
    fire(pool)
    assert len(endpoint.transports) == 3  # neither request got the retired connection


def test_expired_idle_connection_is_not_handed_out():
    pool, clock, endpoint = make_pool()
    responses = fire(pool)
    endpoint.connections[0].dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    deliver(responses[0])
    clock.advance(30)  # closing, but the connection is not lost yet
    fire(pool)
    assert len(endpoint.transports) == 2


def test_file_body_is_streamed_and_resent_from_the_start(tmp_path):
    from genaiproxy.client import body_length

    path = tmp_path / "upload.bin"
    path.write_bytes(b"x" * 100_000)
    pool, clock, endpoint = make_pool()
    with open(path, "rb") as body:
        assert body_length(body) == 100_000
        body.read(10)  # a retry finds the file wherever the last attempt left it
        pool.request(("http", "h", 80), b"POST /u HTTP/1.1\r\n\r\n", body).addErrback(lambda f: None)
        transport = endpoint.transports[0]
        while transport.producer is not None:
            transport.producer.resumeProducing()
        assert transport.value() == b"POST /u HTTP/1.1\r\n\r\n" + b"x" * 100_000
