"""Shared fixtures: one mock upstream and one default proxy for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from support import ProxyProcess, run_mock_upstream, run_proxy

# HTTP clients of the tests talk to loopback only: a forward proxy set for
# the runner (HTTP_PROXY, ALL_PROXY, ...) must not be used by them.
for _name in [name for name in os.environ if name.upper().endswith("_PROXY")]:
    del os.environ[_name]

# The suite runs beside real daemons on small shared machines: generating an
# example may be slow there, which says nothing about the code under test.
# "ci" (the default) tries hypothesis's full number of examples; "fast"
# (./run-tests --fast sets HYPOTHESIS_PROFILE) a fifth of them.
settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fast", settings.get_profile("ci"), max_examples=20)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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


def upstream_saw(mock_url: str, request_id: str) -> list[dict[str, Any]]:
    """The requests the mock received carrying X-Request-ID C{request_id}."""
    recorded = httpx.get(mock_url + "/_mock/requests").json()
    return [r for r in recorded if r["headers"].get("x-request-id") == [request_id]]
