"""The settings table and models.yaml's keys: declared once, and what is made
from them (loading, messages, --help, the start-up event, the doctor's view,
the reference pages) agrees with them; and the one reader of --listen."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from genaiproxy.config import ConfigError, load_config
from genaiproxy.config.listen import parse_listen
from genaiproxy.config.models_keys import (
    MODEL_KEYS,
    REFUSED_KEYS,
    ROUTING_KEYS,
    UNLISTED_KEYS,
    UPSTREAM_KEY_NAMES,
)
from genaiproxy.config.reference import PAGES
from genaiproxy.config.settings import BY_NAME, SETTINGS, Config, environment_help

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"
REQUIRED = {"GENAI_SUBSCRIPTION_NAME": "Ocp-Apim-Subscription-Key", "GENAI_API_KEY": "k-secret",
            "GENAI_BASE_URL": "https://gateway.example/genai"}


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_reference_pages_are_what_the_tables_make(page):
    """docs/reference/configuration.md and models-yaml.md are the generator's
    output, whole: a setting or a key added, renamed or given another
    default in the table without regenerating fails here."""
    committed = (REFERENCE / page).read_text(encoding="utf-8")
    assert committed == PAGES[page](), (
        f"docs/reference/{page} differs from the tables: run "
        "`python -m genaiproxy.config.reference docs/reference` and commit the result")


def test_every_config_field_is_one_setting_of_the_table():
    """Config is the table: each field declares one variable, once, with a
    one-line help."""
    assert [item.attribute for item in SETTINGS] == [f.name for f in fields(Config)]
    assert len(BY_NAME) == len(SETTINGS)
    for item in SETTINGS:
        assert item.help and "\n" not in item.help and len(item.help) <= 70, item.name
        assert item.name.isupper(), item.name


def test_unset_settings_take_the_tables_defaults():
    """With only the required variables, every other field is its default."""
    config = load_config(REQUIRED)
    for item in SETTINGS:
        if not item.required:
            assert getattr(config, item.attribute) == item.default, item.name
    assert config.changed() == []


@pytest.mark.parametrize("item", [item for item in SETTINGS if item.default_text()
                                  and not item.required and not item.shown_default],
                         ids=lambda item: item.name)
def test_a_default_written_out_reads_as_the_default(item):
    """The default as --help and the reference show it is a value the
    variable accepts, and it means the default."""
    config = load_config({**REQUIRED, item.name: item.default_text()})
    assert getattr(config, item.attribute) == item.default


def test_help_shows_each_setting_with_its_default():
    """twistd genaiproxy --help: one line a setting, its default in brackets."""
    shown = environment_help().splitlines()
    assert len(shown) == 1 + len(SETTINGS)
    for line, item in zip(shown[1:], SETTINGS, strict=True):
        assert line.split()[0] == item.name
        assert f"[{item.default_text() or 'empty'}]" in line and line.endswith(item.help)
    assert "  REQUEST_TIMEOUT             [60]       seconds to connect" in environment_help()
    assert "  LOG_FORMAT                  [text on a terminal, else json] " in environment_help()


@pytest.mark.parametrize("env, message", [
    ({"MAX_RETRIES": "lots"}, "MAX_RETRIES must be a whole number, got 'lots'"),
    ({"MAX_RETRIES": "-1"}, "MAX_RETRIES must not be negative, got '-1'"),
    ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT must be a number >= 0.001, got '0'"),
    ({"HEADER_TIMEOUT": "soon"}, "HEADER_TIMEOUT must be a number, got 'soon'"),
    ({"LOG_BODIES": "Maybe"}, "LOG_BODIES must be true or false, got 'maybe'"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of debug, info, warn, error, got 'loud'"),
    ({"GENAI_BASE_URL": "ftp://x"},
     "GENAI_BASE_URL must be an http:// or https:// URL with a host, got 'ftp://x'"),
    ({"GENAI_BASE_URL": " "}, "GENAI_BASE_URL is required but empty"),
    ({"HTTPS_PROXY": "http://u:pw@:0"}, "HTTPS_PROXY must be an http:// or https:// URL with "
                                        "a host, got 'http://:0'"),
    ({"GENAI_SUBSCRIPTION_NAME": "bad name"},
     "GENAI_SUBSCRIPTION_NAME is not a valid header name: 'bad name'"),
    ({"GENAI_API_VERSION": "2024/10"}, "GENAI_API_VERSION looks wrong: '2024/10' (e.g. 2024-10-21)"),
    ({"GENAI_API_KEY": ""}, "GENAI_API_KEY is empty; set both GENAI_SUBSCRIPTION_NAME and "
                            "GENAI_API_KEY, or leave both empty for an upstream without a key"),
])
def test_messages_name_the_variable(env, message):
    """Each refused value gives the message it always gave, naming the
    variable (and the error says which setting, for the doctor)."""
    with pytest.raises(ConfigError) as caught:
        load_config({**REQUIRED, **env})
    assert str(caught.value) == message
    assert caught.value.setting == next(iter(env))


def test_a_required_variable_unset_is_named():
    with pytest.raises(ConfigError, match="^GENAI_SUBSCRIPTION_NAME is required but not set$"):
        load_config({"GENAI_API_KEY": "k", "GENAI_BASE_URL": "http://u"})


def test_lower_case_proxy_variables_are_honoured_when_the_upper_case_ones_are_empty():
    config = load_config({**REQUIRED, "HTTPS_PROXY": " ", "https_proxy": "http://p:3128",
                          "no_proxy": "localhost"})
    assert (config.https_proxy, config.no_proxy) == ("http://p:3128", "localhost")
    config = load_config({**REQUIRED, "HTTPS_PROXY": "http://upper:3128",
                          "https_proxy": "http://lower:3128"})
    assert config.https_proxy == "http://upper:3128"


def test_the_start_up_event_has_the_fields_it_always_had():
    """startup_config: the same fields as before the table (and RESPONSES_API
    since issue 19, MESSAGES_API since 20, the limits' since 21, STATUS_PUBLIC
    since 23), secrets masked, URLs without their credentials."""
    config = load_config({**REQUIRED, "AUTH_TOKEN": "tok-secret", "ALLOWED_ORIGINS": "http://a/",
                          "HTTPS_PROXY": "http://user:pw-secret@proxy.example:3128",
                          "LIMITS_REDIS_URL": "redis://:redis-secret@127.0.0.1:6379/2"})
    summary = config.summary()
    assert set(summary) == {
        "SUBSCRIPTION_NAME", "SUBSCRIPTION_KEY", "GENAI_BASE_URL", "REQUEST_TIMEOUT",
        "MAX_RETRIES", "RETRY_BACKOFF_SEC", "RETRY_AFTER_MAX_SEC", "LOG_BODIES",
        "ALLOWED_ORIGINS", "LOG_STREAM_MAX_BYTES", "STREAM_USAGE", "HTTPS_PROXY", "PROXY_ENABLED",
        "NO_PROXY", "GENAI_CA_BUNDLE", "GENAI_API_VERSION", "SHUTDOWN_GRACE_SEC",
        "SHUTDOWN_DELAY_SEC", "MAX_REQUEST_BODY_MB", "LOG_LEVEL", "MAX_HEADER_LINE_BYTES",
        "MAX_HEADER_BYTES", "MAX_HEADER_COUNT", "HEADER_TIMEOUT", "KEEPALIVE_TIMEOUT",
        "MAX_CLIENT_CONNECTIONS", "GENAI_API_KEY_FILE", "AUTH_TOKEN_FILE", "AUTH_TOKENS_FILE",
        "AUTH_ENABLED", "RESPONSES_API", "MESSAGES_API", "LIMITS_STATE_FILE", "LIMITS_REDIS_URL",
        "LIMITS_REDIS_PASSWORD_FILE", "LIMITS_REDIS_FAILURE", "LIMITS_REDIS_LEASE_SEC",
        "STATUS_PUBLIC"}
    assert summary["SUBSCRIPTION_KEY"] == "k-se****"
    assert summary["LIMITS_REDIS_URL"] == "redis://127.0.0.1:6379/2"
    assert summary["HTTPS_PROXY"] == "http://proxy.example:3128"
    assert summary["ALLOWED_ORIGINS"] == ["http://a"] and summary["AUTH_ENABLED"] is True
    assert "tok-secret" not in repr(summary) + repr(config)
    assert "redis-secret" not in repr(summary) + repr(config.changed()) + repr(config)


def test_the_doctors_view_names_changed_settings_and_hides_secrets():
    """The doctor's configuration step: the settings not at their defaults,
    a secret only as set; a refused one with its line of the table."""
    from genaiproxy.cli.doctor.main import _fix

    config = load_config({**REQUIRED, "MAX_RETRIES": "0", "AUTH_TOKEN": "tok-secret",
                          "LOG_BODIES": "no", "HTTPS_PROXY": "http://u:pw-secret@proxy:3128"})
    assert config.changed() == [("MAX_RETRIES", "0"), ("LOG_BODIES", "false"),
                                ("AUTH_TOKEN", "(set)"), ("HTTPS_PROXY", "http://proxy:3128")]
    assert _fix(ConfigError("MAX_RETRIES must be a whole number", "MAX_RETRIES")) == (
        "correct MAX_RETRIES: retries of a failed upstream attempt (0: none) [default: 2]")
    assert "--help" in _fix(ConfigError("upstream 'x': base_url is required"))


def test_client_limits_default_to_the_table():
    """A site built without settings limits its clients as the defaults do."""
    from genaiproxy.server.channel import ClientLimits

    limits, config = ClientLimits(), load_config(REQUIRED)
    assert (limits.max_header_line_bytes, limits.max_header_bytes, limits.max_header_count,
            limits.header_timeout, limits.keepalive_timeout, limits.body_idle_timeout,
            limits.max_connections) == (
        config.max_header_line_bytes, config.max_header_bytes, config.max_header_count,
        config.header_timeout, config.keepalive_timeout, config.request_timeout,
        config.max_client_connections)


def test_models_yaml_keys_are_the_ones_it_always_accepted():
    """The key table gives the same sets the routing code used to spell out."""
    assert ROUTING_KEYS == {"upstream", "upstream_model", "hidden", "fallbacks",
                            "max_output_tokens"}
    assert UNLISTED_KEYS == ROUTING_KEYS | {"context_window", "price"}
    assert UPSTREAM_KEY_NAMES == {
        "base_url", "subscription_name", "api_key_env", "api_key_file", "api_version",
        "ca_bundle", "request_timeout", "max_retries", "retry_backoff_sec", "responses_api",
        "messages_api"}
    assert {"api_key", "token", "secret"} <= REFUSED_KEYS
    assert [key.name for key in MODEL_KEYS][:4] == ["id", "object", "owned_by", "created"]


@pytest.mark.parametrize("description, kind, port, interface, bound", [
    ("tcp:8111:interface=127.0.0.1", "tcp", 8111, "127.0.0.1", "127.0.0.1"),
    ("tcp:port=9001:interface=192.0.2.7", "tcp", 9001, "192.0.2.7", "192.0.2.7"),
    ("tcp:interface=127.0.0.1:port=9002", "tcp", 9002, "127.0.0.1", "127.0.0.1"),
    ("tcp:9000", "tcp", 9000, "", "0.0.0.0"),
    ("tcp6:9002:interface=\\:\\:1", "tcp6", 9002, "::1", "::1"),
    ("tcp6:9003", "tcp6", 9003, "", "::"),
    ("ssl:8443:privateKey=key.pem:interface=0.0.0.0", "ssl", 8443, "0.0.0.0", "0.0.0.0"),
    ("systemd:domain=INET:index=0", "systemd", None, "", "0.0.0.0"),
    ("unix:/run/genai-proxy.sock", "unix", None, "", "0.0.0.0"),
    ("tcp:http", "tcp", None, "", "0.0.0.0"),
])
def test_listen_is_read_as_twisted_reads_it(description, kind, port, interface, bound):
    """One reader of --listen for the daemon, doctor, configure and quickstart:
    Twisted's own splitting (escapes included; it is private Twisted API, so
    this pins what it gives)."""
    endpoint = parse_listen(description)
    assert (endpoint.kind, endpoint.port, endpoint.interface, endpoint.bound_interface) == (
        kind, port, interface, bound)


def test_listen_options_are_added_unless_given():
    assert parse_listen("tcp:8111").with_option("backlog", "1024") == "tcp:8111:backlog=1024"
    assert parse_listen("tcp:8111:backlog=10").with_option("backlog", "1024") == \
        "tcp:8111:backlog=10"
    with pytest.raises(ValueError):
        parse_listen("tcp:8111:interface=\\")
