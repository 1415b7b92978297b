"""A model entry's limits in models.yaml, C{max_output_tokens} and
C{context_window}: checked where the file is read, kept off C{/v1/models},
and the cap carried on the model's route (units: L{genaiproxy.config.models},
L{genaiproxy.config.routing})."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.config.environment import load_config
from genaiproxy.config.models import ModelCatalog, ModelsFileError, parse_models_file, served
from genaiproxy.config.routing import ModelRoute, build_routing

DEFAULT = load_config({"GENAI_SUBSCRIPTION_NAME": "", "GENAI_API_KEY": "",
                       "GENAI_BASE_URL": "https://gw.example"})
KEYS = ("max_output_tokens", "context_window")

counts = st.integers(min_value=1, max_value=10**9)
# YAML values that are not a whole number above 0: written as JSON, which YAML reads.
not_counts = st.one_of(
    st.integers(max_value=0), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                         min_size=1, max_size=2))


def routing_of(text: str):
    entries, upstreams = parse_models_file(text, 0)
    return build_routing(upstreams, entries, DEFAULT, {})


@given(cap=counts, window=counts)
def test_limits_are_read_kept_off_the_list_and_the_cap_routed(cap, window):
    """Whole numbers above 0 are accepted; /v1/models does not show them;
    the model's route carries its cap, even in a file with no other routing
    key, and a model without one has none."""
    text = (f"models:\n  - id: a\n    max_output_tokens: {cap}\n    context_window: {window}\n"
            "  - id: b\n")
    entries, _ = parse_models_file(text, 0)
    assert (entries[0]["max_output_tokens"], entries[0]["context_window"]) == (cap, window)
    assert served(entries) == [{"id": "a", "object": "model", "owned_by": "genai", "created": 0},
                               {"id": "b", "object": "model", "owned_by": "genai", "created": 0}]
    table = routing_of(text)
    assert table.hops("a") == [ModelRoute("a", max_output_tokens=cap)]
    assert table.hops("b")[0].max_output_tokens is None
    assert table.hops("not-in-the-file") == [ModelRoute("not-in-the-file")]


@given(key=st.sampled_from(KEYS), value=not_counts)
def test_anything_else_refuses_the_file(key, value):
    """A value that is not a whole number above 0 (0, a negative number, a
    fraction, true, text, a list, a mapping) refuses the whole file, with
    the model and the key named."""
    text = f"models:\n  - id: ok\n  - id: m\n    {key}: {json.dumps(value)}\n"
    with pytest.raises(ModelsFileError) as caught:
        parse_models_file(text, 0)
    assert f"model 'm': {key} must be a whole number of tokens above 0" in str(caught.value)


def test_null_means_no_limit():
    """A key written with no value is a model without that limit."""
    entries, _ = parse_models_file("- id: m\n  max_output_tokens:\n  context_window: ~\n", 0)
    assert routing_of("- id: m\n  max_output_tokens:\n").hops("m")[0].max_output_tokens is None
    assert served(entries) == [{"id": "m", "object": "model", "owned_by": "genai", "created": 0}]


def test_each_hop_has_its_own_cap():
    """A request that falls back is sent with the fallback's cap, not the
    first model's: each hop of the route carries its own."""
    table = routing_of("models:\n  - id: big\n    max_output_tokens: 64000\n"
                       "    fallbacks: [small, plain]\n"
                       "  - id: small\n    max_output_tokens: 4096\n  - id: plain\n")
    assert [(hop.id, hop.max_output_tokens) for hop in table.hops("big")] == [
        ("big", 64000), ("small", 4096), ("plain", None)]


def test_a_bad_limit_on_reload_keeps_the_last_good_file(tmp_path):
    """The daemon's catalog: a models.yaml changed to a negative cap is
    refused and the last good list and routing stay in service; at start,
    such a file is a load error."""
    path = tmp_path / "models.yaml"
    path.write_text("- id: m\n  max_output_tokens: 1000\n")
    catalog = ModelCatalog(str(path), routing=lambda upstreams, entries: build_routing(
        upstreams, entries, DEFAULT, {}))
    assert [m["id"] for m in catalog.models()] == ["m"]
    path.write_text("- id: m\n  max_output_tokens: -1\n- id: other\n")
    catalog.refresh(force=True)
    assert [m["id"] for m in catalog.models()] == ["m"]
    assert catalog.routing.hops("m")[0].max_output_tokens == 1000
    fresh = ModelCatalog(str(path))
    with pytest.raises(ModelsFileError, match="max_output_tokens must be a whole number"):
        fresh.models()
