"""What every test of the suite runs with: no forward proxy of the runner,
and the hypothesis profiles.  The daemons' fixtures are in
tests/integration/conftest.py; helpers that test files share are in the
support package (tests/support), never here."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

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
