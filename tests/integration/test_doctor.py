"""`genai-proxy doctor` against real set-ups on loopback: each step passes
where the path works, and the one that breaks names its cause and fix."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
import trustme
from support import BASE_ENV, BIN, _clean_environment, free_port, run_mock_upstream, run_proxy
from support import run_tinyproxy as tinyproxy
from support.redis_server import run_redis

KEY = BASE_ENV["GENAI_API_KEY"]
PROXY_PASSWORD = "tiny-secret-pw-4711"


def doctor(tmp_path: Path, base_url: str, *args: str, **env: str,
           ) -> tuple[int, str, dict[str, dict]]:
    """Run doctor as a user would (text, then --json); its exit status, its
    text, and its steps by name (the last of each name)."""
    environment = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": base_url, **env}
    command = [str(BIN / "genai-proxy"), "doctor",
               "--listen", f"tcp:{free_port()}:interface=127.0.0.1", *args]
    text = subprocess.run(command, env=environment, cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    data = subprocess.run([*command, "--json"], env=environment, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert text.returncode == data.returncode, (text.stdout, data.stdout)
    for output in (text.stdout, text.stderr, data.stdout, data.stderr):
        assert KEY not in output and PROXY_PASSWORD not in output
    assert "Traceback" not in text.stderr + data.stderr, text.stderr + data.stderr
    document = json.loads(data.stdout)
    assert document["ok"] is (data.returncode == 0)
    return text.returncode, text.stdout, {step["name"]: step for step in document["steps"]}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA this machine does not trust, a certificate for localhost signed
    by it, and one for another host."""
    folder = tmp_path_factory.mktemp("doctor-pki")
    ca = trustme.CA(organization_name="Example Corp Inspection")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "localhost.pem"))
    ca.issue_cert("other.example").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "other.pem"))
    return {"ca": folder / "ca.pem", "localhost": folder / "localhost.pem",
            "other": folder / "other.pem"}


@pytest.fixture(scope="module")
def tls_upstream(pki):
    """An https mock upstream signed by the untrusted CA; its URL names localhost."""
    with run_mock_upstream("--tls-cert", str(pki["localhost"])) as (url, _):
        yield url.replace("127.0.0.1", "localhost")


def test_a_working_path_passes_every_step(tmp_path, mock_url):
    """Against a working upstream every step passes, --chat reports the
    time to the first token and the tokens used, and the exit status is 0."""
    status, text, steps = doctor(tmp_path, mock_url, "--chat", "gpt-4.1")
    assert status == 0, text
    assert [name for name in steps] == ["configuration", "listen", "resolve", "connect",
                                        "gateway /", "gateway /v1/models",
                                        "gateway /v1/responses", "chat"]
    assert "served natively" in steps["gateway /v1/responses"]["detail"]
    assert all(step["status"] == "pass" for step in steps.values()), text
    assert "first token after" in steps["chat"]["detail"]
    # The mock counts words: 5 in doctor's prompt, 5 in its reply.
    assert "tokens: 5 in, 5 out" in steps["chat"]["detail"]
    assert "direct: no HTTPS_PROXY" in steps["resolve"]["detail"]
    assert text.splitlines()[-1] == "all steps passed"


def test_an_upstream_that_is_down_fails_the_connect_step(tmp_path):
    """Nothing listening at the base URL: the connect step fails and says
    to check GENAI_BASE_URL; the gateway is not asked."""
    status, text, steps = doctor(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert status == 1
    assert steps["connect"]["status"] == "fail"
    assert "GENAI_BASE_URL" in steps["connect"]["fix"]
    assert "gateway /" not in steps and "✗ connect" in text


def test_an_untrusted_ca_is_named_with_the_setting_that_trusts_it(tmp_path, tls_upstream, pki):
    """TLS inspection by a corporate CA: the TLS step names the issuer and
    GENAI_CA_BUNDLE; with GENAI_CA_BUNDLE set to that CA, it passes."""
    status, text, steps = doctor(tmp_path, tls_upstream)
    assert status == 1, text
    tls = steps["tls"]
    assert tls["status"] == "fail"
    assert "Example Corp Inspection" in tls["cause"] and "GENAI_CA_BUNDLE" in tls["fix"]
    assert "localhost (issued by" in tls["detail"]
    assert "certificate verify failed" in tls["detail"]
    status, text, steps = doctor(tmp_path, tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]))
    assert status == 0, text
    assert steps["tls"]["status"] == "pass"


def test_a_certificate_for_another_host_names_the_hosts_it_holds(tmp_path, pki):
    """A trusted certificate issued for another name: the TLS step says
    which names it holds."""
    with run_mock_upstream("--tls-cert", str(pki["other"])) as (url, _):
        status, text, steps = doctor(tmp_path, url.replace("127.0.0.1", "localhost"),
                                     GENAI_CA_BUNDLE=str(pki["ca"]))
    assert status == 1
    assert steps["tls"]["status"] == "fail"
    assert "other.example" in steps["tls"]["detail"]
    assert "not for localhost" in steps["tls"]["cause"]


