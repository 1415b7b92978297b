"""Doctor's HTTP steps for one upstream, through the daemon's own treq
client: the gateway's answers to the key, and one tiny streamed chat."""

from __future__ import annotations

import json
import uuid
from time import monotonic
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from genaiproxy.api import CHAT_TOKEN_FIELD, UsageReader, prepare_body, with_api_version
from genaiproxy.cli.doctor.report import Report, Step
from genaiproxy.config import DEFAULT_UPSTREAM, Config, ModelRoute
from genaiproxy.forwarding import collect_body
from genaiproxy.upstream import UpstreamClient, classify

_MESSAGE_MAX = 200


def _error_message(body: bytes) -> str:
    """The upstream's own error message, shortened, when it sent one."""
    try:
        document = json.loads(body)
        error = document.get("error") if isinstance(document, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
    except ValueError:
        message = None
    text = message if isinstance(message, str) else body.decode("utf-8", "replace")
    text = " ".join(text.split())
    return text[:_MESSAGE_MAX] + ("..." if len(text) > _MESSAGE_MAX else "")


async def _get(client: UpstreamClient, path: str) -> tuple[str, IResponse, bytes]:
    query = with_api_version(b"", client.config.api_version)
    url = client.request_url(path, query)
    headers = client.headers_for(Headers(), f"doctor-{uuid.uuid4()}")

    def read(response: IResponse) -> Any:
        done = collect_body(response, client.clock, client.config.request_timeout)
        return done.addCallback(lambda body: (response, body))

    response, body = await client.call(b"GET", url, headers, b"", lambda *_: None, read=read)
    return client.url_for(path, query), response, body


def _key_hint(name: str, config: Config) -> str:
    if name == DEFAULT_UPSTREAM:
        header = config.subscription_name or "(none: GENAI_SUBSCRIPTION_NAME is empty)"
        return (f"check GENAI_API_KEY (or its file) and the header it goes in, "
                f"GENAI_SUBSCRIPTION_NAME={header}")
    return (f"check the key of upstream {name!r} (api_key_env / api_key_file) and its "
            f"subscription_name ({config.subscription_name or 'none'})")


async def check_gateway(reactor: Any, report: Report, name: str, config: Config) -> bool:
    """Step 6: GET the upstream's root and its /v1/models with the key."""
    client = UpstreamClient(config, reactor)
    try:
        for step, path in (("gateway /", "/"), ("gateway /v1/models", "/v1/models")):
            started = monotonic()
            try:
                url, response, body = await _get(client, path)
            except Exception:
                problem = classify(Failure())
                report.add(Step(step, "fail", f"{problem.kind}: {problem.message}", started,
                                cause="the upstream did not answer over HTTP",
                                fix="see the steps above; check REQUEST_TIMEOUT"))
                return False
            code = response.code
            if code in (401, 403):
                report.add(Step(step, "fail", f"GET {url}: {code} {_error_message(body)}",
                                started, cause="the gateway refused the key",
                                fix=_key_hint(name, config)))
                return False
            if path == "/":
                note = " (many gateways serve nothing at their root)" if code == 404 else ""
                status = "pass" if code < 500 else "fail"
                report.add(Step(step, status, f"GET {url}: {code}{note}", started,
                                cause="" if code < 500 else "the gateway answers with an error",
                                fix="" if code < 500 else "ask the gateway's owners"))
                if code >= 500:
                    return False
                continue
            if code == 404:
                base = "GENAI_BASE_URL" if name == DEFAULT_UPSTREAM else f"base_url of {name!r}"
                report.add(Step(step, "fail", f"GET {url}: 404", started,
                                cause="the base URL's path is probably wrong (or the gateway "
                                      "offers no /v1/models)",
                                fix=f"{base} is the part before /v1 (tried {url})"))
                return False
            if code >= 400:
                report.add(Step(step, "fail", f"GET {url}: {code} {_error_message(body)}",
                                started, cause="the gateway answers with an error",
                                fix="read its message; ask the gateway's owners"))
                return False
            report.add(Step(step, "pass", f"GET {url}: {code}{_model_count(body)}", started))
        return await _check_responses(client, report)
    finally:
        await client.close()


async def _check_responses(client: UpstreamClient, report: Report) -> bool:
    """Step 6, last: is /v1/responses served natively, or will the proxy
    bridge it to /chat/completions (RESPONSES_API)?  The probe is an empty
    POST, which costs no tokens: an endpoint answers it 400, a gateway
    without the route 404 (or 405)."""
    step, started, mode = "gateway /v1/responses", monotonic(), client.config.responses_api
    if mode == "chat":
        report.add(Step(step, "pass", "answered through /chat/completions (RESPONSES_API=chat; "
                        "not probed)", started))
        return True
    query = with_api_version(b"", client.config.api_version)
    url = client.request_url("/v1/responses", query)
    headers = client.headers_for(Headers({b"content-type": [b"application/json"]}),
                                 f"doctor-{uuid.uuid4()}")

    def read(response: IResponse) -> Any:
        return collect_body(response, client.clock, client.config.request_timeout).addCallback(
            lambda body: response)

    shown = client.url_for("/v1/responses", query)
    try:
        response = await client.call(b"POST", url, headers, b"{}", lambda *_: None, read=read)
    except Exception:
        problem = classify(Failure())
        report.add(Step(step, "fail", f"{problem.kind}: {problem.message}", started,
                        cause="the upstream did not answer the probe",
                        fix="see the steps above"))
        return False
    code = response.code
    if code not in (404, 405):
        report.add(Step(step, "pass", f"POST {shown} {{}}: {code}: served natively", started))
        return True
    if mode == "auto":
        report.add(Step(step, "pass", f"POST {shown} {{}}: {code}: not served; the proxy answers "
                        "/v1/responses through /chat/completions (RESPONSES_API=auto)", started))
        return True
    report.add(Step(step, "fail", f"POST {shown} {{}}: {code}: not served", started,
                    cause="the gateway publishes no Responses API, and RESPONSES_API is native",
                    fix="set RESPONSES_API=auto or chat (responses_api: for an upstream of "
                        "models.yaml), so that Codex works through the proxy"))
    return False


def _model_count(body: bytes) -> str:
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return ""
    return f", {len(data)} models" if isinstance(data, list) else ""


class _ChatStream(Protocol):
    """Reads a streamed chat: when its first content came, and its usage."""

    def __init__(self, started: float) -> None:
        self._started = started
        self.first_token_ms: float | None = None
        self.usage = UsageReader(responses_api=False)
        self.broken: str | None = None  # why the stream ended early, if it did
        self.done: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        if self.first_token_ms is None and b'"content"' in data:
            self.first_token_ms = round((monotonic() - self._started) * 1000, 1)
        self.usage.feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone, PotentialDataLoss) is None:
            self.broken = reason.getErrorMessage() or type(reason.value).__name__
        self.done.callback(None)


