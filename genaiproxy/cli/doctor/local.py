"""Doctor's local step: is the daemon's listen address free, or is a
genai-proxy already serving there?"""

from __future__ import annotations

import errno
import json
import socket
from time import monotonic
from typing import Any

import treq

from genaiproxy.cli.doctor.report import Report, Step
from genaiproxy.config import parse_listen

NAME = "genai-proxy"


def tcp_listen_address(listen: str) -> tuple[str, int] | None:
    """(interface, port) of a C{tcp:} / C{tcp6:} endpoint description, else None."""
    try:
        endpoint = parse_listen(listen)
    except ValueError:
        return None
    if endpoint.kind not in ("tcp", "tcp6") or endpoint.port is None:
        return None
    return endpoint.bound_interface, endpoint.port


def _free(interface: str, port: int) -> OSError | None:
    """None when C{interface}:C{port} could be listened on now, else why not."""
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((interface, port))
        except OSError as e:
            return e
    return None


async def check_listen(reactor: Any, report: Report, listen: str) -> None:
    """Step 2: the listen address is free, or held by a running genai-proxy
    (then its version and /livez)."""
    started = monotonic()
    address = tcp_listen_address(listen)
    if address is None:
        report.add(Step("listen", "skip", f"{listen}: not a tcp endpoint; not checked", started))
        return
    interface, port = address
    problem = _free(interface, port)
    if problem is None:
        report.add(Step("listen", "pass", f"{interface}:{port} is free", started))
        return
    if problem.errno != errno.EADDRINUSE:
        report.add(Step("listen", "fail", f"{interface}:{port}: {problem.strerror}", started,
                        fix="choose another --listen address (or run as a user allowed this one)"))
        return
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(interface, interface)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    # /livez is open without a token, and every answer of genai-proxy names
    # it in its Server header: nothing secret is sent to whatever listens.
    try:
        live = await treq.get(base + "/livez", timeout=5, reactor=reactor)
        document = json.loads(await live.content())
        server = (live.headers.getRawHeaders(b"server") or [b""])[0].decode("latin-1")
    except Exception:  # anything: it is not a genai-proxy that answers
        document, server = None, ""
    if server.startswith(NAME + "/") and isinstance(document, dict):
        report.add(Step("listen", "pass",
                        f"{interface}:{port} is held by a running genai-proxy "
                        f"{server.split('/', 1)[1]} (/livez: {document.get('status')})",
                        started))
        return
    report.add(Step("listen", "fail", f"{interface}:{port} is in use by another program",
                    started, cause="something other than genai-proxy listens there",
                    fix="stop it, or give genai-proxy another --listen address"))
