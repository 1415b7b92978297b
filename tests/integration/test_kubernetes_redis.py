"""deploy/kubernetes/components/redis, as the example overlay includes it:
the proxy finds Redis and its password, the Redis pod is locked down and
probed, only the proxy reaches it, and its rendered command line runs
Debian's redis-server (the run of the whole rendered proxy is in
test_kubernetes.py)."""

from __future__ import annotations

import re

from support.kubernetes import (
    KUBERNETES,
    OVERLAY,
    REDIS,
    REDIS_SECRET,
    REDIS_SECRET_KEY,
    env_of,
    mount_of,
    only,
    option,
    redis_cli,
    redis_container,
    redis_environment,
    redis_pod,
    render,
    run_rendered_redis,
    selects,
)


def test_the_proxy_finds_redis_and_reads_its_password_from_a_secret_file():
    """With the Redis component (the overlay), the proxy's LIMITS_REDIS_URL
    names the component's Service, its port and database 0, and
    LIMITS_REDIS_PASSWORD_FILE is a file of the mounted Secret whose key
    Redis takes its password from (never a variable of the proxy, nor a
    password in the URL).  The base has neither: limits stay in process."""
    objects = render(OVERLAY)
    env = env_of(objects)  # plain values only: no valueFrom
    service = only(objects, "Service", REDIS)
    (port,) = service["spec"]["ports"]
    assert env["LIMITS_REDIS_URL"] == f"redis://{service['metadata']['name']}:{port['port']}/0"
    path = env["LIMITS_REDIS_PASSWORD_FILE"]
    mount, volume = mount_of(objects, path)
    assert mount["readOnly"] is True and "subPath" not in mount
    assert volume["secret"]["secretName"] == REDIS_SECRET
    file_name = path[len(mount["mountPath"]):].strip("/")
    assert volume["secret"]["items"] == [{"key": REDIS_SECRET_KEY, "path": file_name}]
    assert volume["secret"]["defaultMode"] & 0o007 == 0
    # Redis's password is the same Secret's same key (redis_environment checks the reference).
    assert set(redis_environment(objects, "stand-in").values()) == {"stand-in"}
    assert not {name for name in env_of(render(KUBERNETES)) if name.startswith("LIMITS_REDIS")}


def test_redis_pod_is_locked_down_and_probed():
    """The Redis pod: the official image at a fixed 7.x tag, one pod that is
    replaced rather than doubled during a rollout, run as the image's user
    `redis` (uid 999, so the entrypoint switches no user), read-only root
    file system with an emptyDir for /data (where its append-only file goes),
    no privilege escalation, every capability dropped, seccomp RuntimeDefault,
    no API token, requests and limits, and probes that PING with the password."""
    objects = render(OVERLAY)
    deployment = only(objects, "Deployment", REDIS)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = redis_pod(objects)["spec"]
    redis = redis_container(objects)
    assert re.fullmatch(r"docker\.io/library/redis:7\.\d+\.\d+-alpine", redis["image"])
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 999
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = redis["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 999
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    (data,) = redis["volumeMounts"]
    assert data["mountPath"] == option(redis["args"], "--dir") == "/data"
    (volume,) = pod["volumes"]
    assert volume["name"] == data["name"] and "emptyDir" in volume
    assert option(redis["args"], "--appendonly") == "yes"
    assert set(redis["resources"]) == {"requests", "limits"}
    for figures in redis["resources"].values():
        assert set(figures) == {"cpu", "memory"}
    for probe in (redis["livenessProbe"], redis["readinessProbe"]):
        assert probe["exec"] == {"command": ["redis-cli", "-e", "ping"]}
    assert "REDISCLI_AUTH" in redis_environment(objects, "stand-in")  # redis-cli's password
    assert option(redis["args"], "--requirepass") == "$(REDISCLI_AUTH)"


def test_redis_networkpolicy_admits_only_the_proxy_pods():
    """Redis's NetworkPolicy covers the Redis pods and admits, on Redis's
    port only, the proxy's pods of the namespace and nothing else (no other
    namespace, no address range); Redis sends nothing out.  The proxy's own
    selectors (its Service, budget and policy) do not take in the Redis pods."""
    objects = render(OVERLAY)
    redis, proxy = redis_pod(objects), only(objects, "Deployment")["spec"]["template"]
    policy = only(objects, "NetworkPolicy", REDIS)["spec"]
    assert selects(policy["podSelector"], redis) and not selects(policy["podSelector"], proxy)
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"] and policy["egress"] == []
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert set(peer) == {"podSelector"}
    assert selects(peer["podSelector"], proxy) and not selects(peer["podSelector"], redis)
    (port,) = redis_container(objects)["ports"]
    assert rule["ports"] == [{"port": port["name"], "protocol": "TCP"}]
    for labels in (only(objects, "Service")["spec"]["selector"],
                   only(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                   only(objects, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"]):
        assert not selects({"matchLabels": labels}, redis)


def test_redis_service_selects_the_redis_pods():
    """The Service genai-proxy-redis sends port 6379 to the Redis container's
    named port, and selects the Redis pods, not the proxy's."""
    objects = render(OVERLAY)
    service = only(objects, "Service", REDIS)
    selector = {"matchLabels": service["spec"]["selector"]}
    assert selects(selector, redis_pod(objects))
    assert not selects(selector, only(objects, "Deployment")["spec"]["template"])
    (port,) = service["spec"]["ports"]
    (container_port,) = redis_container(objects)["ports"]
    assert port["port"] == 6379 and port["targetPort"] == container_port["name"]
    assert container_port["containerPort"] == int(option(redis_container(objects)["args"], "--port"))


def test_rendered_redis_command_runs_redis_server(tmp_path):
    """The args the Redis container gives the official image's entrypoint,
    expanded as the kubelet does, are accepted by Debian's redis-server: it
    starts, asks for the password of the Secret, keeps an append-only file in
    the folder that stands for the /data emptyDir, refuses writes rather than
    evicting windows when full, and the pod's probe command answers PONG with
    the container's environment and fails without it."""
    objects = render(OVERLAY)
    data = tmp_path / "data"
    data.mkdir()
    password = "stand-in-redis-password"
    with run_rendered_redis(objects, password, data) as port:
        assert redis_cli(port, "ping").stdout.startswith("NOAUTH")
        auth = {"REDISCLI_AUTH": password}
        assert redis_cli(port, "config", "get", "maxmemory-policy", env=auth).stdout.split() == [
            "maxmemory-policy", "noeviction"]
        assert (data / "appendonlydir").is_dir()
        probe = redis_container(objects)["readinessProbe"]["exec"]["command"]
        assert probe[0] == "redis-cli"
        container_env = redis_environment(objects, password)
        answered = redis_cli(port, *probe[1:], env=container_env)
        assert (answered.returncode, answered.stdout.strip()) == (0, "PONG")
        assert redis_cli(port, *probe[1:]).returncode != 0