async def check_chat(reactor: Any, report: Report, config: Config, route: ModelRoute) -> None:
    """Step 7 (--chat MODEL): one tiny streamed chat completion, to the
    upstream of C{route} (C{config}'s), as the daemon sends a request for
    the model: under its C{upstream_model} name, with its token cap."""
    client = UpstreamClient(config, reactor)
    started = monotonic()
    raw = json.dumps({"model": route.id, "stream": True,
                      "stream_options": {"include_usage": True}, "max_tokens": 64,
                      "messages": [{"role": "user", "content": "Reply with the word OK."}]})
    prepared = prepare_body(raw.encode(), CHAT_TOKEN_FIELD, model=route.upstream_model,
                            cap=route.max_output_tokens)
    model = route.id
    if route.upstream_model is not None and route.upstream_model != route.id:
        model += f" (sent as {route.upstream_model})"
    stream = _ChatStream(started)

    def read(response: IResponse) -> Any:
        if response.code >= 400:
            done = collect_body(response, client.clock, config.request_timeout)
            return done.addCallback(lambda body: (response, body))
        response.deliverBody(stream)
        return stream.done.addCallback(lambda _: (response, None))

    query = with_api_version(b"", config.api_version)
    headers = client.headers_for(Headers({b"content-type": [b"application/json"]}),
                                 f"doctor-{uuid.uuid4()}")
    try:
        response, body = await client.call(
            b"POST", client.request_url("/v1/chat/completions", query), headers, prepared.body,
            lambda *_: None, read=read)
    except Exception:
        problem = classify(Failure())
        report.add(Step("chat", "fail", f"{problem.kind}: {problem.message}", started,
                        cause="the chat request did not get an answer",
                        fix="see the steps above"))
        return
    finally:
        await client.close()
    if body is not None:
        report.add(Step("chat", "fail", f"{model}: {response.code} {_error_message(body)}",
                        started, cause="the gateway refused the chat",
                        fix="check the model name (GET /v1/models lists what it serves)"))
        return
    if stream.broken is not None:
        report.add(Step("chat", "fail", f"{model}: the stream broke: {stream.broken}", started,
                        cause="the stream was cut before its end",
                        fix="check REQUEST_TIMEOUT and the forward proxy's timeouts"))
        return
    usage = stream.usage.usage
    tokens = (f"; tokens: {usage.get('input', '?')} in, {usage.get('output', '?')} out"
              if usage else "; no usage reported")
    first = (f"first token after {stream.first_token_ms:g} ms"
             if stream.first_token_ms is not None else "no content streamed")
    report.add(Step("chat", "pass", f"{model}: {first}{tokens}", started))
