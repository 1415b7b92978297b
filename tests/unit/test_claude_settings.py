"""Claude Code's settings.json as `genai-proxy configure claude-code` merges
it (units: L{genaiproxy.cli.claude_settings}, pure functions of the user's
text and the setup)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genaiproxy.cli.claude_settings import ELSEWHERE, claude_code, key_helper, root_url
from genaiproxy.cli.client_configs import Auth, ClientConfigError, ModelLimits, Setup

SECRET = "unit-secret-token-4242"
SETUP = Setup("http://127.0.0.1:8111/v1", ("gpt-4.1", "gpt-5"), Auth(True, "AUTH_TOKEN", "", SECRET),
              {"gpt-4.1": ModelLimits(16384, 128000), "gpt-5": ModelLimits(),
               "hidden-mini": ModelLimits(4096, 32000)})
MANAGED = {"ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL",
           "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL",
           "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "CLAUDE_CODE_MAX_OUTPUT_TOKENS",
           "CLAUDE_CODE_MAX_CONTEXT_TOKENS", "ENABLE_TOOL_SEARCH", *ELSEWHERE}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=8)
# A user's settings.json: any settings, and an env of their own variables
# and of the proxy's (with any value).
users_env = st.dictionaries(
    st.sampled_from(sorted(MANAGED)) | st.from_regex(r"[A-Z][A-Z_]{0,8}", fullmatch=True),
    st.text(max_size=12), max_size=6)
users_settings = st.fixed_dictionaries(
    {}, optional={"env": users_env, "apiKeyHelper": st.text(max_size=12),
                  "permissions": json_values, "model": st.text(max_size=8)}).flatmap(
    lambda fixed: st.dictionaries(st.text(max_size=8).filter(
        lambda key: key not in ("env", "apiKeyHelper")), json_values, max_size=3).map(
        lambda extra: {**extra, **fixed}))


@given(mine=users_settings, indent=st.sampled_from([2, 4, "\t"]))
def test_merging_keeps_the_users_settings_and_is_idempotent(mine, indent):
    """Whatever the user's settings.json holds: every setting and variable
    of theirs that the proxy does not manage is kept as it was; the
    proxy's are set; the token is never written; merging the result again
    gives the very same text."""
    text = json.dumps(mine, indent=indent)
    merged = claude_code(text, SETUP)
    result = json.loads(merged.text)
    env = result["env"]
    for key, value in mine.items():
        if key not in ("env", "apiKeyHelper"):
            assert result[key] == value
    for name, value in mine.get("env", {}).items():
        if name not in MANAGED:
            assert env[name] == value
    assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8111"
    assert env["ANTHROPIC_MODEL"] in SETUP.limits and env["ANTHROPIC_DEFAULT_HAIKU_MODEL"] in SETUP.limits
    assert not set(ELSEWHERE) & set(env)
    assert result["apiKeyHelper"] == key_helper(True)
    assert SECRET not in merged.text and not any(SECRET in note for note in merged.notes)
    assert claude_code(merged.text, SETUP).text == merged.text


def test_a_new_file():
    """With no file, the settings hold the connection, the first model for
    every role, its limits, tool search off and the helper."""
    merged = claude_code(None, SETUP)
    assert json.loads(merged.text) == {"env": {
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8111", "ANTHROPIC_MODEL": "gpt-4.1",
        "ANTHROPIC_DEFAULT_OPUS_MODEL": "gpt-4.1", "ANTHROPIC_DEFAULT_SONNET_MODEL": "gpt-4.1",
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": "gpt-4.1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "16384", "CLAUDE_CODE_MAX_CONTEXT_TOKENS": "128000",
        "ENABLE_TOOL_SEARCH": "false"}, "apiKeyHelper": key_helper(True)}


def test_the_options_win_over_the_file():
    """--model and --small-model replace the file's models; without them,
    the file's are kept when models.yaml has them."""
    mine = json.dumps({"env": {"ANTHROPIC_MODEL": "gpt-5", "ANTHROPIC_DEFAULT_HAIKU_MODEL":
                               "hidden-mini"}})
    kept = json.loads(claude_code(mine, SETUP).text)["env"]
    assert (kept["ANTHROPIC_MODEL"], kept["ANTHROPIC_DEFAULT_SONNET_MODEL"],
            kept["ANTHROPIC_DEFAULT_HAIKU_MODEL"]) == ("gpt-5", "gpt-5", "hidden-mini")
    chosen = Setup(SETUP.base_url, SETUP.models, SETUP.auth, SETUP.limits, "gpt-4.1", "gpt-5")
    env = json.loads(claude_code(mine, chosen).text)["env"]
    assert (env["ANTHROPIC_MODEL"], env["ANTHROPIC_DEFAULT_OPUS_MODEL"],
            env["ANTHROPIC_DEFAULT_HAIKU_MODEL"]) == ("gpt-4.1", "gpt-4.1", "gpt-5")


@pytest.mark.parametrize("text, paste", [
    ("[]", True), ("{\n  // comment\n}\n", True), ('{"env": []}', False)])
def test_a_file_it_cannot_merge_into_is_refused(text, paste):
    """Not an object, JSON with comments, an env that is not an object: an
    error (the file is left as it is), with what to paste when it is the
    file itself that cannot be read."""
    with pytest.raises(ClientConfigError) as caught:
        claude_code(text, SETUP)
    assert ('"ANTHROPIC_BASE_URL": "http://127.0.0.1:8111"' in caught.value.paste) is paste


@pytest.mark.parametrize("base, root", [
    ("http://127.0.0.1:8111/v1", "http://127.0.0.1:8111"),
    ("https://[::1]:8443/v1", "https://[::1]:8443"),
    ("http://proxy.example/genai/v1/", "http://proxy.example/genai"),
])
def test_the_base_url_is_the_proxys_root(base, root):
    """Claude Code adds /v1/messages itself: the base URL ends before /v1."""
    assert root_url(base) == root
