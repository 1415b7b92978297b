"""The Kubernetes manifests in deploy/kubernetes, checked without a cluster.

The base and the example overlay are rendered with ``kubectl kustomize``
(run-tests installs kubectl; a missing one fails these tests rather than
skipping them), every object is validated against the schemas of a named
Kubernetes release with kubernetes-validate in strict mode (an unknown or
misspelt field is an error), and the points the deployment relies on are
checked on the rendered objects.  Finally the rendered container command
and environment start the real daemon, on loopback, with the rendered
ConfigMap and stand-in secret files in place of the mounts; the Redis
component's command line starts Debian's redis-server (run-tests installs
it), which that daemon then keeps its clients' limits in.
"""

from __future__ import annotations

import inspect
import re
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import kubernetes_validate
import pytest
import yaml
from support import TWISTD, ProxyProcess, _clean_environment, free_port, upstream_saw
from support.kubernetes import (
    APP,
    KUBERNETES,
    KUBERNETES_RELEASE,
    MODELS,
    OVERLAY,
    OVERLAY_GATEWAY,
    OVERLAY_IMAGE,
    OVERLAY_MAX_PODS,
    OVERLAY_MIN_PODS,
    OVERLAY_NAMESPACES,
    REDIS,
    REPO,
    container,
    env_of,
    mount_of,
    only,
    option,
    redis_cli,
    render,
    run_rendered_redis,
)

from genaiproxy.config.models import parse_models
from genaiproxy.server.site import ProxySite

BOTH = pytest.mark.parametrize("folder", [KUBERNETES, OVERLAY], ids=["base", "overlay"])


@BOTH
def test_every_object_is_valid_for_the_named_release(folder):
    """kubectl renders the kustomization, and each object it renders is valid
    for Kubernetes 1.32 in strict mode: the right kinds and API versions, no
    unknown or misspelt field, values of the right types."""
    objects = render(folder)
    kinds = sorted(o["kind"] for o in objects)
    expected = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                "PodDisruptionBudget", "Service"]
    # The overlay includes two components: Redis's Deployment, Service and
    # NetworkPolicy, validated with the rest; and the ServiceMonitor, a CRD of
    # the Prometheus Operator, which kubernetes-validate has no schema for:
    # it is checked on its own in test_servicemonitor_scrapes_metrics_with_a_token.
    if folder == OVERLAY:
        expected += ["Deployment", "Service", "NetworkPolicy", "ServiceMonitor"]
    assert kinds == sorted(expected)
    for obj in objects:
        if obj["kind"] == "ServiceMonitor":
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_RELEASE, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{obj['kind']} {obj['metadata']['name']}: {e.message} at {list(e.path)}")


