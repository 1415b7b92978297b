"""Secrets from files and systemd credentials, rotated without a restart,
and a token per client, checked against every token."""

from __future__ import annotations

import signal
import threading
import uuid
from typing import Any

import httpx
import pytest
from support import BASE_ENV, ProxyProcess, run_proxy, run_proxy_expecting_failure, upstream_saw
from twisted.logger import LogLevel, globalLogPublisher

from genaiproxy.config.credentials import (
    ClientTokens,
    SecretError,
    SecretFile,
    parse_header_secret,
    parse_tokens_file,
)
from genaiproxy.config.environment import ConfigError, load_config

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4.1", "messages": []}
KEY_HEADER = BASE_ENV["GENAI_SUBSCRIPTION_NAME"].lower()


def sent_keys(mock_url: str, rid: str) -> list[str]:
    """The subscription key of each request the upstream saw with id C{rid}."""
    return [r["headers"][KEY_HEADER][0] for r in upstream_saw(mock_url, rid)]


def chat(proxy: ProxyProcess, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(proxy.url + CHAT, json=BODY, headers=headers, timeout=30)


# The parsers and the token set.

def test_tokens_file_refuses_duplicates_without_showing_tokens():
    """A name or a token given twice is a load error; no message holds a token."""
    with pytest.raises(SecretError, match="appears twice") as name:
        parse_tokens_file("alice: tok-aaaaaaaa\nalice: tok-bbbbbbbb\n", "t.yaml")
    with pytest.raises(SecretError, match="same token") as token:
        parse_tokens_file("alice: tok-aaaaaaaa\nbob: tok-aaaaaaaa\n", "t.yaml")
    for problem in (name.value, token.value):
        assert "tok-" not in str(problem)
    with pytest.raises(SecretError, match="mapping"):
        parse_tokens_file("- just a list\n", "t.yaml")
    with pytest.raises(SecretError, match="must be text"):
        parse_tokens_file("? [a, b]\n: tok-cccccccc\n", "t.yaml")
    with pytest.raises(SecretError, match="not valid YAML"):
        parse_tokens_file("alice: [tok-unclosed\n", "t.yaml")
    assert parse_tokens_file("alice: tok-a\nci-runner: tok-b\n", "t.yaml") == {
        "alice": "tok-a", "ci-runner": "tok-b"}


def test_client_tokens_name_the_client_and_refuse_others():
    tokens = ClientTokens()
    assert not tokens.enabled
    tokens.set_named({"alice": "tok-a", "bob": "tok-b"})
    assert tokens.match(b"tok-b") == "bob" and tokens.match(b"tok-a") == "alice"
    assert tokens.match(b"tok-c") is None and tokens.match(b"") is None
    tokens.set_named({"alice": "tok-a"})  # bob revoked
    assert tokens.match(b"tok-b") is None


def test_secret_file_keeps_the_last_good_value(tmp_path):
    """A file that becomes empty or unreadable keeps the value in service and
    logs an error (without the value); a good value again is taken."""
    path = tmp_path / "key"
    path.write_text("key-one\n")
    seen: list[str] = []
    events: list[dict[str, Any]] = []
    secret = SecretFile("GENAI_API_KEY_FILE", str(path), parse_header_secret, seen.append)
    globalLogPublisher.addObserver(events.append)
    try:
        path.write_text("")
        secret.refresh()
        path.unlink()
        secret.refresh()
        assert secret.value == "key-one" and seen == ["key-one"]
        path.write_text("key-two")
        secret.refresh()
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert secret.value == "key-two" and seen == ["key-one", "key-two"]
    failed = [e for e in events if e.get("log_format") == "credentials_reload_failed"]
    assert failed and failed[0]["log_level"] == LogLevel.error
    assert "key-one" not in repr(events)


@pytest.mark.parametrize("env, message", [
    ({"GENAI_API_KEY": "k", "GENAI_API_KEY_FILE": "/x"}, "both set"),
    ({"GENAI_API_KEY_FILE": "/nonexistent/key"}, "GENAI_API_KEY_FILE: cannot read"),
    ({"GENAI_API_KEY": "k", "AUTH_TOKEN": "t", "AUTH_TOKEN_FILE": "/x"}, "both set"),
    ({}, "GENAI_API_KEY is required"),
])
def test_secret_settings_that_stop_start_up(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"GENAI_SUBSCRIPTION_NAME": "h", "GENAI_BASE_URL": "http://u", **env})


def test_empty_key_file_stops_start_up_without_showing_it(tmp_path):
    (tmp_path / "key").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config({"GENAI_SUBSCRIPTION_NAME": "h", "GENAI_BASE_URL": "http://u",
                     "GENAI_API_KEY_FILE": str(tmp_path / "key")})


