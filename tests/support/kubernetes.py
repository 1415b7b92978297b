"""The Kubernetes manifests of deploy/kubernetes as the tests of
tests/integration/test_kubernetes.py and test_kubernetes_redis.py read them:
rendered with kubectl kustomize, their objects picked out, and the Redis of
components/redis run from its rendered command line."""

from __future__ import annotations

import contextlib
import functools
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support import _clean_environment, _stop, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
OVERLAY = KUBERNETES / "overlays" / "example"
# The release the objects are validated against: the kubectl that run-tests
# installs is 1.32.
KUBERNETES_RELEASE = "1.32.0"
# What the example overlay sets (overlays/example/kustomization.yaml).
OVERLAY_NAMESPACES = ["open-webui", "ci-agents", "monitoring"]
OVERLAY_IMAGE = "registry.example.com/platform/genai-proxy:0.1.0"
OVERLAY_MIN_PODS, OVERLAY_MAX_PODS = 3, 6
OVERLAY_GATEWAY = "https://genai-gateway.example.com/genai"
# Label shared by the pods and every selector.
APP = {"app.kubernetes.io/name": "genai-proxy"}
# The names of the proxy's objects: its ConfigMap, and all the others.
PROXY, MODELS = "genai-proxy", "genai-proxy-models"
# The Redis component (components/redis, which the example overlay includes):
# the name of its Deployment, Service and NetworkPolicy, and the Secret (made
# by hand) and key that hold Redis's password.
REDIS = "genai-proxy-redis"
REDIS_SECRET, REDIS_SECRET_KEY = "genai-proxy-redis-password", "password"


@functools.cache
def render(folder: Path) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize folder`` renders."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl is not installed (run-tests installs it): the manifests cannot be rendered")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def only(objects: tuple[dict[str, Any], ...], kind: str, name: str = PROXY) -> dict[str, Any]:
    """The one object of C{kind} named C{name} (by default the proxy's: the
    Redis component adds a Deployment, a Service and a NetworkPolicy)."""
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} objects of kind {kind} named {name}"
    return found[0]


def container(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The Deployment's one container."""
    containers = only(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(objects: tuple[dict[str, Any], ...]) -> dict[str, str]:
    """The container's environment: plain values only (any other kind fails)."""
    env = {}
    for variable in container(objects)["env"]:
        assert set(variable) == {"name", "value"}, f"not a plain value: {variable}"
        env[variable["name"]] = variable["value"]
    return env


def option(args: list[str], name: str) -> str:
    """The value that follows C{name} in the container's arguments."""
    assert args.count(name) == 1, args
    return args[args.index(name) + 1]


def mount_of(objects: tuple[dict[str, Any], ...], path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The volume mount that holds file C{path}, and its volume."""
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    mounts = [m for m in container(objects)["volumeMounts"]
              if path.startswith(m["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, f"{path} is under {len(mounts)} mounts"
    volume = [v for v in pod["volumes"] if v["name"] == mounts[0]["name"]]
    assert len(volume) == 1
    return mounts[0], volume[0]


def redis_pod(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The pod template of the Redis component's Deployment."""
    pod: dict[str, Any] = only(objects, "Deployment", REDIS)["spec"]["template"]
    return pod


def redis_container(objects: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The Redis Deployment's one container."""
    (redis,) = redis_pod(objects)["spec"]["containers"]
    return redis


def selects(selector: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Whether the C{matchLabels} C{selector} selects the pod template C{pod}."""
    assert set(selector) == {"matchLabels"}, selector
    return bool(selector["matchLabels"].items() <= pod["metadata"]["labels"].items())


def redis_environment(objects: tuple[dict[str, Any], ...], password: str) -> dict[str, str]:
    """The Redis container's environment as the kubelet gives it, with the
    stand-in C{password} as the value of the Secret's key (any other
    reference fails)."""
    env = {}
    for variable in redis_container(objects)["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
            continue
        assert set(variable) == {"name", "valueFrom"}
        assert variable["valueFrom"] == {"secretKeyRef": {"name": REDIS_SECRET, "key": REDIS_SECRET_KEY}}
        env[variable["name"]] = password
    return env


def expand(argument: str, env: dict[str, str]) -> str:
    """C{argument} with each C{$(NAME)} of a variable of C{env} replaced by
    its value, as the kubelet does in a container's args."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), argument)


@contextlib.contextmanager
def run_rendered_redis(objects: tuple[dict[str, Any], ...], password: str, data: Path
                       ) -> Iterator[int]:
    """Debian's redis-server with the args that the Redis container gives
    the official image's entrypoint (which runs them as they are, not being
    root), expanded as the kubelet does with the stand-in C{password}; with
    C{data} in place of its /data emptyDir and on a free loopback port in
    place of its own.  Yields that port; stops it at the end."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (run-tests installs it)")
    env = redis_environment(objects, password)
    args = [expand(a, env) for a in redis_container(objects)["args"]]
    assert args[0] == "redis-server"
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--dir") + 1] = str(data)
    log = data.parent / "redis.log"
    with log.open("w") as output:
        # In the pod it listens on all interfaces (the NetworkPolicy decides
        # who reaches it); here on loopback only (the last --bind counts).
        process = subprocess.Popen([binary, *args[1:], "--bind", "127.0.0.1"], cwd=data,
                                   stdout=output, stderr=subprocess.STDOUT)

    def started_or_gone() -> bool:
        if process.poll() is not None:
            return True
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
        return False

    try:
        wait_for(started_or_gone)
        assert process.poll() is None, f"redis-server refused its arguments:\n{log.read_text()}"
        yield port
    finally:
        _stop(process)


def redis_cli(port: int, *command: str, env: dict[str, str] | None = None
              ) -> subprocess.CompletedProcess[str]:
    """redis-cli's answer to C{command} on C{port}, with C{env} added to a
    clean environment (REDISCLI_AUTH: the password)."""
    return subprocess.run(["redis-cli", "-p", str(port), *command], capture_output=True, text=True,
                          env={**_clean_environment(), **(env or {})}, timeout=10)