def test_strict_validation_rejects_an_unknown_field():
    """The validation above would notice a misspelt field (strict mode)."""
    deployment = yaml.safe_load(yaml.safe_dump(only(render(KUBERNETES), "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFS"):
        kubernetes_validate.validate(deployment, KUBERNETES_RELEASE, strict=True)


@BOTH
def test_probes_and_listen_address(folder):
    """Liveness on /livez and readiness on /readyz, on the named port the
    proxy listens on; it listens on all interfaces inside the pod; the
    Service sends to that port."""
    objects = render(folder)
    c = container(objects)
    (port,) = c["ports"]
    assert port["name"] == "http" and port["protocol"] == "TCP"
    listen = option(c["args"], "--listen")
    assert listen == f"tcp:{port['containerPort']}:interface=0.0.0.0"
    assert c["args"][:4] == ["twistd", "-n", "--pidfile=", "genaiproxy"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = only(objects, "Service")
    assert service["spec"]["selector"] == APP
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == "http" and service_port["name"] == "http"


@BOTH
def test_security_context(folder):
    """Non-root as the image's user (uid 10001), read-only root file system
    with an emptyDir for /tmp (where uploads are spooled), no privilege
    escalation, every capability dropped, seccomp RuntimeDefault, no API token."""
    objects = render(folder)
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    c = container(objects)
    security = c["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    tmp, volume = mount_of(objects, "/tmp/upload-spool")
    assert tmp["mountPath"] == "/tmp" and "emptyDir" in volume and not tmp.get("readOnly")
    assert set(c["resources"]) == {"requests", "limits"}
    for figures in c["resources"].values():
        assert set(figures) == {"cpu", "memory"}


@BOTH
def test_secrets_are_files_of_a_mounted_secret(folder):
    """No variable takes its value from a Secret (nor envFrom a whole one),
    no key or token is in the environment, and GENAI_API_KEY_FILE and
    AUTH_TOKENS_FILE name files of the mounted Secret's volume."""
    objects = render(folder)
    c = container(objects)
    assert "envFrom" not in c
    env = env_of(objects)  # fails on any valueFrom, secretKeyRef included
    for name in ("GENAI_API_KEY", "AUTH_TOKEN", "AUTH_TOKEN_FILE"):
        assert name not in env
    volumes = set()
    for name in ("GENAI_API_KEY_FILE", "AUTH_TOKENS_FILE"):
        mount, volume = mount_of(objects, env[name])
        assert mount["readOnly"] is True and "subPath" not in mount
        secret = volume["secret"]
        assert secret["secretName"] == "genai-proxy-secrets"
        file_name = env[name][len(mount["mountPath"]):].strip("/")
        assert {"key": file_name, "path": file_name} in secret["items"]
        volumes.add(volume["name"])
    assert len(volumes) == 1
    # The image's user reads them through the pod's fsGroup, nobody else.
    assert secret["defaultMode"] & 0o007 == 0
    assert only(objects, "Deployment")["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


@BOTH
def test_models_come_from_a_configmap_mounted_as_a_directory(folder):
    """--models points into the folder where the ConfigMap is mounted whole
    (no subPath, so that an edit reaches running pods), the ConfigMap keeps
    its name (no hash suffix: an apply edits it in place) and its
    models.yaml is a list the proxy loads."""
    objects = render(folder)
    models = option(container(objects)["args"], "--models")
    mount, volume = mount_of(objects, models)
    assert "subPath" not in mount and "subPathExpr" not in mount
    assert models == mount["mountPath"] + "/models.yaml"
    configmap = only(objects, "ConfigMap", MODELS)
    assert volume["configMap"] == {"name": configmap["metadata"]["name"]} == {"name": "genai-proxy-models"}
    entries = parse_models(configmap["data"]["models.yaml"], now=0)
    assert len(entries) >= 1 and all(e["id"] for e in entries)


@BOTH
def test_termination_grace_outlasts_delay_and_drain(folder):
    """The kubelet's SIGKILL comes after the proxy's own stop: longer than
    SHUTDOWN_DELAY_SEC + SHUTDOWN_GRACE_SEC (from the container's
    environment) plus the time the proxy gives each connection's last bytes."""
    objects = render(folder)
    env = env_of(objects)
    delay, grace = float(env["SHUTDOWN_DELAY_SEC"]), float(env["SHUTDOWN_GRACE_SEC"])
    assert delay > 0  # behind a Service, endpoints need time to go
    last_bytes = inspect.signature(ProxySite.close_connections).parameters["timeout"].default
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > delay + grace + last_bytes
    assert env["LOG_FORMAT"] == "json"


@BOTH
def test_selectors_find_the_pods(folder):
    """The Deployment, the Service, the PodDisruptionBudget and the
    NetworkPolicy select the pods by their label; the autoscaler scales the
    Deployment on CPU; a rolling update never has fewer pods ready."""
    objects = render(folder)
    deployment = only(objects, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == APP
    assert APP.items() <= labels.items()
    assert only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == APP
    assert only(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"] == APP
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    hpa_file = KUBERNETES / "base" / "horizontalpodautoscaler.yaml"
    assert "genai_proxy_streams_in_flight" in hpa_file.read_text()  # the better signal, documented


def test_networkpolicy_admits_only_the_overlays_namespaces():
    """The overlay's NetworkPolicy admits ingress, on the proxy's port only,
    from exactly the namespaces it names; the base's from none but
    namespaces labelled for it."""
    for folder, selector in (
        (OVERLAY, {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                         "values": OVERLAY_NAMESPACES}]}),
        (KUBERNETES, {"matchLabels": {"genai-proxy-client": "true"}}),
    ):
        policy = only(render(folder), "NetworkPolicy")["spec"]
        assert policy["policyTypes"] == ["Ingress"]
        (rule,) = policy["ingress"]
        assert rule["from"] == [{"namespaceSelector": selector}]
        assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]


@BOTH
def test_the_autoscaler_alone_sets_the_pod_count(folder):
    """The Deployment that the autoscaler scales has no replica count of its
    own, in the base and in the overlay alike: with one, every C{kubectl
    apply} would set the pods back to that number, undoing what the
    autoscaler chose.  The overlay sets the autoscaler's bounds instead."""
    objects = render(folder)
    deployment = only(objects, "Deployment")
    hpa = only(objects, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]
    if folder == OVERLAY:
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (
            OVERLAY_MIN_PODS, OVERLAY_MAX_PODS)
    else:
        assert hpa["spec"]["minReplicas"] != OVERLAY_MIN_PODS


def test_overlay_sets_gateway_image_and_namespace():
    """The example overlay sets the gateway, the image and its tag, the
    namespace of every object, and its own models; the base keeps its
    defaults."""
    objects = render(OVERLAY)
    assert container(objects)["image"] == OVERLAY_IMAGE
    env = env_of(objects)
    assert env["GENAI_BASE_URL"] == OVERLAY_GATEWAY
    assert env["GENAI_SUBSCRIPTION_NAME"] == "Ocp-Apim-Subscription-Key"
    assert {o["metadata"].get("namespace") for o in objects} == {"genai"}
    assert only(objects, "ConfigMap", MODELS)["data"]["models.yaml"] == (OVERLAY / "models.yaml").read_text()

    base = render(KUBERNETES)
    assert container(base)["image"] == "genai-proxy:latest"
    assert env_of(base)["GENAI_BASE_URL"] != OVERLAY_GATEWAY
    assert only(base, "ConfigMap", MODELS)["data"]["models.yaml"] == (REPO / "models.yaml").read_text()


def test_servicemonitor_scrapes_metrics_with_a_token():
    """The ServiceMonitor (overlay only) selects the Service, scrapes its
    named port's /metrics and gives the bearer token from a Secret key.
    A minimal check of the CRD's fields, as no schema is at hand."""
    objects = render(OVERLAY)
    monitor = only(objects, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    service = only(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "authorization"}
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    for duration in (endpoint["interval"], endpoint["scrapeTimeout"]):
        assert re.fullmatch(r"\d+s", duration)
    assert endpoint["authorization"] == {
        "type": "Bearer", "credentials": {"name": "genai-proxy-metrics-token", "key": "token"}}
    assert all(o["kind"] != "ServiceMonitor" for o in render(KUBERNETES))



def test_rendered_command_and_environment_run_the_proxy(mock_url, tmp_path):
    """The overlay's container command and environment, run as they are
    but on a loopback port and with the mount folders under a temporary
    one (the rendered ConfigMap's models.yaml, stand-in secret files, the
    mock as the gateway, and the Redis component's redis-server on loopback
    in place of its Service): the proxy starts, is ready, lists the
    ConfigMap's models to a client token of the tokens file, forwards with
    the key of the key file, keeps its client's limits in that Redis with
    the password of the password file, and refuses a request without a token."""
    objects = render(OVERLAY)
    c = container(objects)
    mounts = {m["mountPath"]: tmp_path / m["name"] for m in c["volumeMounts"]}
    for folder in mounts.values():
        folder.mkdir()

    def local(path: str) -> str:
        for mount_path, folder in mounts.items():
            if path.startswith(mount_path + "/"):
                return str(folder / path[len(mount_path) + 1:])
        return path

    models_yaml = only(objects, "ConfigMap", MODELS)["data"]["models.yaml"]
    (mounts["/etc/genai-proxy/models"] / "models.yaml").write_text(models_yaml)
    env = {name: local(value) for name, value in env_of(objects).items()}
    Path(env["GENAI_API_KEY_FILE"]).write_text("sk-from-the-secret-file\n")
    Path(env["AUTH_TOKENS_FILE"]).write_text("open-webui: token-of-open-webui\n")
    redis_password = "stand-in-redis-password"
    Path(env["LIMITS_REDIS_PASSWORD_FILE"]).write_text(redis_password)
    env.update(GENAI_BASE_URL=mock_url, SHUTDOWN_DELAY_SEC="0")  # no need to wait when it stops here
    port = free_port()
    args = [local(a) for a in c["args"]]
    args[args.index("--listen") + 1] = f"tcp:{port}:interface=127.0.0.1"
    assert args[0] == "twistd"
    (tmp_path / "redis-data").mkdir()
    with run_rendered_redis(objects, redis_password, tmp_path / "redis-data") as redis_port:
        # The Service's name stands for that redis-server's loopback port.
        service = urlsplit(env["LIMITS_REDIS_URL"])
        assert service.hostname == REDIS
        env["LIMITS_REDIS_URL"] = service._replace(netloc=f"127.0.0.1:{redis_port}").geturl()
        process = subprocess.Popen([TWISTD, *args[1:]], cwd=tempfile.mkdtemp(prefix="genai-k8s-"),
                                   env={**_clean_environment(), **env, "TMPDIR": str(mounts["/tmp"])},
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        proxy = ProxyProcess(process, tmp_path)
        try:
            proxy.wait_for_event("models_loaded", timeout=20)
            url = f"http://127.0.0.1:{port}"
            with httpx.Client(trust_env=False, timeout=10) as client:
                assert client.get(url + "/readyz").json() == {"status": "ready"}
                assert client.get(url + "/livez").status_code == 200
                assert client.get(url + "/v1/models").status_code == 401
                token = {"Authorization": "Bearer token-of-open-webui"}
                listed = client.get(url + "/v1/models", headers=token).json()
                assert [m["id"] for m in listed["data"]] == [
                    "gpt-4.1", "gpt-4.1-mini", "gpt-5", "gpt-5-mini"]
                answer = client.post(url + "/v1/chat/completions",
                                     headers={**token, "X-Request-ID": "k8s-1"},
                                     json={"model": "gpt-5",
                                           "messages": [{"role": "user", "content": "hi"}]})
                assert answer.status_code == 200
                seen = upstream_saw(mock_url, "k8s-1")
                assert seen[0]["headers"]["ocp-apim-subscription-key"] == ["sk-from-the-secret-file"]
            # The ConfigMap's limits hold the client, counted in Redis (db 0 of the URL).
            limits = yaml.safe_load(models_yaml)["limits"]["default"]
            assert answer.headers["x-ratelimit-limit-requests"] == str(limits["requests_per_minute"])
            keys = redis_cli(redis_port, "-n", "0", "dbsize", env={"REDISCLI_AUTH": redis_password})
            assert int(keys.stdout) > 0
            assert not proxy.events("limits_store_unavailable")
            assert proxy.events("startup_config")  # JSON lines on stdout (LOG_FORMAT=json)
        finally:
            assert proxy.stop() == 0
