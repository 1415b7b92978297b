"""The raw-socket requests of the fault run
(tests/integration/test_fault_run.py): what no HTTP library sends (garbage,
over-long lines, half a head, a body cut off or stalled, an idle keep-alive
connection, pipelined streams), each a coroutine that gives its outcome.
"""

import asyncio
import json
import time

from support.fault_requests import (
    CHAT,
    KEEPALIVE_SEC,
    Context,
    Outcome,
    Step,
    Unexpected,
    chat_body,
    check_error,
)

# Raw sockets: what no HTTP library sends.


async def raw(ctx: Context, data: bytes, close_after_send: bool = False,
              timeout: float = 15.0) -> Outcome:
    """Send C{data}; return the status of the answer read until the proxy
    closes, or C{closed} when we close first."""
    reader, writer = await asyncio.open_connection("127.0.0.1", ctx.port)
    try:
        writer.write(data)
        await writer.drain()
        if close_after_send:
            return "closed"
        answer = await asyncio.wait_for(reader.read(), timeout)  # until EOF
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head:
        raise Unexpected("connection closed without an answer")
    status = int(head.split(b" ", 2)[1])
    return check_error(status, body) if status >= 400 else status


def raw_head(step: Step, method: bytes = b"POST", path: bytes = b"/v1/files",
             extra: bytes = b"") -> bytes:
    return (method + b" " + path + b" HTTP/1.1\r\nHost: fault\r\n"
            + b"X-Request-ID: " + step.rid.encode() + b"\r\n"
            + b"Authorization: Bearer " + step.token.encode() + b"\r\n" + extra)


async def raw_bad_line(ctx: Context, step: Step) -> Outcome:
    return await raw(ctx, b"NOT HTTP AT ALL\r\n\r\n")


async def raw_long_header(ctx: Context, step: Step) -> Outcome:
    return await raw(ctx, raw_head(step, b"GET", b"/v1/models",
                                   b"X-Big: " + b"h" * 9000 + b"\r\n\r\n"))


async def raw_long_line(ctx: Context, step: Step) -> Outcome:
    return await raw(ctx, b"GET /v1/models?" + b"q" * 9000 + b" HTTP/1.1\r\n\r\n")


async def raw_half_head(ctx: Context, step: Step) -> Outcome:
    """Half a head: closed by us at once, or (C{stream}) left until HEADER_TIMEOUT."""
    return await raw(ctx, raw_head(step)[:40], close_after_send=not step.stream)


async def raw_partial_body(ctx: Context, step: Step) -> Outcome:
    """A body the proxy spools to a file: cut off by us, or (C{stream})
    stalled until REQUEST_TIMEOUT."""
    head = raw_head(step, extra=b"Content-Length: 300000\r\n\r\n")
    return await raw(ctx, head + b"p" * 120_000, close_after_send=not step.stream)


async def raw_idle_keepalive(ctx: Context, step: Step) -> Outcome:
    """One answer, then an idle connection the proxy must close itself."""
    started = time.monotonic()
    status = await raw(ctx, b"GET /livez HTTP/1.1\r\nHost: fault\r\n\r\n",
                       timeout=KEEPALIVE_SEC + 15)
    return "closed_idle" if status == 200 and time.monotonic() - started > 1 else status


async def raw_pipelined(ctx: Context, step: Step) -> Outcome:
    """Three streams asked for at once on one connection: all three read, or
    (C{stream}) the connection dropped after the first bytes."""
    body = json.dumps(chat_body(True)).encode()
    one = raw_head(step, path=CHAT.encode(), extra=b"Content-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
    reader, writer = await asyncio.open_connection("127.0.0.1", ctx.port)
    data = b""
    try:
        writer.write(one * 3)
        while data.count(b"data: [DONE]") < 3:
            piece = await asyncio.wait_for(reader.read(65536), 15)
            if not piece or step.stream:
                break
            data += piece
    finally:
        writer.close()
    return "left" if step.stream else data.count(b"data: [DONE]")
