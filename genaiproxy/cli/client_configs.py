"""What each client's configuration holds for this proxy, merged into what
the user already has.

Pure functions, one per client: each takes the text of the client's existing
file (C{None} when there is none) and the L{Setup}, and gives the new text
(the very same text when nothing needs to change) with notes for the user.
Reading, backing up and writing the files is L{genaiproxy.cli.configure}'s.

What is merged in, and what of the user's is kept:

  - the proxy's own entries (the C{genai} provider, the Copilot models of
    models.yaml, the connection variables) are brought up to date; keys the
    user added inside them are kept;
  - everything else (other providers, settings, comments in TOML and env
    files) is left as it is;
  - the proxy becomes the client's default provider (codex's
    C{model_provider}, opencode's C{model} when it names another provider):
    that is what the command is run for; the previous value is named in the
    notes and kept in the backup;
  - a model the user chose within the proxy is kept, even when models.yaml
    does not list it (the proxy forwards it as it is).

A token is referenced through the environment variable L{TOKEN_VARIABLE}
wherever the client can read one; only Open WebUI's env file holds it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tomlkit
from tomlkit.items import InlineTable, Table

from genaiproxy.cli.env_files import PLAIN_PUNCTUATION, env_value, merge_env

TOKEN_VARIABLE = "GENAI_PROXY_TOKEN"
PROVIDER = "genai"
PROVIDER_NAME = "genai-proxy"
VSCODE_KEY = "github.copilot.chat.customOAIModels"
OPENCODE_SCHEMA = "https://opencode.ai/config.json"
DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"
UNUSED_KEY = "unused"  # the key a client sends when the proxy asks for none


class ClientConfigError(ValueError):
    """An existing file cannot be merged into; the message says why, and
    C{paste} (when not empty) is what to put into it by hand."""

    def __init__(self, message: str, paste: str = "") -> None:
        super().__init__(message)
        self.paste = paste


@dataclass(frozen=True)
class Auth:
    """How clients authenticate to the proxy, as its settings say."""

    required: bool = False
    # The setting the token comes from: AUTH_TOKEN, AUTH_TOKEN_FILE or
    # AUTH_TOKENS_FILE (empty when none is set), and the file it names.
    source: str = ""
    path: str = ""
    # The token itself, when known: only a client that cannot read it from
    # the environment gets it (Open WebUI's env file).
    token: str = field(default="", repr=False)


@dataclass(frozen=True)
class ModelLimits:
    """What models.yaml says of a model's size: its C{max_output_tokens}
    and C{context_window} (C{None} where it says nothing)."""

    max_output_tokens: int | None = None
    context_window: int | None = None


@dataclass(frozen=True)
class Setup:
    """What every client's configuration is made from.

    @ivar limits: every model id of models.yaml (hidden ones too), with
        its limits: the ids a client may be told to ask for.
    @ivar model: the model the user asked for (C{--model}), or empty.
    @ivar small_model: the model the user asked for background work
        (C{--small-model}), or empty.
    """

    base_url: str  # the proxy's /v1 URL, as a client on this machine reaches it
    models: tuple[str, ...] = ()  # the visible model ids of models.yaml, in order
    auth: Auth = Auth()
    limits: Mapping[str, ModelLimits] = field(default_factory=dict)
    model: str = ""
    small_model: str = ""


@dataclass
class Merged:
    """The new text of a client's file and what the user should know."""

    text: str
    notes: list[str] = field(default_factory=list)


# --- codex: $CODEX_HOME/config.toml -------------------------------------------------

