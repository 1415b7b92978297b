"""/status shows every upstream in service, and STATUS_PUBLIC opens it to a
browser without the token, in memory: a real L{Forwarder}'s upstream set
and metrics registry, and the real site and resource tree of a
L{MemoryProxy}."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import Resource

from genaiproxy.config.environment import load_config
from genaiproxy.config.routing import build_routing
from genaiproxy.forwarding import Forwarder
from genaiproxy.server.status import UpstreamRow, UpstreamState, summarize, upstream_states
from genaiproxy.server.status_page import render_html
from genaiproxy.testing import MemoryProxy
from genaiproxy.upstream import UpstreamClient

DEFAULT_KEY = "sk-default-status-7f3a91"
EU_KEY = "sk-eu-status-0c44de"
ENVIRON = {
    "GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
    "GENAI_API_KEY": DEFAULT_KEY,
    "GENAI_BASE_URL": "https://gw-user:gw-password@gw.example/genai",
    "HTTPS_PROXY": "http://proxy-user:proxy-password@proxy.corp:3128",
    "NO_PROXY": "ollama.local",
    "GENAI_API_KEY_EU": EU_KEY,
}
UPSTREAMS = {
    "eu": {"base_url": "https://eu-user:eu-password@eu.example/openai",
           "subscription_name": "api-key", "api_key_env": "GENAI_API_KEY_EU",
           "responses_api": "native", "messages_api": "native"},
    "ollama": {"base_url": "http://ollama.local:11434", "subscription_name": "",
               "responses_api": "chat"},
}
MODELS = [{"id": "gpt-5"}, {"id": "eu-model", "upstream": "eu"},
          {"id": "llama3.2", "upstream": "ollama"}]
SECRETS = (DEFAULT_KEY, EU_KEY, "gw-password", "eu-password", "proxy-password")


def forwarder_with_three_upstreams() -> Forwarder:
    """A forwarder whose models.yaml named two upstreams besides the default."""
    config = load_config(ENVIRON)
    forwarder = Forwarder(UpstreamClient(config, MemoryReactorClock()))
    forwarder.set_routing(build_routing(UPSTREAMS, MODELS, config, ENVIRON))
    return forwarder


def test_every_upstream_in_service_with_its_state_and_counts():
    """Each upstream of models.yaml is on the page after the default, with
    its URL and forward proxy without credentials, how the Responses and
    Messages APIs reach it as the proxy knows it now (RESPONSES_API auto
    turns bridged once the upstream refused /responses), and its requests,
    errors and failures from the metrics; no key or password anywhere."""
    forwarder = forwarder_with_three_upstreams()
    forwarder.upstreams.found_chat_only("default")
    metrics = forwarder.metrics
    for status, upstream in (("200", "default"), ("200", "default"), ("502", "default"),
                             ("200", "eu"), ("429", "ollama")):
        metrics.requests.labels("chat", "gpt-5", status, "alice", upstream).inc()
    metrics.failures.labels("timeout", "eu").inc()
    metrics.failures.labels("connection_refused", "eu").inc()
    metrics.failures.labels("timeout", "default").inc()

    summary = summarize(metrics.registry, upstream_states(forwarder.upstreams))

    via = "http://proxy.corp:3128"
    assert summary.upstreams == (
        UpstreamRow(UpstreamState("default", "https://gw.example/genai", via, "auto: bridged",
                                  "bridged"), 3, 1, 1),
        UpstreamRow(UpstreamState("eu", "https://eu.example/openai", via, "native", "native"),
                    1, 0, 2),
        UpstreamRow(UpstreamState("ollama", "http://ollama.local:11434", "", "bridged",
                                  "bridged"), 1, 1, 0),
    )
    assert summary.upstream == "https://gw.example/genai"
    page = render_html(summary)
    for secret in SECRETS:
        assert secret not in page and secret not in repr(summary)


def test_auto_is_native_until_the_upstream_refuses_responses():
    """With RESPONSES_API auto, an upstream's Responses requests are passed
    through until it answered /responses with a 404 or 405."""
    forwarder = forwarder_with_three_upstreams()
    (default, *_) = upstream_states(forwarder.upstreams)
    assert default.responses == "auto: native"


class Upstream(Resource):
    """An upstream that the requests of these tests never reach."""

    isLeaf = True

    def render(self, request: object) -> bytes:
        raise AssertionError("no request should reach the upstream")


TOKEN = "client-token-status-4b1c"


def answers_without_token(environ: dict[str, str]) -> dict[str, int]:
    """The status of C{GET} on /status, /metrics and /v1/models, and of
    C{GET /status/x}, without a token, from a proxy that requires one."""
    proxy = MemoryProxy(Upstream(), {"AUTH_TOKEN": TOKEN, **environ})
    return {path: proxy.request("GET", path).code
            for path in ("/status", "/status/x", "/metrics", "/v1/models")}


def test_status_public_opens_the_status_page_only():
    """STATUS_PUBLIC=true lets a client without a token (a browser) read
    the /status page, upstreams and all, with no secret on it; /metrics, /v1
    and any path below /status still answer 401 without one.  By default
    /status needs the token."""
    assert answers_without_token({}) == {
        "/status": 401, "/status/x": 401, "/metrics": 401, "/v1/models": 401}
    assert answers_without_token({"STATUS_PUBLIC": "true"}) == {
        "/status": 200, "/status/x": 401, "/metrics": 401, "/v1/models": 401}

    proxy = MemoryProxy(Upstream(), {"AUTH_TOKEN": TOKEN, "STATUS_PUBLIC": "true"})
    page = proxy.request("GET", "/status")
    assert page.header("content-type") == "text/html; charset=utf-8"
    assert b'<table id="upstreams">' in page.body and TOKEN.encode() not in page.body
    assert b"sk-memory-proxy-key" not in page.body
