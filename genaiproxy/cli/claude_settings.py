"""Claude Code's settings.json for this proxy, merged into the user's.

Claude Code reads its connection from the C{env} object of
C{~/.claude/settings.json} (or C{$CLAUDE_CONFIG_DIR/settings.json}) and its
key from the command named by C{apiKeyHelper}.  What is merged in:

  - C{env}: C{ANTHROPIC_BASE_URL} (the proxy's root: Claude Code appends
    C{/v1/messages} itself), the models it asks for (C{ANTHROPIC_MODEL} and
    C{ANTHROPIC_DEFAULT_{OPUS,SONNET,HAIKU}_MODEL}, ids of models.yaml),
    C{CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC} (no telemetry, error reports
    or update checks: nothing but the proxy is called), and, from the main
    model's entry, C{CLAUDE_CODE_MAX_OUTPUT_TOKENS} and
    C{CLAUDE_CODE_MAX_CONTEXT_TOKENS} (for a model id it does not know,
    Claude Code assumes a window of 1M tokens and would not compact in
    time); and C{ENABLE_TOOL_SEARCH=false} unless the user set it: tool
    search defers tools to C{tool_reference} blocks that only Anthropic's
    servers expand, so over chat completions every tool is sent whole;
  - C{apiKeyHelper}: a shell command that prints L{TOKEN_VARIABLE}, so
    that the token is never written into the file;
  - the variables that would send Claude Code elsewhere or put another key
    before the helper's (C{ANTHROPIC_AUTH_TOKEN}, C{ANTHROPIC_API_KEY}, the
    C{CLAUDE_CODE_USE_*} providers) are taken out of C{env}, and named in
    the notes (the backup keeps them);
  - everything else of the user's is kept.

A model is chosen, for each variable, by the option given (C{--model} for
the main model, Opus and Sonnet; C{--small-model} for Haiku, the background
model), else the file's own value when it is a model id of models.yaml, else
the first model listed (Haiku, Opus and Sonnet: the main model).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from genaiproxy.cli.client_configs import (
    TOKEN_VARIABLE,
    UNUSED_KEY,
    ClientConfigError,
    Merged,
    Setup,
    json_member,
    json_object,
    json_text,
    token_notes,
)

MAIN = "ANTHROPIC_MODEL"
# The models Claude Code's aliases resolve to; Haiku runs its background work.
OPUS, SONNET, HAIKU = (f"ANTHROPIC_DEFAULT_{name}_MODEL" for name in ("OPUS", "SONNET", "HAIKU"))
MAX_OUTPUT = "CLAUDE_CODE_MAX_OUTPUT_TOKENS"
MAX_CONTEXT = "CLAUDE_CODE_MAX_CONTEXT_TOKENS"
TOOL_SEARCH = "ENABLE_TOOL_SEARCH"
# Variables that would send Claude Code to another provider, or whose key
# would be sent instead of the helper's.
ELSEWHERE = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK",
             "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY", "CLAUDE_CODE_USE_MANTLE",
             "CLAUDE_CODE_USE_ANTHROPIC_AWS", "CLAUDE_CODE_USE_ANTHROPIC_GOOGLE_CLOUD",
             "CLAUDE_CODE_USE_GATEWAY")


def key_helper(required: bool) -> str:
    """The C{apiKeyHelper} command: prints L{TOKEN_VARIABLE}.  When the
    proxy wants a token and the variable is unset, the shell stops with a
    message that Claude Code shows; when it wants none, any value works."""
    if required:
        expansion = f"${{{TOKEN_VARIABLE}:?set it to the token of genai-proxy}}"
    else:
        expansion = f"${{{TOKEN_VARIABLE}:-{UNUSED_KEY}}}"
    return f"printf '%s' \"{expansion}\""


def root_url(base_url: str) -> str:
    """The proxy's URL as C{ANTHROPIC_BASE_URL}: without C{/v1}, which
    Claude Code adds (C{POST /v1/messages?beta=true})."""
    return base_url.removesuffix("/").removesuffix("/v1")


def claude_code(existing: str | None, setup: Setup) -> Merged:
    """Claude Code's settings.json, with the proxy's C{env} and
    C{apiKeyHelper}; a file with comments is refused, never rewritten."""
    if not setup.models:
        raise ClientConfigError("has no models to set: models.yaml lists none")
    fresh = _merge({}, setup, [])
    data = json_object(existing, "settings.json", json.dumps(fresh, indent=2) + "\n")
    notes: list[str] = []
    merged = _merge(copy.deepcopy(data), setup, notes)
    return Merged(json_text(existing, data, merged, 2),
                  notes + token_notes("Claude Code's apiKeyHelper prints", setup.auth))


def _merge(data: dict[str, Any], setup: Setup, notes: list[str]) -> dict[str, Any]:
    env = json_member(data, "env", "env")
    known = set(setup.limits) or set(setup.models)

    def pick(name: str, given: str, default: str) -> str:
        current = env.get(name)
        if given or current == default:
            return given or default
        if isinstance(current, str) and current in known:
            return current
        if current is not None:
            notes.append(f"env.{name} was {str(current)!r}, not a model id of models.yaml: "
                         f"now {default!r}")
        return default

    main = pick(MAIN, setup.model, setup.models[0])
    chosen = {MAIN: main, OPUS: pick(OPUS, setup.model, main),
              SONNET: pick(SONNET, setup.model, main), HAIKU: pick(HAIKU, setup.small_model, main)}
    values = {"ANTHROPIC_BASE_URL": root_url(setup.base_url), **chosen,
              "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}
    # Those of the main loop's models (not Haiku's: the proxy caps its answers).
    loop = [setup.limits[chosen[name]] for name in (MAIN, OPUS, SONNET)
            if chosen[name] in setup.limits]
    caps = [limits.max_output_tokens for limits in loop if limits.max_output_tokens]
    windows = [limits.context_window for limits in loop if limits.context_window]
    for name, key, found in ((MAX_OUTPUT, "max_output_tokens", caps),
                             (MAX_CONTEXT, "context_window", windows)):
        if found:
            values[name] = str(min(found))
        elif name in env:  # the user's, or from a model chosen before: kept
            notes.append(f"env.{name}={str(env[name])!r} kept: models.yaml gives {main!r} no "
                         f"{key}; check that it is {main!r}'s")
        elif name == MAX_CONTEXT:
            notes.append(f"models.yaml gives {main!r} no context_window: Claude Code assumes "
                         "1M tokens for a model it does not know, and compacts too late; set "
                         "it there and run this again")
    env.update(values)
    env.setdefault(TOOL_SEARCH, "false")  # a value of the user's is kept
    for name in ELSEWHERE:
        if name in env:
            del env[name]
            notes.append(f"env.{name} taken out: it would take the place of the proxy "
                         "(it is in the backup)")
    helper = key_helper(setup.auth.required)
    previous = data.get("apiKeyHelper")
    if previous != helper:
        data["apiKeyHelper"] = helper
        if previous is not None:
            notes.append("apiKeyHelper replaced by one that prints "
                         f"{TOKEN_VARIABLE} (the previous one is in the backup)")
    return data
