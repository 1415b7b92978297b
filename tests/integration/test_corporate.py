"""Corporate networks: TLS verification, CA bundles, HTTPS_PROXY with CONNECT
through a real tinyproxy, NO_PROXY, and proxy credentials."""

from __future__ import annotations

import re
import ssl
import time
from pathlib import Path

import httpx
import pytest
import trustme
from support import (
    BASE_ENV,
    free_port,
    run_mock_upstream,
    run_proxy,
    run_proxy_expecting_failure,
    run_tinyproxy,
)

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4.1", "messages": []}


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A test CA, a certificate for localhost signed by it, and one for another host."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "localhost.pem"))
    ca.issue_cert("other.example").private_key_and_cert_chain_pem.write_to_path(
        str(folder / "other.pem"))
    return {"ca": folder / "ca.pem", "localhost": folder / "localhost.pem", "other": folder / "other.pem"}


@pytest.fixture(scope="module")
def tls_upstream(pki):
    """An https mock upstream; its URL names localhost."""
    with run_mock_upstream("--tls-cert", str(pki["localhost"]), "--event-delay", "0.3") as (url, _):
        yield url.replace("127.0.0.1", "localhost")


@pytest.fixture(scope="module")
def forward_proxy():
    with run_tinyproxy() as (url, log):
        yield url, log


def connects(log: Path) -> int:
    return log.read_text().count("CONNECT localhost:")


def test_https_upstream_with_ca_bundle(tls_upstream, pki, client):
    with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"])) as proxy:
        response = client.post(proxy.url + CHAT, json=BODY)
        assert response.status_code == 200
        assert response.json()["object"] == "chat.completion"
        assert proxy.wait_for_event("startup_config")["GENAI_CA_BUNDLE"] == str(pki["ca"])


def test_unknown_ca_fails_closed(tls_upstream, client):
    with run_proxy(tls_upstream) as proxy:
        response = client.post(proxy.url + CHAT, json=BODY)
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "proxy_error"
        assert "tls_error" in error["message"] and "certificate verify failed" in error["message"]
        # Not retried: a certificate does not get better by asking again.
        proxy.wait_for_event("final_error")  # logged after any retry
        assert not proxy.events("retry")


def test_wrong_hostname_fails_closed(pki, client):
    with run_mock_upstream("--tls-cert", str(pki["other"])) as (url, _):
        with run_proxy(url.replace("127.0.0.1", "localhost"), GENAI_CA_BUNDLE=str(pki["ca"])) as proxy:
            response = client.post(proxy.url + CHAT, json=BODY)
            assert response.status_code == 502
            message = response.json()["error"]["message"]
            assert "tls_error" in message and "localhost" in message


@pytest.mark.parametrize("variable", ["GENAI_CA_BUNDLE", "SSL_CERT_FILE"])
def test_missing_bundle_stops_startup(variable):
    env = {**BASE_ENV, "GENAI_BASE_URL": "https://localhost:9", variable: "/nonexistent/ca.pem"}
    result = run_proxy_expecting_failure(env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0] and "Traceback" not in result.stderr