def test_a_proxy_that_wants_credentials_is_named(tmp_path, tls_upstream, pki):
    """A forward proxy answering CONNECT with 407: the CONNECT step says it
    wants credentials in HTTPS_PROXY; with them, the tunnel opens and the
    rest passes."""
    with tinyproxy(basic_auth=("doctor", PROXY_PASSWORD)) as (proxy_url, _):
        status, text, steps = doctor(tmp_path, tls_upstream, HTTPS_PROXY=proxy_url,
                                     GENAI_CA_BUNDLE=str(pki["ca"]))
        assert status == 1, text
        connect = steps["proxy CONNECT"]
        assert connect["status"] == "fail" and "407" in connect["detail"]
        assert "credentials" in connect["cause"] and "HTTPS_PROXY" in connect["fix"]
        assert "through http://127.0.0.1" in steps["resolve"]["detail"]
        with_credentials = proxy_url.replace("http://", f"http://doctor:{PROXY_PASSWORD}@")
        status, text, steps = doctor(tmp_path, tls_upstream, HTTPS_PROXY=with_credentials,
                                     GENAI_CA_BUNDLE=str(pki["ca"]))
        assert status == 0, text
        assert steps["proxy CONNECT"]["status"] == "pass"


def test_no_proxy_decides_the_route(tmp_path, mock_url):
    """With HTTPS_PROXY set and NO_PROXY naming the upstream, the resolve
    step says the route is direct."""
    status, _, steps = doctor(tmp_path, mock_url, HTTPS_PROXY=f"http://127.0.0.1:{free_port()}",
                              NO_PROXY="127.0.0.1")
    assert status == 0
    assert "direct: NO_PROXY matches" in steps["resolve"]["detail"]


def test_an_invalid_setting_fails_the_configuration_step(tmp_path, mock_url):
    """A setting the daemon would refuse fails the first step with the
    daemon's own message; the upstream is not checked."""
    status, text, steps = doctor(tmp_path, mock_url, MAX_RETRIES="lots")
    assert status == 1
    assert "MAX_RETRIES must be a whole number" in steps["configuration"]["detail"]
    assert steps["upstream"]["status"] == "skip"