def test_systemd_credentials_are_used(tmp_path):
    """systemd's LoadCredential= files stand in for the variables."""
    (tmp_path / "genai_api_key").write_text("key-from-systemd\n")
    (tmp_path / "auth_token").write_text("token-from-systemd")
    config = load_config({"GENAI_SUBSCRIPTION_NAME": "h", "GENAI_BASE_URL": "http://u",
                          "CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert config.api_key == "key-from-systemd" and config.auth_token == "token-from-systemd"
    assert config.api_key_file == str(tmp_path / "genai_api_key")
    assert "key-from-systemd" not in repr(config) and "token-from" not in repr(config)


# Through the daemon.

def test_key_file_rotates_without_a_restart(mock_url, tmp_path):
    """A new key in the file is used from the next request on (SIGHUP takes
    it at once); a request already under way, retried after the change,
    keeps the key it started with."""
    key = tmp_path / "key"
    key.write_text("key-old-0001\n")
    with run_proxy(mock_url, GENAI_API_KEY_FILE=str(key), without=("GENAI_API_KEY",)) as proxy:
        rid = str(uuid.uuid4())
        assert chat(proxy, **{"X-Request-ID": rid}).status_code == 200
        assert sent_keys(mock_url, rid) == ["key-old-0001"]

        # Under way: the upstream asks for a 2 s pause; the key changes meanwhile.
        slow = str(uuid.uuid4())
        answer: dict[str, httpx.Response] = {}
        sender = threading.Thread(target=lambda: answer.setdefault("r", chat(
            proxy, **{"X-Request-ID": slow, "X-Mock-Fail-First": "1", "X-Mock-Fail-Status": "429",
                      "X-Mock-Header": "Retry-After: 2"})))
        sender.start()
        proxy.wait_for_event("rate_limit_wait", id=slow)
        key.write_text("key-new-0002\n")
        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_for_event("credentials_reloaded", setting="GENAI_API_KEY_FILE")
        sender.join(timeout=30)
        assert answer["r"].status_code == 200
        assert sent_keys(mock_url, slow) == ["key-old-0001", "key-old-0001"]

        rid = str(uuid.uuid4())
        assert chat(proxy, **{"X-Request-ID": rid}).status_code == 200
        assert sent_keys(mock_url, rid) == ["key-new-0002"]

        # An emptied file keeps the key in service, and says so.
        key.write_text("")
        failed = proxy.wait_for_event("credentials_reload_failed", setting="GENAI_API_KEY_FILE")
        assert failed["level"] == "ERROR"
        rid = str(uuid.uuid4())
        assert chat(proxy, **{"X-Request-ID": rid}).status_code == 200
        assert sent_keys(mock_url, rid) == ["key-new-0002"]
    log = "\n".join(proxy.lines)
    assert "key-old-0001" not in log and "key-new-0002" not in log


TOKENS = "alice-laptop: tok-alice-1111\nci-runner: tok-ci-2222\n"


def test_a_token_per_client_named_in_every_event(mock_url, tmp_path):
    """Each client's token lets it in and its name (never the token) is in
    every event of its requests; an edit of the file revokes a token."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(TOKENS)
    with run_proxy(mock_url, AUTH_TOKENS_FILE=str(tokens)) as proxy:
        assert chat(proxy).status_code == 401
        assert chat(proxy, "tok-nobody").status_code == 401
        rid = str(uuid.uuid4())
        assert chat(proxy, "tok-alice-1111", **{"X-Request-ID": rid}).status_code == 200
        streamed = httpx.post(proxy.url + CHAT, json={**BODY, "stream": True}, timeout=30,
                              headers={"Authorization": "Bearer tok-ci-2222", "X-Request-ID":
                                       (sid := str(uuid.uuid4()))})
        assert streamed.status_code == 200
        for name in ("request", "response"):
            assert proxy.wait_for_event(name, id=rid)["client"] == "alice-laptop"
        for name in ("request", "streaming_end"):
            assert proxy.wait_for_event(name, id=sid)["client"] == "ci-runner"

        tokens.write_text("alice-laptop: tok-alice-1111\n")  # ci-runner revoked
        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_for_event("credentials_reloaded", setting="AUTH_TOKENS_FILE")
        assert chat(proxy, "tok-ci-2222").status_code == 401
        assert chat(proxy, "tok-alice-1111").status_code == 200

        tokens.write_text("alice-laptop: tok-x\nbob: tok-x\n")  # a broken edit
        proxy.process.send_signal(signal.SIGHUP)
        proxy.wait_for_event("credentials_reload_failed", setting="AUTH_TOKENS_FILE")
        assert chat(proxy, "tok-alice-1111").status_code == 200
    log = "\n".join(proxy.lines)
    assert "tok-alice-1111" not in log and "tok-ci-2222" not in log and "tok-x" not in log


def test_bad_tokens_file_or_two_token_settings_stop_start_up(tmp_path):
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("alice: tok-same-1\nbob: tok-same-1\n")
    env = {**BASE_ENV, "GENAI_BASE_URL": "http://127.0.0.1:9", "AUTH_TOKENS_FILE": str(tokens)}
    failed = run_proxy_expecting_failure(env)
    assert failed.returncode == 2 and "same token" in failed.stderr
    assert "tok-same-1" not in failed.stderr + failed.stdout
    tokens.write_text(TOKENS)
    failed = run_proxy_expecting_failure({**env, "AUTH_TOKEN": "t"})
    assert failed.returncode == 2 and "use one" in failed.stderr


def test_systemd_credentials_reach_the_daemon(mock_url, tmp_path):
    """With $CREDENTIALS_DIRECTORY (as LoadCredential= sets it) and no key
    variable, the key and the token come from its files."""
    (tmp_path / "genai_api_key").write_text("key-cred-3333")
    (tmp_path / "auth_token").write_text("tok-cred-4444")
    with run_proxy(mock_url, CREDENTIALS_DIRECTORY=str(tmp_path),
                   without=("GENAI_API_KEY",)) as proxy:
        rid = str(uuid.uuid4())
        assert chat(proxy, "wrong").status_code == 401
        assert chat(proxy, "tok-cred-4444", **{"X-Request-ID": rid}).status_code == 200
        assert sent_keys(mock_url, rid) == ["key-cred-3333"]
        assert proxy.wait_for_event("request", id=rid)["client"] == "default"
    assert "key-cred-3333" not in "\n".join(proxy.lines)
