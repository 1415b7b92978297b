"""The deployment artefacts: Containerfile, systemd units, install.sh.

No container engine runs here, so the image's command line is run the way
the image runs it (and the image is built only where podman or buildah
exists); the units go through `systemd-analyze verify`; the scripts through
shellcheck. `run-tests` installs shellcheck and systemd-analyze.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import httpx
import pytest
from support import BASE_ENV, TWISTD, _clean_environment, _stop, free_port

REPO = Path(__file__).resolve().parent.parent
CONTAINERFILE = (REPO / "Containerfile").read_text()


def instruction(name: str) -> str:
    """The (last) argument of a Containerfile instruction, continuation lines joined."""
    joined = CONTAINERFILE.replace("\\\n", " ")
    return re.findall(rf"^{name}\s+(.*)$", joined, flags=re.M)[-1].strip()


def test_containerfile_shape():
    assert len(re.findall(r"^FROM .*python:3\.\d+-slim", CONTAINERFILE, flags=re.M)) == 2
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


BASE_IMAGE = "docker.io/library/python:3.12-slim"


def test_image_builds_where_an_engine_exists():
    """The image builds where a container engine can: its base image is
    there or can be pulled, and its build can reach the package index.
    Elsewhere the test says which of these is missing."""
    # buildah's chroot isolation builds where a container runtime cannot
    # run (cgroup limits in a sandbox); podman's build is the fallback.
    engine = shutil.which("buildah") or shutil.which("podman")
    if engine is None:
        pytest.skip("no podman or buildah on this machine: the image cannot be built here")
    has_base = subprocess.run([engine, "image", "exists", BASE_IMAGE], capture_output=True)
    if has_base.returncode != 0:
        pulled = subprocess.run([engine, "pull", BASE_IMAGE], capture_output=True, text=True,
                                timeout=300)
        if pulled.returncode != 0:
            pytest.skip(f"the base image {BASE_IMAGE} cannot be pulled here: "
                        f"{pulled.stderr.strip().splitlines()[-1:]}")
    verb = ["build"] if engine.endswith("podman") else ["bud"]
    built = subprocess.run([engine, *verb, "--isolation", "chroot", "-t", "genai-proxy:test",
                            "-f", "Containerfile", "."],
                           cwd=REPO, capture_output=True, text=True, timeout=1200)
    output = built.stdout + built.stderr
    if built.returncode != 0 and re.search(r"cgroups|error running container", output):
        pytest.skip(f"{Path(engine).name} cannot run a build step here (container runtime)")
    if built.returncode != 0 and re.search(r"No matching distribution found|Could not find a "
                                           r"version|Failed to establish", output):
        pytest.skip("the image's build cannot reach the package index from this machine")
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]


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
    for text in (container, native):
        assert "EnvironmentFile=/etc/genai-proxy/genai-proxy.env" in text
        assert "GENAI_API_KEY=" not in text
        # systemctl reload re-reads models.yaml: an ExecReload line that
        # sends SIGHUP, not a comment that mentions it.
        reload_lines = [line for line in text.splitlines() if line.startswith("ExecReload=")]
        assert len(reload_lines) == 1 and "HUP" in reload_lines[0], reload_lines


@pytest.mark.parametrize("script", ["install.sh", "run-tests", ".ci/run"])
def test_shellcheck(script):
    result = subprocess.run(["shellcheck", str(REPO / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("mode, unit", [("container", "genai-proxy.service"),
                                        ("native", "deploy/genai-proxy-native.service")])
def test_install_is_idempotent(tmp_path, mode, unit):
    run = [str(REPO / "install.sh"), "--mode", mode, "--root", str(tmp_path), "--no-build",
           "--no-venv"]
    first = subprocess.run(run, capture_output=True, text=True,
                           env={**_clean_environment(), "GENAI_API_KEY": "from-env-1234"})
    assert first.returncode == 0, first.stderr
    env_file = tmp_path / "etc/genai-proxy/genai-proxy.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert "GENAI_API_KEY=from-env-1234" in env_file.read_text()
    installed = tmp_path / "etc/systemd/system/genai-proxy.service"
    assert installed.read_text() == (REPO / unit).read_text()
    assert (tmp_path / "opt/genai-proxy/models.yaml").read_text() == (REPO / "models.yaml").read_text()
    (tmp_path / "opt/genai-proxy/models.yaml").write_text("- id: mine\n")
    second = subprocess.run(run, capture_output=True, text=True, env=_clean_environment())
    assert second.returncode == 0, second.stderr
    assert "unchanged" in second.stdout and "kept" in second.stdout
    assert "GENAI_API_KEY=from-env-1234" in env_file.read_text()  # not overwritten
    assert (tmp_path / "opt/genai-proxy/models.yaml").read_text() == "- id: mine\n"


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
