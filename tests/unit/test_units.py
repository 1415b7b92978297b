"""Configuration, gpt-5 normalisation, models.yaml parsing and log rendering."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.logger import Logger, LogPublisher
from twisted.web.http_headers import Headers

from genaiproxy.api.normalize import CHAT_TOKEN_FIELD, RESPONSES_TOKEN_FIELD, prepare_body
from genaiproxy.config.environment import ConfigError, load_config, mask, strip_userinfo
from genaiproxy.config.models import ModelCatalog, ModelsFileError, parse_models
from genaiproxy.observe.logs import LinesObserver, redact_headers, secret_header_names

ENV = {
    "GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key",
    "GENAI_API_KEY": "abcd-very-secret",
    "GENAI_BASE_URL": "https://gateway.example/genai",
}


def test_config_defaults():
    config = load_config(ENV)
    assert (config.request_timeout, config.max_retries, config.retry_backoff_sec) == (60.0, 2, 0.5)
    assert config.log_bodies is True and config.log_stream_max_bytes == 0
    assert config.allowed_origins == () and config.https_proxy == "" and config.auth_token == ""


def test_config_values():
    config = load_config({**ENV, "REQUEST_TIMEOUT": "2.5", "MAX_RETRIES": "0", "LOG_BODIES": "False",
                          "ALLOWED_ORIGINS": "http://a:1, http://b/", "AUTH_TOKEN": "t",
                          "GENAI_BASE_URL": "http://gateway.example/genai",
                          "HTTPS_PROXY": "http://proxy.example:3128"})
    assert config.request_timeout == 2.5 and config.max_retries == 0 and not config.log_bodies
    assert config.allowed_origins == ("http://a:1", "http://b")
    assert config.summary()["PROXY_ENABLED"] is True


def test_secrets_stay_out_of_repr_and_summary():
    config = load_config({**ENV, "AUTH_TOKEN": "tok-secret",
                          "GENAI_BASE_URL": "http://gwuser:gw-secret@gw.example",
                          "HTTPS_PROXY": "http://user:pw-secret@proxy.example:3128"})
    text = repr(config) + json.dumps(config.summary())
    for secret in ("abcd-very-secret", "tok-secret", "pw-secret", "gw-secret"):
        assert secret not in text
    assert config.summary()["SUBSCRIPTION_KEY"] == "abcd" + "*" * 12
    assert config.summary()["HTTPS_PROXY"] == "http://proxy.example:3128"


@pytest.mark.parametrize("env", [
    {"GENAI_API_KEY": ""},
    {"GENAI_SUBSCRIPTION_NAME": "bad header name"},
    {"GENAI_BASE_URL": "ftp://x"},
    {"REQUEST_TIMEOUT": "0"},
    {"REQUEST_TIMEOUT": "nan"},
    {"MAX_RETRIES": "1.5"},
])
def test_config_errors(env):
    with pytest.raises(ConfigError):
        load_config({**ENV, **env})


def test_mask_and_strip_userinfo():
    assert mask("abcdefgh") == "abcd****" and mask("ab") == "ab"
    assert strip_userinfo("http://u:p@h:1/x") == "http://h:1/x"
    assert strip_userinfo("http://h:1") == "http://h:1"


def test_gpt5_chat_rules():
    body = b'{"model":"gpt-5","max_tokens":10,"temperature":0.5,"stream":true}'
    prepared = prepare_body(body, CHAT_TOKEN_FIELD)
    assert prepared.gpt5 and prepared.stream
    assert json.loads(prepared.body) == {"model": "gpt-5", "max_completion_tokens": 10,
                                         "temperature": 1, "stream": True}


def test_gpt5_keeps_existing_limit_and_temperature_one():
    body = b'{"model":"gpt-5-nano","max_completion_tokens":5,"max_tokens":10,"temperature":1}'
    assert json.loads(prepare_body(body, CHAT_TOKEN_FIELD).body) == {
        "model": "gpt-5-nano", "max_completion_tokens": 5, "temperature": 1}
    untouched = b'{"model": "gpt-5", "temperature": 1}'
    assert prepare_body(untouched, CHAT_TOKEN_FIELD).body == untouched


def test_gpt5_responses_rules():
    body = b'{"model":"gpt-5","max_tokens":10,"max_completion_tokens":20}'
    assert json.loads(prepare_body(body, RESPONSES_TOKEN_FIELD).body) == {
        "model": "gpt-5", "max_output_tokens": 10}


@given(st.dictionaries(st.sampled_from(["model", "max_tokens", "temperature", "stream", "x"]),
                       st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans())))
def test_non_gpt5_bodies_are_untouched(payload):
    if str(payload.get("model", "")).lower().startswith("gpt-5"):
        payload["model"] = "gpt-4.1"
    body = json.dumps(payload, indent=1).encode()
    assert prepare_body(body, CHAT_TOKEN_FIELD).body == body


def test_not_json_is_untouched():
    for body in (b"", b"not json", b"[1,2]", b"\xff\xfe"):
        assert prepare_body(body, CHAT_TOKEN_FIELD).body == body


def test_models_both_layouts_and_defaults():
    as_list = parse_models("- id: a\n- id: b\n  owned_by: me\n  created: 5\n- object: model\n", now=42)
    under_key = parse_models("models:\n  - id: a\n  - id: b\n    owned_by: me\n    created: 5\n", now=42)
    expected = [{"id": "a", "object": "model", "owned_by": "genai", "created": 42},
                {"id": "b", "object": "model", "owned_by": "me", "created": 5}]
    assert as_list == under_key == expected
    assert parse_models("", now=1) == []


@pytest.mark.parametrize("text", ["models: [unclosed", "just a string", "models: 5", "other: []"])
def test_models_bad_files(text):
    with pytest.raises(ModelsFileError):
        parse_models(text, now=1)


def test_catalog_rereads_changed_file(tmp_path):
    path = tmp_path / "models.yaml"
    catalog = ModelCatalog(str(path), now=lambda: 7)
    assert catalog.models() == []
    path.write_text("- id: one\n")
    assert [m["id"] for m in catalog.models()] == ["one"]
    path.write_text("- id: one\n- id: two\n")
    assert [m["id"] for m in catalog.models()] == ["one", "two"]


def test_redaction():
    headers = Headers({b"Authorization": [b"Bearer x"], b"My-Key": [b"k"], b"Accept": [b"*/*"],
                       b"Proxy-Authorization": [b"Basic y"]})
    shown = redact_headers(headers, secret_header_names(["My-Key"]))
    assert shown == {"authorization": "[redacted]", "my-key": "[redacted]", "accept": "*/*",
                     "proxy-authorization": "[redacted]"}


def test_observer_writes_one_json_object_per_line():
    stream = io.StringIO()
    publisher = LogPublisher(LinesObserver(stream))
    log = Logger(namespace="genaiproxy.test", observer=publisher)
    log.info("request", id="r1", headers={"a": "b"})
    log.warn("retry", id="r1", retry=1)
    Logger(namespace="twisted.x", observer=publisher).info("Site starting on {port}", port=1)
    first, second, third = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["event"] == "request" and first["level"] == "INFO" and first["id"] == "r1"
    assert second["level"] == "WARNING" and second["retry"] == 1
    assert third["message"] == "Site starting on 1"


def test_any_origin_with_star():
    from twisted.web.test.requesthelper import DummyRequest

    from genaiproxy.config.credentials import ClientTokens
    from genaiproxy.server.site import AccessPolicy

    request = DummyRequest([b""])
    request.requestHeaders.setRawHeaders(b"origin", [b"http://anything.example"])
    assert AccessPolicy(ClientTokens(), ("*",)).allowed_origin(request) == b"http://anything.example"
    assert AccessPolicy(ClientTokens(), ("http://other.example",)).allowed_origin(request) is None
    assert AccessPolicy(ClientTokens(), ()).allowed_origin(request) is None


def test_listen_backlog_default():
    from genaiproxy.daemon.service import with_backlog

    assert with_backlog("tcp:8111:interface=127.0.0.1") == "tcp:8111:interface=127.0.0.1:backlog=1024"
    assert with_backlog("tcp:8111:backlog=10") == "tcp:8111:backlog=10"
    assert with_backlog("systemd:domain=INET:index=0") == "systemd:domain=INET:index=0"


def test_no_token_field_means_no_rewrite():
    body = b'{"model": "gpt-5", "max_tokens": 3, "temperature": 0.2, "stream": true}'
    prepared = prepare_body(body, None)
    assert prepared.body == body and prepared.stream and not prepared.gpt5
