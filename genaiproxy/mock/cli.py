"""The mock upstream's command line: ``python -m genaiproxy.mock``
(or ``genai-mock-upstream``) with its options, listening until stopped."""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IReactorSSL

from genaiproxy.mock.controls import MockOptions, parse_header_option
from genaiproxy.mock.server import DEFAULT_EVENT_DELAY, DEFAULT_EVENTS, DEFAULT_REPLY, build_site
from genaiproxy.mock.tool_calls import REASONING_FIELDS, ToolCall, parse_tool_call


def _non_negative(kind: type) -> Any:
    """An argparse type accepting non-negative values of ``kind``."""

    def parse(text: str) -> Any:
        value = kind(text)
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"must be >= 0: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def _header_option(text: str) -> tuple[bytes, bytes]:
    try:
        return parse_header_option(text)
    except (ValueError, UnicodeEncodeError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _tool_call_option(text: str) -> ToolCall:
    try:
        return parse_tool_call(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _status(text: str) -> int:
    value = int(text)
    if not 100 <= value <= 599:
        raise argparse.ArgumentTypeError(f"must be from 100 to 599: {text}")
    return value


def main(argv: list[str] | None = None) -> None:
    """Run the mock upstream until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(
        prog="genai-mock-upstream",
        description="Mock OpenAI-compatible upstream for tests and demos.",
    )
    parser.add_argument("--port", type=_non_negative(int), default=0,
                        help="TCP port, 0 for any free one (default: 0)")
    parser.add_argument("--interface", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--events", type=_non_negative(int), default=DEFAULT_EVENTS,
                        help="content events per stream (default: %(default)s)")
    parser.add_argument("--event-delay", type=_non_negative(float),
                        default=DEFAULT_EVENT_DELAY,
                        help="seconds between stream events (default: %(default)s)")
    parser.add_argument("--reply", default=DEFAULT_REPLY,
                        help="assistant reply text (default: %(default)r)")
    parser.add_argument("--tls-cert", metavar="PEM",
                        help="serve https with this certificate chain and private key (one PEM file)")
    parser.add_argument("--require-header", metavar="'NAME: VALUE'", type=_header_option,
                        help="answer 401 (OpenAI-style error) to any request under /v1 "
                             "without this exact header value")
    parser.add_argument("--fail-status", metavar="N", type=_status,
                        help="answer every request under /v1 with status N and an error body")
    parser.add_argument("--hang", action="store_true",
                        help="never answer a request under /v1")
    parser.add_argument("--base-path", metavar="PATH", default="",
                        help="serve only under this path, as a gateway does (e.g. /genai); "
                             "404 elsewhere")
    parser.add_argument("--chat-only", action="store_true",
                        help="no Responses API: answer any /responses path 404 as an Azure API "
                             "Management portal does for a route it does not publish")
    parser.add_argument("--tool-call", metavar="NAME[=JSON]", type=_tool_call_option,
                        action="append", default=[],
                        help="chat answers call this function (with these JSON object arguments, "
                             "default {}) when the request offers it; repeat for parallel calls")
    parser.add_argument("--interleave-tool-calls", action="store_true",
                        help="stream several calls' argument pieces taking turns by index "
                             "(as vLLM may), not one call after the other (as OpenAI does)")
    parser.add_argument("--reasoning", metavar="TEXT",
                        help="chat answers carry this reasoning text before the content")
    parser.add_argument("--reasoning-field", choices=REASONING_FIELDS, default=REASONING_FIELDS[0],
                        help="the field that carries it: reasoning_content (DeepSeek, older vLLM) "
                             "or reasoning (vLLM, Ollama) (default: %(default)s)")
    args = parser.parse_args(argv)
    options = MockOptions(
        require_header=args.require_header,
        fail_status=args.fail_status,
        hang=args.hang,
        base_path=args.base_path,
        chat_only=args.chat_only,
        tool_calls=tuple(args.tool_call),
        interleave_tool_calls=args.interleave_tool_calls,
        reasoning=args.reasoning or None,
        reasoning_field=args.reasoning_field,
    )

    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        globalLogBeginner,
        textFileLogObserver,
    )

    # Only warnings and errors (e.g. unhandled exceptions) reach stderr.
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stderr), [predicate])],
        redirectStandardIO=False,
    )
    site = build_site(args.events, args.event_delay, args.reply, clock=reactor, options=options)
    if args.tls_cert:
        from twisted.internet.ssl import PrivateCertificate

        with open(args.tls_cert) as f:
            tls = PrivateCertificate.loadPEM(f.read()).options()
        # The reactor module is typed with the interfaces every reactor has;
        # the default one also listens with TLS.
        port = cast(IReactorSSL, reactor).listenSSL(args.port, site, tls, interface=args.interface)
        scheme = "https"
    else:
        # listenTCP's ServerFactory[Protocol] does not admit twisted.web's Site.
        port = reactor.listenTCP(args.port, site, interface=args.interface)  # type: ignore[arg-type]
        scheme = "http"
    host = args.interface if ":" not in args.interface else f"[{args.interface}]"
    address = cast(IPv4Address | IPv6Address, port.getHost())
    print(f"mock upstream listening on {scheme}://{host}:{address.port}", flush=True)
    reactor.run()
