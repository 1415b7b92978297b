"""The tests' own layout holds: helpers shared between test files live in the
support package (tests/support), so no file of the suite imports a test file
or a conftest; and tests/unit stays in process, so no unit test (nor the
conftest whose fixtures unit tests see) imports a way to run a process or the
support helpers that start the daemon, the mock upstream or a forward proxy.

Every file is read with L{ast}, so imports inside functions count as well.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
# The real clients' npm packages, not the suite's own code.
NOT_THE_SUITES = ("clients",)

# Modules that run other processes.
PROCESS_MODULES = frozenset({"subprocess", "multiprocessing"})
# Functions of os that run or fork a process.
OS_PROCESS_CALLS = ("system", "popen", "fork", "forkpty", "spawn", "exec", "posix_spawn")
# The support helpers that start daemons (the proxy, the mock upstream,
# tinyproxy, redis-server) or hold a running one.
DAEMON_HELPERS = frozenset({"ProxyProcess", "run_proxy", "run_proxy_expecting_failure",
                            "run_mock_upstream", "run_tinyproxy", "RedisServer", "run_redis"})


def suite_files() -> list[Path]:
    """Every Python file of the suite."""
    return sorted(path for path in TESTS.rglob("*.py")
                  if path.relative_to(TESTS).parts[0] not in NOT_THE_SUITES)


def in_process_files() -> list[Path]:
    """The unit tests, and the conftest files whose fixtures they see."""
    return sorted([*TESTS.glob("unit/**/*.py"), TESTS / "conftest.py"])


def _imports(tree: ast.AST) -> Iterator[tuple[int, str, list[str]]]:
    """(line, module, names imported from it) of each absolute import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module, [alias.name for alias in node.names]


def imports_of_tests(source: str) -> list[str]:
    """The imports in C{source} of a test file or of a conftest."""
    found = []
    for line, module, _ in _imports(ast.parse(source)):
        top = module.split(".")[0]
        if top == "conftest" or top.startswith("test_"):
            found.append(f"line {line}: imports {module} (move what it shares to tests/support)")
    return found


def process_starts(source: str) -> list[str]:
    """What in C{source} runs a process or a daemon."""
    tree = ast.parse(source)
    found = []
    for line, module, names in _imports(tree):
        top = module.split(".")[0]
        if top in PROCESS_MODULES:
            found.append(f"line {line}: imports {module}")
        if top == "support":
            for name in sorted(DAEMON_HELPERS.intersection(names)):
                found.append(f"line {line}: imports {name} from {module}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "support" and node.attr in DAEMON_HELPERS:
                found.append(f"line {node.lineno}: uses support.{node.attr}")
            if node.value.id == "os" and node.attr.startswith(OS_PROCESS_CALLS):
                found.append(f"line {node.lineno}: uses os.{node.attr}")
    return found


def _report(findings: dict[Path, list[str]]) -> str:
    return "\n".join(f"{path.relative_to(TESTS)}: {finding}"
                     for path, found in findings.items() for finding in found)


def test_no_file_of_the_suite_imports_a_test_file_or_conftest():
    """Test files, conftest files and the support package import no test
    file and no conftest: what test files share is in tests/support."""
    files = suite_files()
    assert TESTS / "unit" / "test_test_layout.py" in files and len(files) > 40
    findings = {path: found for path in files if (found := imports_of_tests(path.read_text()))}
    assert not findings, _report(findings)


def test_unit_tests_run_no_process_and_start_no_daemon():
    """tests/unit (and tests/conftest.py, whose fixtures unit tests get)
    import no module that runs processes, call no os function that does, and
    use none of the support helpers that start or hold a daemon: those
    tests belong in tests/integration."""
    files = in_process_files()
    assert TESTS / "unit" / "test_test_layout.py" in files
    findings = {path: found for path in files if (found := process_starts(path.read_text()))}
    assert not findings, _report(findings)


def test_daemon_fixtures_are_out_of_the_unit_tests_reach():
    """The fixtures that start the session's mock upstream and proxy are
    defined in tests/integration/conftest.py, which unit tests never load."""
    fixtures = ast.parse((TESTS / "integration" / "conftest.py").read_text())
    defined = {node.name for node in ast.walk(fixtures) if isinstance(node, ast.FunctionDef)}
    assert {"mock_url", "proxy"} <= defined
    assert not list(TESTS.glob("unit/**/conftest.py"))


def test_the_checks_find_what_they_forbid():
    """Each forbidden import or call is found, at the top of a file and
    inside a function alike; what the suite may do is not."""
    assert imports_of_tests("from conftest import upstream_saw\n") == [
        "line 1: imports conftest (move what it shares to tests/support)"]
    assert len(imports_of_tests("import test_metrics\n"
                                "def f():\n    from test_access import raw_get\n")) == 2
    assert imports_of_tests("from support.metrics import scrape\nimport pytest\n") == []
    assert process_starts("import subprocess\n") == ["line 1: imports subprocess"]
    assert process_starts("def f():\n    from multiprocessing import Process\n") == [
        "line 2: imports multiprocessing"]
    assert process_starts("from support import BASE_ENV, run_proxy, ProxyProcess\n") == [
        "line 1: imports ProxyProcess from support", "line 1: imports run_proxy from support"]
    assert process_starts("import support\nsupport.run_mock_upstream()\n") == [
        "line 2: uses support.run_mock_upstream"]
    assert process_starts("import os\nos.system('twistd')\nos.execv('x', [])\n") == [
        "line 2: uses os.system", "line 3: uses os.execv"]
    assert process_starts("import os\nfrom support.fuzz_harness import build_proxy\n"
                          "os.environ.get('X')\n") == []


def test_test_files_have_unique_names():
    """pytest imports test files by their base name (the folders are not
    packages): a name used in both tests/unit and tests/integration stops
    the whole suite at collection."""
    names = [path.name for path in TESTS.rglob("test_*.py")]
    assert sorted({name for name in names if names.count(name) > 1}) == []
