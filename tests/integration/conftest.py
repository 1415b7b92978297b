"""Fixtures of the integration tests: one mock upstream and one default
proxy for the session, as processes.  Here, not in tests/conftest.py, so
that no unit test can ask for a daemon."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support import ProxyProcess, run_mock_upstream, run_proxy

MODELS_YAML = """\
models:
  - id: gpt-4.1
    owned_by: genai
  - id: gpt-5
  - object: model   # no id: skipped
"""


@pytest.fixture(scope="session")
def mock_url() -> Iterator[str]:
    """Base URL of a mock upstream shared by the session."""
    with run_mock_upstream("--event-delay", "0.05") as (url, _):
        yield url


@pytest.fixture(scope="session")
def proxy(mock_url: str) -> Iterator[ProxyProcess]:
    """The daemon with its defaults (plus chunk previews) in front of the mock."""
    with run_proxy(mock_url, models=MODELS_YAML, LOG_STREAM_MAX_BYTES="16") as running:
        yield running


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as c:
        yield c
