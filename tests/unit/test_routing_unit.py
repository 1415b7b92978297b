"""The routing part of models.yaml, checked whole (units: L{genaiproxy.config.routing})."""

from __future__ import annotations

import copy
import json

import pytest
from twisted.web.resource import Resource
from twisted.web.server import Request

from genaiproxy.api.normalize import UnwritableBody, fields_copy, parse_json, prepare_body
from genaiproxy.config.environment import load_config
from genaiproxy.config.models import parse_models_file, served
from genaiproxy.config.routing import NO_ROUTING, RoutingError, build_routing
from genaiproxy.testing import MemoryProxy

DEFAULT = load_config({"GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
                       "GENAI_API_KEY": "default-key-1", "GENAI_BASE_URL": "https://gw.example",
                       "REQUEST_TIMEOUT": "30", "MAX_RETRIES": "4"})
ENV = {"GENAI_API_KEY_EU": "eu-key-2"}

FILE = """
upstreams:
  local:
    base_url: http://127.0.0.1:11434
  gateway-eu:
    base_url: https://gw-eu.example/genai
    subscription_name: Ocp-Apim-Subscription-Key
    api_key_env: GENAI_API_KEY_EU
    request_timeout: 5
models:
  - id: gpt-5
    fallbacks: [gpt-5@eu, llama3.2]
  - id: gpt-5@eu
    upstream: gateway-eu
    upstream_model: gpt-5
    hidden: true
    fallbacks: [fast]
  - id: llama3.2
    upstream: local
  - id: fast
    upstream: local
    upstream_model: llama3.2:1b
"""


def routing_of(text: str, environ: dict[str, str] = ENV):
    entries, upstreams = parse_models_file(text, 0)
    return build_routing(upstreams, entries, DEFAULT, environ)


def test_upstreams_inherit_the_global_settings():
    """A named upstream has its own URL, header and key, and the default's
    timeouts and retries unless it sets its own."""
    table = routing_of(FILE)
    eu, local = table.upstreams["gateway-eu"].config, table.upstreams["local"].config
    assert (eu.base_url, eu.subscription_name, eu.api_key) == (
        "https://gw-eu.example/genai", "Ocp-Apim-Subscription-Key", "eu-key-2")
    assert (eu.request_timeout, eu.max_retries) == (5.0, 4)
    assert (local.subscription_name, local.api_key, local.request_timeout) == ("", "", 30.0)
    assert "eu-key-2" not in repr(table)


def test_hops_follow_fallbacks_depth_first_without_repeats():
    """A request tries its model's route, then each fallback followed by the
    fallback's own, never one twice; an unknown model goes to default."""
    table = routing_of(FILE)
    assert [hop.id for hop in table.hops("gpt-5")] == ["gpt-5", "gpt-5@eu", "fast", "llama3.2"]
    assert [(hop.upstream, hop.upstream_model) for hop in table.hops("fast")] == [
        ("local", "llama3.2:1b")]
    unknown = table.hops("mistral")
    assert [(hop.id, hop.upstream, hop.upstream_model) for hop in unknown] == [
        ("mistral", "default", None)]


def test_a_file_without_routing_keys_routes_nothing():
    """A models.yaml without the new keys has no routing (as before), and
    may even repeat an id."""
    assert routing_of("- id: gpt-4.1\n- id: gpt-4.1\n") is NO_ROUTING


def test_models_are_served_without_their_routing_keys():
    """/v1/models shows the entries without upstream, upstream_model,
    hidden and fallbacks; other fields stay."""
    entries, _ = parse_models_file(FILE.replace("  - id: fast\n", "  - id: fast\n    x: 1\n"), 7)
    shown = {model["id"]: model for model in served(entries)}
    assert shown["fast"] == {"id": "fast", "x": 1, "object": "model", "owned_by": "genai",
                             "created": 7}
    assert "fallbacks" not in shown["gpt-5"]