def test_a_running_proxy_on_the_listen_address_is_recognised(tmp_path, mock_url):
    """When a genai-proxy already listens on --listen, the listen step
    passes and gives its version."""
    with run_proxy(mock_url, AUTH_TOKEN="doctor-token-1") as proxy:
        port = proxy.url.rsplit(":", 1)[1]
        environment = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": mock_url,
                       "AUTH_TOKEN": "doctor-token-1"}
        result = subprocess.run(
            [str(BIN / "genai-proxy"), "doctor", "--json", "--listen",
             f"tcp:{port}:interface=127.0.0.1"],
            env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    steps = {step["name"]: step for step in json.loads(result.stdout)["steps"]}
    assert steps["listen"]["status"] == "pass"
    assert "held by a running genai-proxy 0." in steps["listen"]["detail"]
    assert "doctor-token-1" not in result.stdout


def test_every_upstream_of_models_yaml_is_checked(tmp_path, mock_url):
    """models.yaml's upstreams are checked each in turn, named in every step;
    one that is down fails while the default one passes."""
    down = free_port()
    (tmp_path / "models.yaml").write_text(
        f"upstreams:\n  local:\n    base_url: http://127.0.0.1:{down}\n"
        "models:\n  - id: gpt-4.1\n  - id: llama3.2\n    upstream: local\n")
    status, text, _ = doctor(tmp_path, mock_url)
    assert status == 1
    assert f"upstream local: http://127.0.0.1:{down}" in text
    data = subprocess.run(
        [str(BIN / "genai-proxy"), "doctor", "--json", "--listen", f"tcp:{free_port()}"],
        env={**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": mock_url},
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    steps = json.loads(data.stdout)["steps"]
    by_upstream = {(step["upstream"], step["name"]): step["status"] for step in steps}
    assert by_upstream[("default", "gateway /v1/models")] == "pass"
    assert by_upstream[("local", "connect")] == "fail"
    assert "2 models, 2 upstreams" in steps[0]["detail"]


def test_the_chat_goes_where_a_request_for_its_model_goes(tmp_path):
    """--chat MODEL is routed as the daemon routes a request for MODEL: to
    the upstream models.yaml names for it, under its upstream_model name
    (an alias); the default upstream gets no chat."""
    with run_mock_upstream() as (default_url, _), run_mock_upstream() as (eu_url, _):
        (tmp_path / "models.yaml").write_text(
            f"upstreams:\n  eu:\n    base_url: {eu_url}\n"
            "models:\n  - id: team-model\n    upstream: eu\n    upstream_model: gpt-4.1-mini\n")
        status, text, steps = doctor(tmp_path, default_url, "--chat", "team-model")
        assert status == 0, text
        assert steps["chat"]["status"] == "pass" and steps["chat"]["upstream"] == "eu"
        assert "team-model (sent as gpt-4.1-mini)" in steps["chat"]["detail"]
        chats = {url: [json.loads(r["body"])["model"] for r in httpx.get(url + "/_mock/requests").json()
                       if r["path"].endswith("/chat/completions")]
                 for url in (default_url, eu_url)}
    assert chats == {default_url: [], eu_url: ["gpt-4.1-mini", "gpt-4.1-mini"]}


def test_a_refused_key_names_the_header_and_never_the_key(tmp_path):
    """A gateway answering 401: the gateway step says the key or its header
    is wrong, names the header, and never shows the key."""
    with run_mock_upstream("--require-header", "Ocp-Apim-Subscription-Key: another-key") as (
            url, _):
        status, text, steps = doctor(tmp_path, url)
    assert status == 1, text
    refused = steps["gateway /v1/models"]
    assert refused["status"] == "fail" and ": 401" in refused["detail"]
    assert "refused the key" in refused["cause"]
    assert "GENAI_SUBSCRIPTION_NAME=Ocp-Apim-Subscription-Key" in refused["fix"]


def test_a_wrong_base_path_gets_the_404_hint(tmp_path):
    """A base URL whose path is not the gateway's: /v1/models answers 404
    and the step shows the URL tried and says the base path is wrong; the
    right path passes."""
    with run_mock_upstream("--base-path", "/genai") as (url, _):
        status, text, steps = doctor(tmp_path, url + "/wrong")
        assert status == 1, text
        missing = steps["gateway /v1/models"]
        assert missing["status"] == "fail"
        assert "path is probably wrong" in missing["cause"]
        assert f"{url}/wrong/v1/models" in missing["fix"]
        status, text, _ = doctor(tmp_path, url + "/genai")
        assert status == 0, text


@pytest.mark.parametrize("mode, status, words", [
    ("auto", "pass", "through /chat/completions (RESPONSES_API=auto)"),
    ("native", "fail", "not served"),
    ("chat", "pass", "RESPONSES_API=chat; not probed"),
])
def test_the_responses_api_is_probed_without_tokens(tmp_path, mode, status, words):
    """A gateway without /responses (404 to an empty POST): doctor says the
    proxy will bridge it (auto), that Codex will not work (native), or
    does not probe (chat); the probe spends no tokens."""
    with run_mock_upstream("--chat-only") as (url, _):
        code, text, steps = doctor(tmp_path, url, RESPONSES_API=mode)
        step = steps["gateway /v1/responses"]
        assert step["status"] == status and words in step["detail"], text
        tried = httpx.get(url + "/_mock/requests").json()
        assert all(json.loads(r["body"] or "{}") == {} for r in tried
                   if r["path"] == "/v1/responses")
        assert not any(r["path"].endswith("/chat/completions") for r in tried)


def test_the_limits_are_described_and_a_bad_one_is_named(tmp_path, mock_url):
    """models.yaml's limits: one line saying who is limited by what and
    where the counts live; a bad limit fails the configuration step with
    the key named."""
    (tmp_path / "models.yaml").write_text(
        "limits:\n  default:\n    requests_per_minute: 120\n  clients:\n    ci:\n"
        "      models: [gpt-4.1]\nmodels:\n  - id: gpt-4.1\n    price: {input: 2, output: 8}\n")
    status, text, steps = doctor(tmp_path, mock_url)
    assert status == 0, text
    detail = steps["limits"]["detail"]
    assert "default: requests_per_minute 120" in detail
    assert "ci: requests_per_minute 120, models [gpt-4.1]" in detail
    assert "counted in process" in detail
    (tmp_path / "models.yaml").write_text(
        "limits:\n  default:\n    requests_per_minute: -5\nmodels:\n  - id: gpt-4.1\n")
    status, text, steps = doctor(tmp_path, mock_url)
    assert status == 1
    assert steps["configuration"]["status"] == "fail"
    assert "limits.default.requests_per_minute" in steps["configuration"]["detail"]


def test_redis_is_checked_with_its_password(tmp_path, mock_url):
    """LIMITS_REDIS_URL: a redis step that passes when Redis answers with
    the password of LIMITS_REDIS_PASSWORD_FILE, and fails (never printing
    the password) when the password is wrong or Redis is gone."""
    password = tmp_path / "redis-password"
    password.write_text("doctor-redis-secret-42\n")
    with run_redis(password="doctor-redis-secret-42") as redis:
        status, text, steps = doctor(tmp_path, mock_url, LIMITS_REDIS_URL=redis.url,
                                     LIMITS_REDIS_PASSWORD_FILE=str(password))
        assert status == 0, text
        assert steps["redis"]["status"] == "pass" and redis.url in steps["redis"]["detail"]
        password.write_text("not-the-password")
        status, text, steps = doctor(tmp_path, mock_url, LIMITS_REDIS_URL=redis.url,
                                     LIMITS_REDIS_PASSWORD_FILE=str(password))
        assert status == 1 and steps["redis"]["status"] == "fail"
        url = redis.url
    status, text, steps = doctor(tmp_path, mock_url, LIMITS_REDIS_URL=url,
                                 LIMITS_REDIS_PASSWORD_FILE=str(password))
    assert status == 1 and steps["redis"]["status"] == "fail"
    assert "doctor-redis-secret-42" not in text and "not-the-password" not in text