def codex(existing: str | None, setup: Setup) -> Merged:
    """Codex CLI's config.toml with the C{genai} provider (Responses API,
    token from L{TOKEN_VARIABLE}) as its C{model_provider}; comments and
    formatting of the rest are kept (tomlkit)."""
    try:
        document = tomlkit.parse(existing or "")
    except ValueError as e:  # tomlkit's ParseError
        raise ClientConfigError(f"is not valid TOML ({e})") from None
    notes: list[str] = []
    model = document.get("model")
    if model is None and setup.models:
        document["model"] = setup.models[0]
    elif model is None:
        notes.append("no models in models.yaml: codex will ask the proxy for its own default "
                     "model; set `model = \"...\"` in the file")
    elif setup.models and model not in setup.models:
        notes.append(f"model {str(model)!r} (yours, kept) is not in models.yaml "
                     f"({', '.join(setup.models)}): the proxy forwards it as it is")
    previous = document.get("model_provider")
    if previous != PROVIDER:
        document["model_provider"] = PROVIDER
        if previous is not None:
            notes.append(f"model_provider was {str(previous)!r}, now {PROVIDER!r} "
                         "(set it back to leave the proxy; other providers are kept)")
    providers = document.get("model_providers")
    if providers is None:
        providers = tomlkit.table(is_super_table=True)
        document["model_providers"] = providers
    elif not isinstance(providers, dict):
        raise ClientConfigError("has a model_providers that is not a table")
    genai = providers.get(PROVIDER)
    added = genai is None
    if genai is None:
        genai = tomlkit.inline_table() if isinstance(providers, InlineTable) else tomlkit.table()
        providers[PROVIDER] = genai
    elif not isinstance(genai, dict):
        raise ClientConfigError(f"has a model_providers.{PROVIDER} that is not a table")
    if "name" not in genai:
        genai["name"] = PROVIDER_NAME
    for key, value in (("base_url", setup.base_url), ("wire_api", "responses"),
                       ("env_key", TOKEN_VARIABLE)):
        if genai.get(key) != value:  # an unchanged value keeps its comment
            genai[key] = value
    if added and isinstance(genai, Table) and list(document)[-1] != "model_providers":
        genai.add(tomlkit.nl())  # a blank line before the table that follows it
    return Merged(document.as_string(),
                  notes + token_notes("codex takes its key from", setup.auth))


# --- opencode: $XDG_CONFIG_HOME/opencode/opencode.json ---------------------------

def opencode(existing: str | None, setup: Setup) -> Merged:
    """opencode's JSON config with an C{@ai-sdk/openai-compatible} provider
    C{genai} listing the models of models.yaml."""
    if not setup.models:
        raise ClientConfigError("has no models to list: models.yaml lists none")
    fresh = _opencode_merge({}, setup, [])
    data = json_object(existing, "opencode.json", json.dumps(fresh, indent=2) + "\n")
    notes: list[str] = []
    merged = _opencode_merge(copy.deepcopy(data), setup, notes)
    return Merged(json_text(existing, data, merged, 2),
                  notes + token_notes("opencode takes its key from", setup.auth))


def _opencode_merge(data: dict[str, Any], setup: Setup, notes: list[str]) -> dict[str, Any]:
    if not data:  # a new file: the default model first, as people write it
        data.update({"$schema": OPENCODE_SCHEMA, "model": f"{PROVIDER}/{setup.models[0]}"})
    data.setdefault("$schema", OPENCODE_SCHEMA)
    genai = json_member(json_member(data, "provider", "provider"), PROVIDER, f"provider.{PROVIDER}")
    genai["npm"] = "@ai-sdk/openai-compatible"
    genai.setdefault("name", PROVIDER_NAME)
    options = json_member(genai, "options", f"provider.{PROVIDER}.options")
    options["baseURL"] = setup.base_url
    options["apiKey"] = f"{{env:{TOKEN_VARIABLE}}}"
    models = json_member(genai, "models", f"provider.{PROVIDER}.models")
    for model_id in setup.models:
        models.setdefault(model_id, {"name": model_id})
    model = data.get("model")
    if not isinstance(model, str) or not model.startswith(PROVIDER + "/"):
        data["model"] = f"{PROVIDER}/{setup.models[0]}"
        if model is not None:
            notes.append(f"model was {model!r}, now {data['model']!r} (the proxy's first model)")
    elif model[len(PROVIDER) + 1:] not in setup.models:
        notes.append(f"model {str(model)!r} (yours, kept) is not in models.yaml: "
                     "the proxy forwards it as it is")
    return data


# --- vscode: Code/User/settings.json ------------------------------------------------

