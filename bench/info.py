"""What ran where: the machine, and the software in each venv and tool.

Taken before a run and shown at the top of the report: CPU, kernel, load,
open-files limit; for each genai-proxy venv the Python, Twisted, treq and
httptools versions and whether its installed package matches the working
tree or a recent commit (read-only git queries); nginx's and wrk's versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import subprocess
from pathlib import Path
from typing import Any

from bench.launch import venv_bindir
from bench.procs import find_tool

REPO = Path(__file__).resolve().parent.parent
_VENV_PROBE = r"""
import json, sys, importlib.metadata as md
out = {"python": sys.version.split()[0]}
for name in ("Twisted", "treq", "httptools", "genai-proxy"):
    try:
        out[name] = md.version(name)
    except md.PackageNotFoundError:
        out[name] = None
try:
    import genaiproxy
    out["path"] = genaiproxy.__file__
except Exception as e:
    out["path"] = None
print(json.dumps(out))
"""


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def _git(*args: str) -> str:
    """Read-only git queries on the repository (nothing that writes to .git)."""
    done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else ""


def source_match(installed: str | None) -> str:
    """Whether the installed genaiproxy package equals the working tree's
    genaiproxy/ or the one at git HEAD (compared file by file)."""
    if not installed:
        return "genaiproxy not importable"
    inst = Path(installed).parent
    # Paths relative to the package, subpackages included.
    names = sorted(p.relative_to(inst).as_posix() for p in inst.rglob("*.py"))
    tree = REPO / "genaiproxy"
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    if tree.is_dir() and names == sorted(
            p.relative_to(tree).as_posix() for p in tree.rglob("*.py")) and all(
            sha(inst / n) == sha(tree / n) for n in names):
        return "installed package matches the working tree"
    hashes = {n: _git("hash-object", str(inst / n)) for n in names}
    # HEAD, then the commits before it that changed genaiproxy/ (newest first).
    commits = ["HEAD"] + _git("log", "--format=%h", "-n", "40", "--", "genaiproxy").split()[1:]
    for commit in commits:
        blobs = {Path(path).relative_to("genaiproxy").as_posix(): sha for _, _, sha, path in
                 (line.split(None, 3) for line in
                  _git("ls-tree", "-r", commit, "genaiproxy/").splitlines())
                 if path.endswith(".py")}
        if blobs and blobs == hashes:
            name = _git("rev-parse", "--short", commit)
            return (f"installed package matches git {name}"
                    + (" (HEAD)" if commit == "HEAD" else ", not HEAD")
                    + ", not the working tree")
    return "installed package matches neither the working tree nor a recent commit"


def venv_info(venv: str | None) -> dict[str, Any]:
    python = venv_bindir(venv) / "python"
    try:
        # -I and cwd=/: import what the venv has installed, not ./genaiproxy
        done = subprocess.run([str(python), "-I", "-c", _VENV_PROBE], capture_output=True,
                              text=True, timeout=60, cwd="/")
        info = json.loads(done.stdout)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": str(e), "python_path": str(python)}
    info["python_path"] = str(python)
    info["source"] = source_match(info.get("path"))
    return info


def gather_info(args: argparse.Namespace) -> dict[str, Any]:
    """Machine, software versions and limits, taken before the run."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
        "kernel": f"{platform.system()} {platform.release()}",
        "load_start": os.getloadavg()[0],
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE),
        "venvs": {args.label: venv_info(args.venv)},
        "git": _git("rev-parse", "--short", "HEAD"),
    }
    if getattr(args, "baseline_venv", None):
        info["venvs"][args.baseline_label] = venv_info(args.baseline_venv)
    for tool, fallback, flag in (("nginx", "/usr/sbin/nginx", "-v"),
                                 ("wrk", "/usr/bin/wrk", "--version")):
        try:
            path = find_tool(tool, getattr(args, tool, None), fallback)
            info[tool] = _first_line([path, flag]).split(" Copyright")[0]
        except Exception as e:  # noqa: BLE001 - reported, the phase fails later anyway
            info[tool] = f"not found ({e})"
    return info