@pytest.mark.parametrize("text, message", [
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    api_key: sk-inline-secret\n"
     "models: []\n", "must not be written in models.yaml"),
    ("models:\n  - id: a\n    upstream: nowhere\n", "upstream 'nowhere' is not defined"),
    ("models:\n  - id: a\n    upstream: default\n  - id: a\n", "'a' appears twice"),
    ("models:\n  - id: a\n    fallbacks: [b]\n  - id: b\n    fallbacks: [a]\n",
     "fallback cycle: a -> b -> a"),
    ("models:\n  - id: a\n    fallbacks: [a]\n", "fallback cycle: a -> a"),
    ("models:\n  - id: a\n    fallbacks: [zzz]\n", "fallback 'zzz' is not a model id"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    subscription_name: k\n"
     "    api_key_env: NOT_SET_ANYWHERE\nmodels: []\n", "'NOT_SET_ANYWHERE', which is not set"),
    ("upstreams:\n  eu:\n    base_url: ftp://x.example\nmodels: []\n", "http:// or https://"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    subscription_name: k\n"
     "models: []\n", "needs a key"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    timeout: 3\nmodels: []\n",
     "unknown setting(s) timeout"),
    ("upstreams:\n  default:\n    base_url: https://x.example\nmodels: []\n",
     "is not allowed"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    max_retries: -1\nmodels: []\n",
     "max_retries must be a whole number >= 0"),
    ("- id: gpt-4.1\n  api_key: sk-inline-secret\n", "model 'gpt-4.1': a key must not be"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    subscription_name: k\n"
     "    api_key_env: sk-inline-secret\nmodels: []\n", "must be the name of an environment"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    subscription_name: k\n"
     "    api_key_file: sk-inline-secret\nmodels: []\n", "api_key_file must be a file path"),
    ("upstreams:\n  eu:\n    base_url: https://x.example\n    ca_bundle: /nonexistent.pem\n"
     "models: []\n", "ca_bundle of upstream 'eu'"),
    ("upstreams:\n  eu:\n    base_url: 'http://[::1'\nmodels: []\n", "not a valid URL"),
    ("upstreams:\n  dévé:\n    base_url: https://x.example\nmodels: []\n", "is not allowed"),
    ("models:\n" + "".join(f"  - {{id: m{i}, fallbacks: [m{i + 1}]}}\n" for i in range(1500))
     + "  - id: m1500\n", "nested too deep"),
])
def test_mistakes_refuse_the_whole_file(text, message):
    """Each mistake is refused with a message that says what is wrong (and
    never holds a key)."""
    with pytest.raises(RoutingError) as caught:
        routing_of(text)
    assert message in str(caught.value)
    assert "sk-inline-secret" not in str(caught.value)


def test_an_api_key_file_is_read(tmp_path):
    """api_key_file: the key is read from the file, which is remembered so
    that it can be read again when it changes."""
    key = tmp_path / "eu.key"
    key.write_text("file-key-3\n")
    table = routing_of("upstreams:\n  eu:\n    base_url: https://x.example\n"
                       f"    subscription_name: k\n    api_key_file: {key}\nmodels: []\n")
    assert table.upstreams["eu"].config.api_key == "file-key-3"
    assert table.upstreams["eu"].key_file == str(key)


def test_an_alias_is_sent_under_its_upstream_name_with_the_gpt5_rules():
    """The body sent upstream names upstream_model, and the gpt-5 rules
    apply to that name (not to the alias the client used)."""
    body = b'{"model":"fast","max_tokens":5,"messages":[]}'
    prepared = prepare_body(body, "max_completion_tokens", model="gpt-5-mini")
    assert json.loads(prepared.body) == {"model": "gpt-5-mini", "max_completion_tokens": 5,
                                         "messages": []}
    same = prepare_body(b'{"model":"gpt-4.1"}', "max_completion_tokens", model="gpt-4.1")
    assert same.body == b'{"model":"gpt-4.1"}'


