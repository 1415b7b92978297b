"""The files the proxy watches (the key file, the token files, models.yaml):
each new failure is logged, the same one again is not; a models.yaml that
failed is tried again by the periodic check; a file rewritten in place is
never taken half written (units: L{genaiproxy.config.credentials},
L{genaiproxy.config.models}, L{genaiproxy.config.whole_file}, and the
daemon's check, L{genaiproxy.daemon.service.ProxyService.check_files})."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs

from genaiproxy.config import whole_file
from genaiproxy.config.credentials import SecretFile, parse_header_secret, parse_tokens_file
from genaiproxy.config.environment import load_config
from genaiproxy.config.models import ModelCatalog
from genaiproxy.daemon.service import build_service

ENVIRONMENT = {"GENAI_SUBSCRIPTION_NAME": "Api-Key", "GENAI_API_KEY": "key-default",
               "GENAI_BASE_URL": "http://127.0.0.1:9"}


def errors(events: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The events C{name} logged at ERROR."""
    return [e for e in events if e.get("log_format") == name
            and e.get("log_level") == LogLevel.error]


def named(events: Sequence[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_format") == name]


def write_same_stamp(path: Path, text: str) -> None:
    """Rewrite C{path} in place keeping its modification time (and, for a
    text of the same length, its size): as an edit within one tick of a
    file system's clock looks."""
    before = path.stat()
    path.write_text(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


@pytest.mark.parametrize("setting, parse, good, mistakes", [
    ("AUTH_TOKENS_FILE", parse_tokens_file, "alice: tok-a\nbob: tok-b\n",
     ["alice: tok-x\nbob: tok-x\n",          # a token given twice
      "alice: tok-a\nalice: tok-b\n",        # a name given twice
      "- just a list\n"]),
    ("GENAI_API_KEY_FILE", parse_header_secret, "key-one\n",
     ["", "key-one\nkey-two\n", None]),      # empty, two lines, then removed
    ("AUTH_TOKEN_FILE", parse_header_secret, "tok-one\n",
     ["tok\0one\n", "   \n"]),
])
def test_each_new_mistake_in_a_secret_file_is_logged(tmp_path, setting, parse, good, mistakes):
    """A file fixed into another mistake logs the new one (an operator who is
    mending it sees each of them); the same mistake checked again logs
    nothing more; mended, it says so; the good value stays in service
    throughout and no event holds a secret."""
    path = tmp_path / "secret"
    path.write_text(good)
    loads: list[tuple[str, bool]] = []
    secret = SecretFile(setting, str(path), parse, lambda value: None,
                        lambda name, ok: loads.append((name, ok)))
    kept = secret.value
    with capturedLogs() as events:
        for mistake in mistakes:
            if mistake is None:
                path.unlink()
            else:
                path.write_text(mistake)
            secret.refresh()
            secret.refresh()  # the same failure again
        failed = errors(events, "credentials_reload_failed")
        assert len(failed) == len(mistakes)
        assert len({e["error"] for e in failed}) == len(mistakes)
        assert secret.value == kept
        path.write_text(good)
        secret.refresh()
        assert len(named(events, "credentials_reloaded")) == 1
    assert loads == [(setting, False)] * len(mistakes) + [(setting, True)]
    for token in ("tok-a", "tok-b", "tok-x", "key-one", "tok-one"):
        assert token not in repr(list(events))


def test_sighup_logs_the_same_mistake_again(tmp_path):
    """A forced read (SIGHUP) logs a failure even when it is the last one:
    the operator asked."""
    path = tmp_path / "key"
    path.write_text("key-one\n")
    secret = SecretFile("GENAI_API_KEY_FILE", str(path), parse_header_secret, lambda v: None)
    path.write_text("")
    with capturedLogs() as events:
        secret.refresh()
        secret.refresh()
        secret.refresh(force=True)
    assert len(errors(events, "credentials_reload_failed")) == 2


def test_each_new_mistake_in_models_yaml_is_logged_once(tmp_path):
    """models.yaml: a second, different mistake is logged even when the edit
    left the file's size and time as they were; the periodic check tries
    the failing file again without logging the same failure again."""
    path = tmp_path / "models.yaml"
    path.write_text("- id: m\n  owned_by: me\n")
    catalog = ModelCatalog(str(path))
    assert [m["id"] for m in catalog.models()] == ["m"]
    with capturedLogs() as events:
        path.write_text("- id: m\n  max_output_tokens: -1\n")
        catalog.check()
        catalog.check()
        write_same_stamp(path, "- id: m\n  max_output_tokens: -2\n")
        catalog.check()
        catalog.check()
        assert catalog.models()[0]["owned_by"] == "me"  # the last good list
    failed = errors(events, "models_reload_failed")
    assert ["-1" in failed[0]["error"], "-2" in failed[1]["error"]] == [True, True]
    assert len(failed) == 2


def daemon_with_models(tmp_path: Path, text: str) -> Any:
    """The daemon's service, wired as twistd gets it (not started: its
    periodic check is called by hand), over models.yaml C{text}."""
    models = tmp_path / "models.yaml"
    models.write_text(text)
    return build_service(load_config(ENVIRONMENT), "tcp:0:interface=127.0.0.1", str(models),
                         reactor=MemoryReactorClock(), log_to=io.StringIO(),
                         environ=ENVIRONMENT)


def test_a_models_yaml_refused_for_a_missing_key_file_loads_once_it_appears(tmp_path):
    """A models.yaml naming an api_key_file that does not exist yet is
    refused; the periodic check tries it again (logging the same failure
    once) and takes it into service once the file appears, with no change
    to models.yaml and no SIGHUP."""
    key = tmp_path / "eu-key"
    proxy = daemon_with_models(tmp_path, (
        "upstreams:\n  eu:\n    base_url: http://127.0.0.1:10\n"
        f"    subscription_name: Api-Key\n    api_key_file: {key}\n"
        "models:\n  - id: m\n    upstream: eu\n"))
    with capturedLogs() as events:
        proxy.check_files()
        proxy.check_files()
        assert not proxy.catalog.usable
        key.write_text("key-eu\n")
        proxy.check_files()
    assert len(errors(events, "models_load_failed")) == 1
    assert [e["models"] for e in named(events, "models_loaded")] == [1]
    assert proxy.forwarder.upstreams.has("eu")
    assert proxy.forwarder.upstreams.client("eu").config.api_key == "key-eu"


def writer_finishing_during_the_read(monkeypatch: pytest.MonkeyPatch, path: Path,
                                     rest: str, times: int = 1) -> None:
    """Make a writer append C{rest} to C{path} while a reader is in the
    middle of it: between its read and the status it takes after (each
    second call of C{os.fstat}), C{times} times."""
    real_fstat = os.fstat
    calls = [0]

    def fstat(fd: int) -> os.stat_result:
        calls[0] += 1
        if calls[0] % 2 == 0 and calls[0] <= 2 * times:
            with open(path, "a") as f:
                f.write(rest)
        return real_fstat(fd)

    monkeypatch.setattr(whole_file.os, "fstat", fstat)


def test_a_key_file_rewritten_in_place_is_not_taken_half_written(tmp_path, monkeypatch):
    """A key file caught half written (the writer finishing during the read)
    is read again: the whole new key takes service, never its prefix."""
    path = tmp_path / "key"
    path.write_text("key-old-0001\n")
    used: list[str] = []
    secret = SecretFile("GENAI_API_KEY_FILE", str(path), parse_header_secret, used.append)
    path.write_text("key-ne")  # truncated, then written: the first part so far
    writer_finishing_during_the_read(monkeypatch, path, "w-0002\n")
    secret.refresh()
    assert used == ["key-old-0001", "key-new-0002"]


def test_a_file_that_keeps_changing_keeps_the_last_good_value(tmp_path, monkeypatch):
    """A file that changes during every read is refused for now (the last
    good key stays, the error says why) and read again at the next check."""
    path = tmp_path / "key"
    path.write_text("key-old-0001\n")
    used: list[str] = []
    secret = SecretFile("GENAI_API_KEY_FILE", str(path), parse_header_secret, used.append)
    path.write_text("key-")
    writer_finishing_during_the_read(monkeypatch, path, "x", times=whole_file.READ_ATTEMPTS)
    with capturedLogs() as events:
        secret.refresh()
    assert used == ["key-old-0001"]
    assert "kept changing" in errors(events, "credentials_reload_failed")[0]["error"]
    secret.refresh()
    assert used == ["key-old-0001", "key-" + "x" * whole_file.READ_ATTEMPTS]


def test_models_yaml_rewritten_in_place_is_not_taken_half_written(tmp_path, monkeypatch):
    """The same for models.yaml: a list caught half written is not served."""
    path = tmp_path / "models.yaml"
    path.write_text("- id: a\n")
    catalog = ModelCatalog(str(path))
    assert [m["id"] for m in catalog.models()] == ["a"]
    path.write_text("- id: a\n- id: b\n")
    writer_finishing_during_the_read(monkeypatch, path, "- id: c\n")
    assert [m["id"] for m in catalog.models()] == ["a", "b", "c"]


def test_a_pipe_is_read_once(tmp_path):
    """What is not a regular file (a pipe, a device: its size says nothing
    of what it holds) is read as it is."""
    assert whole_file.read_whole_file(os.devnull)[0] == ""
    read, write = os.pipe()
    os.write(write, b"key-from-a-pipe\n")
    os.close(write)
    try:
        assert whole_file.read_whole_file(f"/dev/fd/{read}")[0] == "key-from-a-pipe\n"
    finally:
        os.close(read)

