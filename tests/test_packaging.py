"""The built wheel carries the twistd plugin, and twistd finds it once installed."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from support import TWISTD

REPO = Path(__file__).resolve().parent.parent


def test_wheel_contains_the_plugin(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(REPO)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("genai_proxy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/genaiproxy_plugin.py" in names
    # Twisted owns these packages: shipping their __init__ would break it.
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names
    assert "genaiproxy/service.py" in names and "genaiproxy/mock_upstream.py" in names


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