def test_the_rules_leave_the_clients_parse_as_it_came():
    """prepare_body rewrites a parse handed to it through fields_copy (an
    alias, the gpt-5 rules, a cap, the usage question) and leaves the
    client's parse, which the call keeps for the bridge and the next
    attempt, as it came: every rule sets and drops top-level fields only."""
    body = (b'{"model":"fast","max_tokens":900,"temperature":0.2,"stream":true,'
            b'"stream_options":{"include_obfuscation":false},'
            b'"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function"}]}')
    client = parse_json(body)
    before = copy.deepcopy(client)
    prepared = prepare_body(body, "max_completion_tokens", stream_usage=True,
                            model="gpt-5-mini", cap=100, parsed=fields_copy(client))
    sent = json.loads(prepared.body)
    assert (sent["model"], sent["max_completion_tokens"], sent["temperature"]) == (
        "gpt-5-mini", 100, 1)
    assert "max_tokens" not in sent and sent["stream_options"]["include_usage"] is True
    assert client == before


@pytest.mark.parametrize(("body", "kwargs", "param"), [
    (b'{"model":"fast","seed":1e999,"messages":[]}', {"model": "llama3.2:1b"}, "seed"),
    (b'{"model":"fast","messages":[{"role":"user","logit":[1,-1e999]}]}', {"model": "gpt-5-mini"},
     "messages[0].logit[1]"),
    (b'{"model":"gpt-4.1","max_tokens":900,"top_p":1e999}', {"cap": 100}, "top_p"),
])
def test_an_alias_whose_body_cannot_be_written_back_is_refused(body, kwargs, param):
    """A body that must be rewritten for its route (an alias's upstream
    name, a token cap) but holds a number JSON cannot carry once read
    (beyond a double) is refused, naming where the number is: sent as it
    came, it would go upstream under the alias, or above the cap."""
    with pytest.raises(UnwritableBody) as refused:
        prepare_body(body, "max_completion_tokens", stream_usage=True, **kwargs)
    assert refused.value.param == param and f"'{param}'" in refused.value.message
    # Nothing to rewrite for the route (no alias, a cap not reached): as it came.
    assert prepare_body(body, "max_completion_tokens", cap=10_000).body == body


def test_a_yaml_error_says_where_not_what():
    """A models.yaml that is not YAML is refused with the line and column,
    never the text of the line (which may hold a key)."""
    from genaiproxy.config.models import ModelsFileError

    with pytest.raises(ModelsFileError) as caught:
        parse_models_file("models:\n  - id: a\n    api_key: sk-yaml-secret: x\n", 0)
    assert "line 3" in str(caught.value) and "sk-yaml-secret" not in str(caught.value)


class Recording(Resource):
    """An upstream that answers every request with an empty chat completion
    and keeps the bodies it got."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[bytes] = []

    def render_POST(self, request: Request) -> bytes:
        self.bodies.append(request.content.read())
        request.setHeader(b"content-type", b"application/json")
        return b'{"object": "chat.completion", "choices": []}'


@pytest.mark.parametrize("entry", [
    "  - id: fast\n    upstream_model: gpt-4.1-mini\n",
    "  - id: fast\n    max_output_tokens: 100\n",
])
def test_a_body_that_cannot_be_written_back_for_its_route_is_a_400(tmp_path, entry):
    """A request for an alias (or a capped model) whose body holds a number
    beyond a double never reaches the upstream under the alias name (or
    above the cap): the client gets a 400 invalid_request_error naming where
    the number is.  A request with nothing to rewrite goes as it came."""
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + entry)
    upstream = Recording()
    proxy = MemoryProxy(upstream, models_path=str(models))
    body = b'{"model":"fast","max_tokens":500,"messages":[],"seed":1e999}'
    answer = proxy.request("POST", "/v1/chat/completions", data=body,
                           headers={"Content-Type": ["application/json"]})
    assert answer.code == 400 and upstream.bodies == []
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "seed"
    assert "'seed'" in error["message"] and "beyond the range of a double" in error["message"]
    other = b'{"model":"gpt-4.1","max_tokens":500,"messages":[],"seed":1e999}'
    answer = proxy.request("POST", "/v1/chat/completions", data=other,
                           headers={"Content-Type": ["application/json"]})
    assert answer.code == 200 and upstream.bodies == [other]
