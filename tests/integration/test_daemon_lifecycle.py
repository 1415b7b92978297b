"""Start-up, configuration errors, logging and models.yaml on the real daemon."""

from __future__ import annotations

import json
import resource
import uuid
from pathlib import Path

import pytest
from support import BASE_ENV, run_proxy, run_proxy_expecting_failure

KEY = BASE_ENV["GENAI_API_KEY"]
GOOD = {**BASE_ENV, "GENAI_BASE_URL": "http://127.0.0.1:9"}


@pytest.mark.parametrize(
    "change, variable",
    [
        ({"GENAI_BASE_URL": None}, "GENAI_BASE_URL"),
        ({"GENAI_API_KEY": None}, "GENAI_API_KEY"),
        ({"GENAI_SUBSCRIPTION_NAME": None}, "GENAI_SUBSCRIPTION_NAME"),
        ({"GENAI_BASE_URL": "gateway.example/genai"}, "GENAI_BASE_URL"),
        ({"REQUEST_TIMEOUT": "sixty"}, "REQUEST_TIMEOUT"),
        ({"MAX_RETRIES": "-1"}, "MAX_RETRIES"),
        ({"RETRY_BACKOFF_SEC": "fast"}, "RETRY_BACKOFF_SEC"),
        ({"LOG_BODIES": "maybe"}, "LOG_BODIES"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ({"LOG_STREAM_MAX_BYTES": "1k"}, "LOG_STREAM_MAX_BYTES"),
        ({"HTTPS_PROXY": "proxy.example:8080"}, "HTTPS_PROXY"),
        ({"HTTPS_PROXY": "http://proxy.example:port"}, "HTTPS_PROXY"),
        ({"GENAI_API_KEY": "sk-\u20ac-key"}, "GENAI_API_KEY"),
        ({"GENAI_BASE_URL": "http://gateway.example/g\u00e9nai"}, "GENAI_BASE_URL"),
    ],
)
def test_bad_configuration_stops_startup(change, variable):
    """One clear line naming the variable, a non-zero exit, no traceback."""
    env = dict(GOOD)
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value
    result = run_proxy_expecting_failure(env)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    assert KEY not in result.stderr + result.stdout
    assert "\u20ac" not in result.stderr


def test_bad_listen_description_stops_startup():
    import subprocess
    import tempfile

    from support import TWISTD, _clean_environment

    env = {**_clean_environment(), **GOOD}
    result = subprocess.run([TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen", "carrier-pigeon:8111"],
                            cwd=tempfile.mkdtemp(), env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--listen" in lines[0] and "Traceback" not in result.stderr


def test_port_in_use_is_one_line_and_status_2():
    """A port another process holds ends start-up with one line on stderr
    naming the address and the cause, status 2, and no traceback anywhere."""
    import socket
    import subprocess
    import tempfile

    from support import TWISTD, _clean_environment

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**_clean_environment(), **GOOD}
        result = subprocess.run(
            [TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen", f"tcp:{port}:interface=127.0.0.1"],
            cwd=tempfile.mkdtemp(), env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr == f"genai-proxy: cannot listen on 127.0.0.1:{port}: address already in use\n"
    assert "Traceback" not in result.stdout


def test_listen_errors_described_in_a_few_words():
    """The cause of a listen failure reads as part of a sentence."""
    from twisted.internet.error import CannotListenError

    from genaiproxy.daemon.service import describe_listen_error

    denied = CannotListenError("127.0.0.1", 80, PermissionError(13, "Permission denied"))
    assert describe_listen_error(denied) == "127.0.0.1:80: permission denied"
    everywhere = CannotListenError("", 8111, OSError(98, "Address already in use"))
    assert describe_listen_error(everywhere) == "0.0.0.0:8111: address already in use"
    v6 = CannotListenError("::1", 8111, OSError(98, "Address already in use"))
    assert describe_listen_error(v6) == "[::1]:8111: address already in use"


def test_startup_logs_masked_configuration(proxy):
    event = proxy.wait_for_event("startup_config")
    assert event["level"] == "INFO"
    assert event["SUBSCRIPTION_NAME"] == "Ocp-Apim-Subscription-Key"
    assert event["SUBSCRIPTION_KEY"] == KEY[:4] + "*" * (len(KEY) - 4)
    assert event["REQUEST_TIMEOUT"] == 60.0
    assert event["MAX_RETRIES"] == 2
    assert event["LOG_BODIES"] is True
    assert event["ALLOWED_ORIGINS"] == []
    assert event["PROXY_ENABLED"] is False
    assert event["MAX_REQUEST_BODY_MB"] == 100.0 and event["SHUTDOWN_GRACE_SEC"] == 30.0


def _open_files_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no open files limit")


def test_open_files_soft_limit_raised_to_the_hard_limit(mock_url):
    """Each stream holds two descriptors: the daemon raises its soft limit to
    the hard one at start-up and logs both."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert hard > 256

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    with run_proxy(mock_url, preexec=low_soft_limit) as limited:
        event = limited.wait_for_event("open_files_limit")
        assert (event["raised_from"], event["soft"], event["hard"]) == (256, hard, hard)
        assert _open_files_limits(limited.process.pid) == (hard, hard)


def test_every_line_is_json_and_no_secret_leaks(proxy, client):
    rid = "logs-" + uuid.uuid4().hex
    client.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "gpt-4.1", "messages": []},
        headers={"X-Request-ID": rid, "Authorization": "Bearer client-secret-token"},
    )
    request = proxy.wait_for_event("request", id=rid)
    response = proxy.wait_for_event("response", id=rid)
    assert request["method"] == "POST" and request["path"] == "/v1/chat/completions"
    assert request["upstream"].endswith("/v1/chat/completions")
    assert request["headers"]["authorization"] == "[redacted]"
    # What left the proxy: the key header (masked) and the id, not the
    # client's credential.
    sent = request["upstream_headers"]
    assert sent["ocp-apim-subscription-key"] == "[redacted]"
    assert sent["x-request-id"] == rid and "authorization" not in sent
    assert "ocp-apim-subscription-key" not in request["headers"]
    assert request["body"] == {"model": "gpt-4.1", "messages": []}
    assert response["status"] == 200 and response["duration_ms"] >= 0
    assert response["body"]["object"] == "chat.completion"
    for line in proxy.lines:
        json.loads(line)
        assert KEY not in line
        assert "client-secret-token" not in line


def test_log_bodies_off(mock_url, client):
    with run_proxy(mock_url, LOG_BODIES="false") as quiet:
        rid = "nobody-" + uuid.uuid4().hex
        client.post(quiet.url + "/v1/chat/completions", json={"model": "gpt-4.1", "messages": []},
                    headers={"X-Request-ID": rid})
        request = quiet.wait_for_event("request", id=rid)
        response = quiet.wait_for_event("response", id=rid)
        assert "body" not in request and "body" not in response
        assert quiet.wait_for_event("startup_config")["LOG_BODIES"] is False


def test_models_file_missing_gives_empty_list(mock_url, client):
    with run_proxy(mock_url) as bare:
        response = client.get(bare.url + "/v1/models")
        assert response.status_code == 200
        assert response.json() == {"object": "list", "data": []}
        missing = bare.wait_for_event("models_file_missing")
        assert missing["level"] == "WARNING"
        assert missing["path"] == str((bare.workdir / "models.yaml").resolve())


def test_explicit_models_path_must_exist(tmp_path):
    """A --models file that is not there stops start-up with one line naming
    it, status 2 (the default ./models.yaml may be missing: see below)."""
    import subprocess

    from support import TWISTD, _clean_environment

    env = {**_clean_environment(), **GOOD}
    result = subprocess.run(
        [TWISTD, "-n", "--pidfile=", "genaiproxy", "--listen", "tcp:0:interface=127.0.0.1",
         "--models", "team-models.yaml"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(tmp_path / "team-models.yaml") in lines[0], result.stderr


def test_invalid_models_file_is_a_clear_500(mock_url, client):
    """A models.yaml that never was valid: /v1/models says why (500), the
    rest of the proxy keeps working, and fixing the file is picked up."""
    with run_proxy(mock_url, models="models: [unclosed\n") as p:
        response = client.get(p.url + "/v1/models")
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["type"] == "proxy_error"
        models_path = str((p.workdir / "models.yaml").resolve())
        assert models_path in error["message"] and "YAML" in error["message"]
        # Never loaded: a load failure, not a reload failure.
        assert p.wait_for_event("models_load_failed")["path"] == models_path
        assert not p.events("models_reload_failed")
        assert client.get(p.url + "/health").status_code == 200
        chat = client.post(p.url + "/v1/chat/completions", json={"model": "gpt-4.1", "messages": []})
        assert chat.status_code == 200
        (p.workdir / "models.yaml").write_text("models:\n  - id: fixed-model\n")
        assert client.get(p.url + "/v1/models").json()["data"][0]["id"] == "fixed-model"


def test_secret_headers_redacted_and_token_never_logged(mock_url, client):
    """api-key, x-api-key, Cookie and Set-Cookie values are logged as
    [redacted], and a token-protected daemon never logs its AUTH_TOKEN."""
    token = "tok-" + uuid.uuid4().hex
    with run_proxy(mock_url, AUTH_TOKEN=token) as guarded:
        rid = "redact-" + uuid.uuid4().hex
        response = client.post(
            guarded.url + "/v1/chat/completions", json={"model": "gpt-4.1", "messages": []},
            headers={"X-Request-ID": rid, "Authorization": f"Bearer {token}",
                     "api-key": "client-api-key-1", "x-api-key": "client-x-api-key-2",
                     "Cookie": "session=cookie-secret-3",
                     "X-Mock-Header": "Set-Cookie: upstream=cookie-secret-4"})
        assert response.status_code == 200
        request = guarded.wait_for_event("request", id=rid)
        answer = guarded.wait_for_event("response", id=rid)
        for name in ("authorization", "api-key", "x-api-key", "cookie"):
            assert request["headers"][name] == "[redacted]", name
        assert answer["headers"]["set-cookie"] == "[redacted]"
        log = "\n".join(guarded.lines)
        for secret in (token, "client-api-key-1", "client-x-api-key-2", "cookie-secret-3", KEY):
            assert secret not in log, secret
        # (The request event shows the mock's control header that asked for
        # the cookie; the answer's Set-Cookie itself is not logged.)
        assert "cookie-secret-4" not in json.dumps(answer)