@pytest.mark.parametrize("variable", ["GENAI_CA_BUNDLE", "SSL_CERT_FILE"])
def test_bundle_that_is_not_pem_stops_startup(variable, tmp_path):
    """A CA bundle that holds no PEM certificate stops start-up: one line
    naming the variable, status 2."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("this is not a certificate\n")
    env = {**BASE_ENV, "GENAI_BASE_URL": "https://localhost:9", variable: str(bundle)}
    result = run_proxy_expecting_failure(env)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and variable in lines[0] and "PEM" in lines[0], result.stderr


def test_https_through_connect_tunnel(tls_upstream, pki, forward_proxy, client):
    """CONNECT to the proxy, TLS to the origin through it; the tunnel is pooled."""
    proxy_url, log = forward_proxy
    before = connects(log)
    with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=proxy_url) as proxy:
        for _ in range(3):
            assert client.post(proxy.url + CHAT, json=BODY).status_code == 200
        assert connects(log) == before + 1
        event = proxy.wait_for_event("startup_config")
        assert event["PROXY_ENABLED"] is True and event["HTTPS_PROXY"] == proxy_url


def test_stream_through_tunnel_is_unbuffered(tls_upstream, pki, forward_proxy, client):
    proxy_url, _ = forward_proxy
    with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=proxy_url) as proxy:
        trusting_ca = ssl.create_default_context(cafile=str(pki["ca"]))

        def completed() -> int:
            return httpx.get(tls_upstream + "/_mock/stats", verify=trusting_ca).json()["streams_completed"]

        before = completed()
        at_first_event = None
        lines = []
        with client.stream("POST", proxy.url + CHAT, json={**BODY, "stream": True},
                           headers={"X-Mock-Events": "4"}) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    if at_first_event is None:
                        at_first_event = completed()
                    lines.append(line)
        # The first event came through the tunnel while the origin was still
        # sending the others (0.3 s apart): nothing was held back.
        assert lines[-1] == "data: [DONE]" and at_first_event == before


def test_no_proxy_goes_direct(tls_upstream, pki, forward_proxy, client):
    proxy_url, log = forward_proxy
    before = connects(log)
    with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=proxy_url,
                   NO_PROXY="example.org, localhost") as proxy:
        assert client.post(proxy.url + CHAT, json=BODY).status_code == 200
    assert connects(log) == before


def test_proxy_credentials(tls_upstream, pki, client):
    with run_tinyproxy(basic_auth=("alice", "pw-s3cret")) as (proxy_url, log):
        with_credentials = proxy_url.replace("http://", "http://alice:pw-s3cret@")
        with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=with_credentials) as proxy:
            assert client.post(proxy.url + CHAT, json=BODY).status_code == 200
            assert proxy.wait_for_event("startup_config")["HTTPS_PROXY"] == proxy_url
            assert "pw-s3cret" not in client.get(proxy.url + "/").text
            assert not [line for line in proxy.lines if "pw-s3cret" in line]
        wrong = proxy_url.replace("http://", "http://alice:wrong@")
        with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=wrong,
                       MAX_RETRIES="1", RETRY_BACKOFF_SEC="0.01") as proxy:
            response = client.post(proxy.url + CHAT, json=BODY)
            assert response.status_code == 502
            error = response.json()["error"]
            assert error["type"] == "proxy_error"
            # The message names the proxy and its answer (tinyproxy says 401, others 407).
            assert proxy_url in error["message"]
            assert re.search(r"refused CONNECT with 40[17] ", error["message"])
            assert "wrong" not in response.text
            proxy.wait_for_event("final_error")
            assert len(proxy.events("retry")) == 1


def test_unreachable_proxy_is_named(tls_upstream, pki, client):
    dead = f"http://user:pw-hidden@127.0.0.1:{free_port()}"
    with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=dead,
                   MAX_RETRIES="1", RETRY_BACKOFF_SEC="0.01") as proxy:
        response = client.post(proxy.url + CHAT, json=BODY)
        assert response.status_code == 502
        message = response.json()["error"]["message"]
        assert dead.replace("user:pw-hidden@", "") in message and "pw-hidden" not in message
        assert proxy.wait_for_event("retry")["error"]["type"] == "proxy_error"


def test_client_disconnect_closes_the_tunnel(tls_upstream, pki, forward_proxy, client):
    """Leaving a stream that runs through the tunnel ends it at the origin too."""
    proxy_url, _ = forward_proxy
    stats_url = tls_upstream + "/_mock/stats"

    trusting_ca = ssl.create_default_context(cafile=str(pki["ca"]))

    def cancelled() -> int:
        return httpx.get(stats_url, verify=trusting_ca).json()["streams_cancelled"]

    before = cancelled()
    with run_proxy(tls_upstream, GENAI_CA_BUNDLE=str(pki["ca"]), HTTPS_PROXY=proxy_url) as proxy:
        with client.stream("POST", proxy.url + CHAT, json={**BODY, "stream": True},
                           headers={"X-Mock-Events": "40"}) as response:
            assert next(response.iter_lines()).startswith("data: ")
        deadline = time.monotonic() + 5
        while cancelled() == before:
            assert time.monotonic() < deadline, "the origin kept streaming"
            time.sleep(0.05)


def test_ssl_cert_file_is_trusted_too(tls_upstream, pki, client):
    with run_proxy(tls_upstream, SSL_CERT_FILE=str(pki["ca"])) as proxy:
        assert client.post(proxy.url + CHAT, json=BODY).status_code == 200
