"""The deployment artefacts: Containerfile, systemd units, install.sh.

The image's command line is run the way the image runs it, straight from
this checkout; the image itself is built with buildah (chroot isolation, on
a local stand-in base and offline) and its own CMD and HEALTHCHECK are run
with `buildah run`. The units go through `systemd-analyze verify`; the
scripts through shellcheck. `run-tests` installs all of these tools.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import BASE_ENV, TWISTD, _clean_environment, _stop, free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = (REPO / "Containerfile").read_text()


def instruction(name: str) -> str:
    """The (last) argument of a Containerfile instruction, continuation lines joined."""
    joined = CONTAINERFILE.replace("\\\n", " ")
    return re.findall(rf"^{name}\s+(.*)$", joined, flags=re.M)[-1].strip()


def test_containerfile_shape():
    assert re.search(r"^ARG BASE_IMAGE=docker\.io/library/python:3\.\d+-slim$", CONTAINERFILE, re.M)
    assert len(re.findall(r"^FROM \$\{BASE_IMAGE\}", CONTAINERFILE, flags=re.M)) == 2
    assert "pip wheel" in CONTAINERFILE and "/wheels/*.whl" in CONTAINERFILE
    assert instruction("USER") not in ("root", "0")
    assert instruction("EXPOSE") == "8111"
    assert json.loads(instruction("CMD")) == [
        "twistd", "-n", "--pidfile=", "genaiproxy", "--listen", "tcp:8111:interface=0.0.0.0"]
    assert "PYTHONUNBUFFERED=1" in CONTAINERFILE
    assert "/app/models.yaml" in CONTAINERFILE and instruction("WORKDIR") == "/app"


def test_image_command_serves_and_its_healthcheck_passes(mock_url, tmp_path):
    """Run the image's CMD (on another port) from an /app-like folder, then
    its HEALTHCHECK command, which must need no upstream."""
    port = free_port()
    command = [TWISTD if arg == "twistd" else arg for arg in json.loads(instruction("CMD"))]
    command = [arg.replace("8111", str(port)) for arg in command]
    shutil.copy(REPO / "models.yaml", tmp_path / "models.yaml")
    env = {**_clean_environment(), **BASE_ENV, "GENAI_BASE_URL": "http://127.0.0.1:9"}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()
                break
            except httpx.TransportError:
                assert process.poll() is None, "the image's command exited"
                import time
                time.sleep(0.05)
        assert "gpt-5" in [m["id"] for m in models["data"]]
        health = json.loads(instruction("HEALTHCHECK").split("CMD", 1)[1].strip())
        assert health[0] == "python"
        health = [str(Path(TWISTD).parent / "python")] + [a.replace("8111", str(port)) for a in health[1:]]
        assert subprocess.run(health, timeout=10).returncode == 0
    finally:
        _stop(process)


STANDIN = REPO / "tests" / "image" / "build-base-standin"


def _image_config(image: str) -> dict[str, Any]:
    """The Docker-format config of a local image, as buildah reads it."""
    inspected = subprocess.run(["buildah", "inspect", "--type", "image", image],
                               capture_output=True, text=True, check=True)
    config: dict[str, Any] = json.loads(inspected.stdout)["Docker"]["config"]
    return config


@pytest.fixture(scope="module")
def built_image() -> Iterator[str]:
    """The image, built from the Containerfile with buildah's chroot
    isolation on the local stand-in base (`run-tests` makes it with
    tests/image/build-base-standin), offline from the stand-in's wheelhouse."""
    if shutil.which("buildah") is None:
        pytest.skip("no buildah on this machine: the image cannot be built here")
    base = subprocess.run([str(STANDIN), "--tag"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if subprocess.run(["buildah", "inspect", "--type", "image", base],
                      capture_output=True).returncode != 0:
        pytest.skip(f"the stand-in base {base} is missing: run-tests builds it")
    image = "localhost/genai-proxy:test"
    built = subprocess.run(
        ["buildah", "bud", "--isolation", "chroot", "--format", "docker",
         "--build-arg", f"BASE_IMAGE={base}", "--build-arg", "WHEELHOUSE=/wheelhouse",
         "-t", image, "-f", "Containerfile", "."],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    output = built.stdout + built.stderr
    if built.returncode != 0 and re.search(r"cgroups|error running container", output):
        pytest.skip("buildah cannot run a build step here (container runtime)")
    assert built.returncode == 0, output[-3000:]
    yield image
    subprocess.run(["buildah", "rmi", image], capture_output=True)


@contextlib.contextmanager
def _container(image: str) -> Iterator[str]:
    name = f"genai-proxy-test-{os.getpid()}"
    subprocess.run(["buildah", "rm", name], capture_output=True)
    subprocess.run(["buildah", "from", "--name", name, image], capture_output=True, check=True)
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True)


def _run_in(container: str, command: list[str], port: int) -> list[str]:
    """``buildah run`` of an image command, its port moved to ``port``."""
    environment = [f"--env={name}={value}" for name, value in BASE_ENV.items()]
    return ["buildah", "run", "--isolation", "chroot", "--network", "host",
            *environment, "--env=GENAI_BASE_URL=http://127.0.0.1:9", container, "--",
            *[arg.replace("8111", str(port)) for arg in command]]


def test_image_runs_its_command_and_its_healthcheck(built_image):
    """The built image's own CMD (from its config, as its USER, in its
    WORKDIR) serves /livez and lists the bundled models; its HEALTHCHECK,
    which must survive the build (the Docker format keeps it), passes."""
    config = _image_config(built_image)
    assert config["User"] == "genai" and config["WorkingDir"] == "/app"
    assert config["Healthcheck"]["Test"][0] == "CMD"
    port = free_port()
    with _container(built_image) as container:
        process = subprocess.Popen(_run_in(container, config["Cmd"], port),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, start_new_session=True)
        try:
            def answers() -> httpx.Response | None:
                assert process.poll() is None, process.communicate()[0][-2000:]
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/livez", trust_env=False)
                except httpx.TransportError:
                    return None

            assert wait_for(answers, timeout=60).status_code == 200
            models = httpx.get(f"http://127.0.0.1:{port}/v1/models", trust_env=False).json()
            assert "gpt-5" in [m["id"] for m in models["data"]]
            health = subprocess.run(_run_in(container, config["Healthcheck"]["Test"][1:], port),
                                    capture_output=True, text=True, timeout=60)
            assert health.returncode == 0, health.stderr
            whoami = subprocess.run(_run_in(container, ["id", "-un"], port),
                                    capture_output=True, text=True, timeout=60)
            assert whoami.stdout.strip() == "genai"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def verify_unit(unit: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify, with the absolute programs the unit starts
    replaced by stubs when this machine lacks them (podman, the service's
    virtualenv); every other line is checked as written."""
    folder = Path(tempfile.mkdtemp())

    def stub(match: re.Match[str]) -> str:
        prefix, program = match.group(1), match.group(2)
        if os.access(program, os.X_OK):
            return match.group(0)
        fake = folder / "bin" / Path(program).name
        fake.parent.mkdir(exist_ok=True)
        fake.write_text("#!/bin/sh\n")
        fake.chmod(0o755)
        return prefix + str(fake)

    text = re.sub(r"^(Exec\w+=[-@+!:]*)(/\S+)", stub, unit.read_text(), flags=re.M)
    checked = folder / "genai-proxy.service"
    checked.write_text(text)
    return subprocess.run(["systemd-analyze", "verify", str(checked)], capture_output=True, text=True)


@pytest.mark.parametrize("unit", ["genai-proxy.service", "deploy/genai-proxy-native.service"])
def test_units_verify(unit):
    result = verify_unit(REPO / unit)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_units_stop_gracefully_and_keep_secrets_out():
    container = (REPO / "genai-proxy.service").read_text()
    native = (REPO / "deploy/genai-proxy-native.service").read_text()
    assert "--publish 127.0.0.1:8111:8111" in container
    assert "/app/models.yaml" in container and "podman stop --time 35" in container
    assert "tcp:8111:interface=127.0.0.1" in native and "KillSignal=SIGTERM" in native
    # The key: a systemd credential (native), a podman secret (container).
    assert "LoadCredential=genai_api_key:/etc/genai-proxy/credentials/genai_api_key" in native
    assert "--secret genai_api_key,type=mount,uid=10001,mode=0400" in container
    assert "--env GENAI_API_KEY_FILE=/run/secrets/genai_api_key" in container
    for text in (container, native):
        assert "EnvironmentFile=/etc/genai-proxy/genai-proxy.env" in text
        assert "GENAI_API_KEY=" not in text
        # systemctl reload re-reads models.yaml: an ExecReload line that
        # sends SIGHUP, not a comment that mentions it.
        reload_lines = [line for line in text.splitlines() if line.startswith("ExecReload=")]
        assert len(reload_lines) == 1 and "HUP" in reload_lines[0], reload_lines


@pytest.mark.parametrize("script", ["install.sh", "run-tests", ".ci/run",
                                    "tests/image/build-base-standin",
                                    "tests/clients/install-open-webui"])
def test_shellcheck(script):
    result = subprocess.run(["shellcheck", str(REPO / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("mode, unit", [("container", "genai-proxy.service"),
                                        ("native", "deploy/genai-proxy-native.service")])
def test_install_is_idempotent(tmp_path, mode, unit):
    """Run twice: the settings, the key and the model list written the first
    time are kept the second; the key is in its own mode-600 file, not in the
    settings."""
    run = [str(REPO / "install.sh"), "--mode", mode, "--root", str(tmp_path), "--no-build",
           "--no-venv"]
    first = subprocess.run(run, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           env={**_clean_environment(), "GENAI_API_KEY": "from-env-1234"})
    assert first.returncode == 0, first.stderr
    env_file = tmp_path / "etc/genai-proxy/genai-proxy.env"
    key_file = tmp_path / "etc/genai-proxy/credentials/genai_api_key"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key_file.read_text() == "from-env-1234\n"
    assert "from-env-1234" not in env_file.read_text() + first.stdout + first.stderr
    installed = tmp_path / "etc/systemd/system/genai-proxy.service"
    assert installed.read_text() == (REPO / unit).read_text()
    assert (tmp_path / "opt/genai-proxy/models.yaml").read_text() == (REPO / "models.yaml").read_text()
    (tmp_path / "opt/genai-proxy/models.yaml").write_text("- id: mine\n")
    second = subprocess.run(run, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            env={**_clean_environment(), "GENAI_API_KEY": "another-5678"})
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout and "kept" in second.stdout
    assert key_file.read_text() == "from-env-1234\n"  # not overwritten
    assert (tmp_path / "opt/genai-proxy/models.yaml").read_text() == "- id: mine\n"


def test_install_reads_the_key_from_stdin_without_passing_it_on(tmp_path):
    """--key-stdin takes the key from standard input; no program the script
    starts ever gets it in its arguments (traced with strace)."""
    trace = tmp_path / "trace"
    result = subprocess.run(
        ["strace", "-f", "-qq", "-s", "4096", "-e", "trace=execve", "-o", str(trace),
         str(REPO / "install.sh"), "--mode", "native", "--root", str(tmp_path / "root"),
         "--no-venv", "--key-stdin"],
        input="key-from-stdin-9876\n", capture_output=True, text=True, env=_clean_environment())
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "root/etc/genai-proxy/credentials/genai_api_key"
    assert key_file.read_text() == "key-from-stdin-9876\n"
    executed = trace.read_text()
    assert "execve(" in executed and "key-from-stdin-9876" not in executed


def test_install_moves_an_old_key_out_of_the_settings(tmp_path):
    """An earlier install's settings file held the key: it moves to the
    credential file and its line leaves the settings."""
    etc = tmp_path / "etc/genai-proxy"
    etc.mkdir(parents=True)
    (etc / "genai-proxy.env").write_text("GENAI_SUBSCRIPTION_NAME=api-key\nGENAI_API_KEY=old-4321\n"
                                         "GENAI_BASE_URL=https://gw.example\n")
    result = subprocess.run([str(REPO / "install.sh"), "--mode", "native", "--root", str(tmp_path),
                             "--no-venv"], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, env=_clean_environment())
    assert result.returncode == 0, result.stderr
    assert (etc / "credentials/genai_api_key").read_text() == "old-4321\n"
    settings = (etc / "genai-proxy.env").read_text()
    assert "old-4321" not in settings and "GENAI_BASE_URL=https://gw.example" in settings


def test_container_unit_podman_arguments_mount_the_secret(tmp_path):
    """podman accepts the unit's own `podman run` arguments (turned into
    `podman create`, which needs no container runtime) and mounts the key
    secret for the image's user, read-only to it."""
    if shutil.which("podman") is None:
        pytest.skip("no podman on this machine")
    base = subprocess.run([str(STANDIN), "--tag"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if subprocess.run(["podman", "image", "exists", base]).returncode != 0:
        pytest.skip(f"the stand-in base {base} is missing: run-tests builds it")
    unit = (REPO / "genai-proxy.service").read_text().replace("\\\n", " ")
    command = re.search(r"^ExecStart=/usr/bin/podman run (.*)$", unit, re.M).group(1).split()
    assert command[-1] == "localhost/genai-proxy:latest"
    name = f"genai-proxy-unit-{os.getpid()}"
    secret = subprocess.run(["podman", "secret", "create", "genai_api_key", "-"],
                            input="unit-key-1357", capture_output=True, text=True)
    if secret.returncode != 0 and "already" not in secret.stderr:
        raise AssertionError(secret.stderr)
    options = [a for a in command[:-1] if a != "--rm"]
    options = [f"--name={name}" if a == "genai-proxy" else a for a in options]
    options = [a for a in options if a != "--name"]
    options = [a.replace("/opt/genai-proxy/models.yaml", str(REPO / "models.yaml"))
               .replace("/etc/genai-proxy/genai-proxy.env", str(tmp_path / "env")) for a in options]
    (tmp_path / "env").write_text("GENAI_SUBSCRIPTION_NAME=api-key\n")
    try:
        created = subprocess.run(["podman", "create", *options, base, "true"],
                                 capture_output=True, text=True)
        assert created.returncode == 0, created.stderr
        inspected = json.loads(subprocess.run(["podman", "inspect", name], capture_output=True,
                                              text=True, check=True).stdout)[0]
        assert inspected["Config"]["CreateCommand"]
        assert [(s["Name"], s["UID"], s["Mode"]) for s in inspected["Config"]["Secrets"]] == [
            ("genai_api_key", 10001, 0o400)]
        assert "GENAI_API_KEY_FILE=/run/secrets/genai_api_key" in inspected["Config"]["Env"]
        assert "unit-key-1357" not in json.dumps(inspected)
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True)
        if secret.returncode == 0:
            subprocess.run(["podman", "secret", "rm", "genai_api_key"], capture_output=True)


def test_install_rejects_bad_options(tmp_path):
    result = subprocess.run([str(REPO / "install.sh"), "--mode", "kubernetes", "--root", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "container or native" in result.stderr


def test_install_help_prints_only_the_help():
    """--help prints the usage text from the script's header, nothing of its
    code, and exits 0; an unknown option puts the usage on stderr, status 2."""
    result = subprocess.run([str(REPO / "install.sh"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Install genai-proxy as a systemd service")
    assert lines[-1].strip().startswith("--no-venv")
    assert not any(line.startswith(("set ", "#!")) or "#" in line for line in lines)
    bad = subprocess.run([str(REPO / "install.sh"), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "unknown option: --frobnicate" in bad.stderr and "--no-venv" in bad.stderr
