"""The built wheel carries the twistd plugin, and twistd finds it once installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from support import TWISTD

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_the_plugin(tmp_path):
    subprocess.run(
        # No build isolation: nothing is downloaded (the tests use only loopback).
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("genai_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/genaiproxy_plugin.py" in names
    # Twisted owns these packages: shipping their __init__ would break it.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    # Every module of every subpackage is in the wheel (setup.py finds them).
    sources = {path.relative_to(REPO).as_posix() for path in (REPO / "genaiproxy").rglob("*.py")}
    assert "genaiproxy/daemon/service.py" in sources
    assert sources <= set(names), sorted(sources - set(names))
    assert "genaiproxy/mock_upstream.py" in names


def test_twistd_lists_the_plugin(tmp_path):
    result = subprocess.run([TWISTD, "--help"], capture_output=True, text=True, cwd=tmp_path,
                            check=True)
    assert "genaiproxy" in result.stdout
    options = subprocess.run([TWISTD, "genaiproxy", "--help"], capture_output=True, text=True,
                             cwd=tmp_path, check=True)
    assert "--listen" in options.stdout and "tcp:8111:interface=127.0.0.1" in options.stdout
    assert "--models" in options.stdout and "./models.yaml" in options.stdout


def test_dependencies_are_the_design_stack():
    """The installed package depends on treq (which performs the upstream
    calls) and the rest of the design's stack, and no longer on httptools."""
    from importlib.metadata import requires

    names = {
        requirement.split(";")[0].split("[")[0].split(">")[0].split("=")[0].strip().lower()
        for requirement in requires("genai-proxy") or []
        if "extra ==" not in requirement
    }
    assert {"twisted", "treq", "pyyaml", "service-identity", "pyopenssl"} <= names
    assert "httptools" not in names


def test_version_is_genai_proxys(tmp_path):
    """`twistd genaiproxy --version` names genai-proxy and its version."""
    from genaiproxy import __version__

    result = subprocess.run([TWISTD, "genaiproxy", "--version"], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert result.stdout.startswith(f"genai-proxy {__version__} (Twisted ")


def test_help_lists_every_setting_the_daemon_reads(tmp_path):
    """`--help` ends with the environment settings: each variable the
    configuration reads, with its default; and each is in the configuration
    reference (docs/reference/configuration.md)."""
    from genaiproxy.config.environment import load_config
    from genaiproxy.config.settings import SETTINGS

    class Recording(dict):
        read: set[str] = set()

        def get(self, key, default=None):
            self.read.add(key)
            return super().get(key, default)

        def __getitem__(self, key):
            self.read.add(key)
            return super().__getitem__(key)

        def __contains__(self, key):
            self.read.add(key)
            return super().__contains__(key)

    env = Recording(GENAI_SUBSCRIPTION_NAME="k", GENAI_API_KEY="v", GENAI_BASE_URL="http://u")
    load_config(env)
    listed = {item.name for item in SETTINGS}
    # The lower-case https_proxy / no_proxy are honoured as the usual aliases.
    assert {name.upper() for name in env.read} == listed
    shown = subprocess.run([TWISTD, "genaiproxy", "--help"], capture_output=True, text=True,
                           cwd=tmp_path, check=True).stdout
    reference = (REPO / "docs" / "reference" / "configuration.md").read_text()
    for item in SETTINGS:
        default = item.default_text()
        assert f"  {item.name} " in shown and (f"[{default}]" if default else "[empty]") in shown
        assert f"`{item.name}`" in reference, item.name
