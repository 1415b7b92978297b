"""`genai-proxy-quickstart`: run the proxy, in front of the mock upstream when
no real upstream is configured, and show a request to try.

It is C{twistd -n genaiproxy} with two conveniences: when GENAI_BASE_URL is
unset, the bundled mock upstream is started in the same process on a free
loopback port (with a demo subscription key), and a curl example is printed
once the proxy listens.  Options after the command go to the plugin
(C{--listen}, C{--models}).
"""

from __future__ import annotations

import os
import sys
from typing import cast

from genaiproxy.config import DEFAULT_LISTEN, parse_listen

DEMO_KEY_NAME = "Ocp-Apim-Subscription-Key"
DEMO_KEY = "demo-key-not-secret"
DEMO_REPLY = "Hello from the mock upstream, streamed to you through genai-proxy."


def _start_mock_upstream() -> str:
    """Listen with the mock upstream on a free loopback port; return its URL."""
    from twisted.internet import reactor
    from twisted.internet.address import IPv4Address

    from genaiproxy.mock import build_site

    # As many words as stream events, so that the streamed demo answer is
    # the sentence once, one word an event (more events would repeat it).
    site = build_site(events=len(DEMO_REPLY.split()), event_delay=0.15, reply=DEMO_REPLY)
    # listenTCP's ServerFactory[Protocol] does not admit twisted.web's Site.
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[arg-type]
    return f"http://127.0.0.1:{cast(IPv4Address, port.getHost()).port}"


def _listen_port(args: list[str]) -> str:
    """The port from a C{--listen tcp:PORT:...} argument, for the banner."""
    for i, arg in enumerate(args):
        value: str | None = None
        if arg.startswith("--listen="):
            value = arg.split("=", 1)[1]
        elif arg in ("--listen", "-l") and i + 1 < len(args):
            value = args[i + 1]
        if value and value.startswith(("tcp:", "tcp6:")):
            # tcp:8111:interface=... or tcp:port=8111:... (strports' keyword form)
            try:
                port = parse_listen(value).port
            except ValueError:
                port = None
            if port is not None:
                return str(port)
    return str(parse_listen(DEFAULT_LISTEN).port)


def _banner(port: str, mocked: bool, token: str) -> str:
    auth = f' -H "Authorization: Bearer {token}"' if token else ""
    where = "the bundled mock upstream" if mocked else os.environ["GENAI_BASE_URL"]
    return (
        f"\ngenai-proxy is listening on http://127.0.0.1:{port}/v1 in front of {where}.\n"
        "Try it in another terminal:\n\n"
        f"  curl -s http://127.0.0.1:{port}/v1/models{auth}\n"
        f"  curl -sN http://127.0.0.1:{port}/v1/chat/completions{auth} \\\n"
        "       -H 'Content-Type: application/json' \\\n"
        "       -d '{\"model\": \"gpt-4.1\", \"stream\": true, "
        "\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}]}'\n\n"
        "Logs follow as one JSON object a line. Stop with Ctrl-C.\n"
    )


def _show(text: str) -> None:
    stdout = sys.__stdout__
    if stdout is None:  # started without a standard output: nowhere to show it
        return
    stdout.write(text)
    stdout.flush()


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    mocked = not os.environ.get("GENAI_BASE_URL")
    if mocked:
        os.environ["GENAI_BASE_URL"] = _start_mock_upstream()
        os.environ.setdefault("GENAI_SUBSCRIPTION_NAME", DEMO_KEY_NAME)
        os.environ.setdefault("GENAI_API_KEY", DEMO_KEY)

    from twisted.internet import reactor
    from twisted.scripts.twistd import run

    banner = _banner(_listen_port(args), mocked, os.environ.get("AUTH_TOKEN", ""))
    # twistd sends print() into the log by then: write to the real stdout.
    reactor.callWhenRunning(_show, banner)
    sys.argv = ["twistd", "--nodaemon", "--pidfile=", "genaiproxy", *args]
    run()


if __name__ == "__main__":
    main()