def vscode_entries(setup: Setup, existing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copilot's custom OpenAI-compatible models, one per model id, over
    the user's own C{existing} entries (their tweaks kept)."""
    entries = dict(existing or {})
    for model_id in setup.models:
        mine = entries.get(model_id)
        defaults = {"name": f"genai {model_id}", "url": setup.base_url, "toolCalling": True,
                    "vision": False, "maxInputTokens": 128000, "maxOutputTokens": 4096}
        entries[model_id] = {**defaults, **(mine if isinstance(mine, dict) else {}),
                             "url": setup.base_url, "requiresAPIKey": setup.auth.required}
    return entries


def vscode_snippet(setup: Setup) -> str:
    """The C{"github.copilot.chat.customOAIModels": {...}} member to paste
    into settings.json."""
    return f"{json.dumps(VSCODE_KEY)}: {json.dumps(vscode_entries(setup), indent=4)}\n"


def vscode(existing: str | None, setup: Setup) -> Merged:
    """VS Code's user settings.json with Copilot's custom models for the
    proxy; a file with comments (JSONC) is refused, never rewritten."""
    if not setup.models:
        raise ClientConfigError("has no models to add: models.yaml lists none")
    data = json_object(existing, "settings.json", vscode_snippet(setup))
    merged = copy.deepcopy(data)
    entries = merged.get(VSCODE_KEY)
    if entries is not None and not isinstance(entries, dict):
        raise ClientConfigError(f"has a {VSCODE_KEY} that is not an object", vscode_snippet(setup))
    merged[VSCODE_KEY] = vscode_entries(setup, entries)
    if setup.auth.required:
        notes = ["Copilot asks for the key of these models: enter the proxy's token "
                 f"({_where(setup.auth)})"]
    else:
        notes = ["requiresAPIKey is false: the proxy has no AUTH_TOKEN here"]
    notes.append("Copilot uses /chat/completions unless its 'Use Responses API' setting is on")
    return Merged(json_text(existing, data, merged, 4), notes)


# --- env files: Open WebUI's, and the shell's for the openai SDKs -----------------

def open_webui(existing: str | None, setup: Setup, reveal: bool = True) -> Merged:
    """Open WebUI's environment (an env file for C{docker run --env-file},
    systemd's C{EnvironmentFile=} or C{set -a; . FILE}): the OpenAI
    connection and the RAG embeddings through the proxy.  Open WebUI needs
    the key's value: the token is written only when known and C{reveal}."""
    auth = setup.auth
    notes: list[str] = []
    if not auth.required:
        key, known = UNUSED_KEY, False
        notes.append(f"the key is {UNUSED_KEY!r} unless you gave one: the proxy has no "
                     "AUTH_TOKEN, AUTH_TOKEN_FILE or AUTH_TOKENS_FILE here, so any value works")
    elif auth.token and reveal:
        key, known = env_value(auth.token), True
        notes.append("it holds the proxy's token: mode 0600 (only you can read it)")
        if key != auth.token:
            notes.append("the token holds characters a shell reads (such as $, a space or a "
                         "quote): it is written in double quotes, which a shell (`set -a; . "
                         "FILE`) and systemd's EnvironmentFile= take away, but docker and podman "
                         "run --env-file keep as part of the token; for those, give Open WebUI a "
                         f"token of letters, digits and {PLAIN_PUNCTUATION} only (a token "
                         "named 'open-webui' in AUTH_TOKENS_FILE)")
    else:
        known = False
        key = "<a token of AUTH_TOKENS_FILE>" if auth.source == "AUTH_TOKENS_FILE" else "<AUTH_TOKEN>"
        if reveal:
            notes.append(f"OPENAI_API_KEY and RAG_OPENAI_API_KEY there: put a token of "
                         f"{_where(auth)} in place of {key} (or give Open WebUI a token named "
                         "'open-webui' in that file, and run this again)")
        else:
            notes.append(f"replace {key} with the proxy's token ({_where(auth)})")
    embeddings = [m for m in setup.models if "embedding" in m]
    values = [
        ("OPENAI_API_BASE_URL", setup.base_url, True),
        ("OPENAI_API_KEY", key, known),
        ("ENABLE_OLLAMA_API", "False", False),
        ("RAG_EMBEDDING_ENGINE", "openai", True),
        ("RAG_OPENAI_API_BASE_URL", setup.base_url, True),
        ("RAG_OPENAI_API_KEY", key, known),
        ("RAG_EMBEDDING_MODEL",
         env_value(embeddings[0]) if embeddings else DEFAULT_EMBEDDING_MODEL, False),
    ]
    header = ["# Open WebUI -> genai-proxy: its OpenAI connection and RAG embeddings.",
              "# Written by `genai-proxy configure open-webui`; use with docker run --env-file,",
              "# systemd's EnvironmentFile=, or `set -a; . FILE; set +a` before open-webui serve.",
              "# ENABLE_OLLAMA_API=False: set True if you also run Ollama beside it."]
    return Merged(merge_env(existing, values, header, export=False), notes)


def openai_env(existing: str | None, setup: Setup) -> Merged:
    """C{OPENAI_BASE_URL} and C{OPENAI_API_KEY} for a POSIX shell; the key
    is read from L{TOKEN_VARIABLE} when the shell sources the file."""
    fallback = "" if setup.auth.required else f":-{UNUSED_KEY}"
    values = [("OPENAI_BASE_URL", setup.base_url, True),
              ("OPENAI_API_KEY", f'"${{{TOKEN_VARIABLE}{fallback}}}"', True)]
    header = ["# The openai SDKs (Python, Node) and other OpenAI tools -> genai-proxy.",
              "# Written by `genai-proxy configure openai-env`; load it into a shell with `. FILE`."]
    return Merged(merge_env(existing, values, header, export=True),
                  token_notes("the file sets OPENAI_API_KEY from", setup.auth))


# --- shared --------------------------------------------------------------------------

def token_notes(who: str, auth: Auth) -> list[str]:
    """What to export so that a client sends the proxy's token; C{who}
    starts the sentence (C{"codex takes its key from"})."""
    if not auth.required:
        return [f"{who} {TOKEN_VARIABLE}; the proxy has no AUTH_TOKEN, AUTH_TOKEN_FILE or "
                "AUTH_TOKENS_FILE here, so any value works:",
                f"    export {TOKEN_VARIABLE}={UNUSED_KEY}"]
    if auth.source == "AUTH_TOKEN":
        value = '"$AUTH_TOKEN"'
    elif auth.source == "AUTH_TOKEN_FILE":
        value = f'"$(cat {auth.path})"'
    else:
        value = f"<your token in {auth.path}>"
    return [f"{who} {TOKEN_VARIABLE}, which must hold the proxy's token ({auth.source}):",
            f"    export {TOKEN_VARIABLE}={value}"]


def _where(auth: Auth) -> str:
    return auth.source + (f" {auth.path}" if auth.path else "")


def json_object(existing: str | None, name: str, paste: str) -> dict[str, Any]:
    """The object in C{existing} JSON text ({} when empty or missing)."""
    if existing is None or not existing.strip():
        return {}
    try:
        data = json.loads(existing)
    except ValueError as e:
        raise ClientConfigError(
            f"is not plain JSON ({e}); comments or trailing commas are not rewritten, "
            "so it is left untouched: add this yourself", paste) from None
    if not isinstance(data, dict):
        raise ClientConfigError(f"does not hold a JSON object, as {name} should", paste)
    return data


def json_member(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """C{parent[key]}, an object (made empty when missing)."""
    value = parent.setdefault(key, {})
    if not isinstance(value, dict):
        raise ClientConfigError(f"has a {where} that is not an object")
    return value


def json_text(existing: str | None, before: dict[str, Any], after: dict[str, Any],
               indent: int) -> str:
    """C{existing} itself when nothing changed, else C{after} indented as
    C{existing} is (or by C{indent})."""
    if existing is not None and existing.strip() and before == after:
        return existing
    found = re.search(r"^([ \t]+)\S", existing or "", re.MULTILINE)
    unit: int | str = indent
    if found:
        unit = "\t" if found.group(1).startswith("\t") else len(found.group(1))
    return json.dumps(after, indent=unit, ensure_ascii=False) + "\n"
