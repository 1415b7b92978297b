"""The proxy's configuration: read once from the environment, validated, frozen.

Every setting the daemon uses lives in one L{Config}, built by L{load_config}
from the table of L{genaiproxy.config.settings}; nothing else reads
C{os.environ}.  Each setting is read and checked alone by its kind; what
only several settings together can say (a key and its header, a token in
two places) is checked here.  Secrets are kept out of C{repr} and shown
masked in the start-up summary.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from genaiproxy.config.credentials import (
    SecretError,
    parse_header_secret,
    parse_tokens_file,
    read_secret_text,
)
from genaiproxy.config.kinds import ConfigError, Secret, is_header_value, mask, strip_userinfo
from genaiproxy.config.settings import BY_NAME, SETTINGS, Config, Setting

__all__ = ["Config", "ConfigError", "load_config", "mask", "strip_userinfo"]


def load_config(env: Mapping[str, str]) -> Config:
    """Build a L{Config} from environment variables, or raise L{ConfigError}.

    The three upstream variables must be present.  The subscription name and
    key may be set to empty strings together (an upstream such as Ollama that
    needs no key): then no header is injected.
    """
    values: dict[str, Any] = {item.attribute: item.read(env) for item in SETTINGS
                              if not isinstance(item.kind, Secret)}
    for item in SETTINGS:
        if isinstance(item.kind, Secret):
            values[item.attribute], values[item.kind.file_field] = _secret(env, item, values)
    subscription_name, api_key = values["subscription_name"], values["api_key"]
    auth_tokens_file = values["auth_tokens_file"]
    if auth_tokens_file:
        if values["auth_token"]:
            raise ConfigError("AUTH_TOKENS_FILE and AUTH_TOKEN (or AUTH_TOKEN_FILE) are both set: "
                              "use one (put that token in the file, under a name)",
                              "AUTH_TOKENS_FILE")
        try:
            parse_tokens_file(read_secret_text(auth_tokens_file), auth_tokens_file)
        except SecretError as e:
            raise ConfigError(f"AUTH_TOKENS_FILE: {e}", "AUTH_TOKENS_FILE") from None
    if bool(subscription_name) != bool(api_key):
        missing = "GENAI_API_KEY" if subscription_name else "GENAI_SUBSCRIPTION_NAME"
        raise ConfigError(
            f"{missing} is empty; set both GENAI_SUBSCRIPTION_NAME and "
            "GENAI_API_KEY, or leave both empty for an upstream without a key", missing)
    if not is_header_value(api_key):
        raise ConfigError(
            "GENAI_API_KEY contains a line break, NUL or a character that cannot go in a header",
            "GENAI_API_KEY")
    return Config(**values)


def _secret(env: Mapping[str, str], item: Setting, values: Mapping[str, Any]) -> tuple[str, str]:
    """A secret from its variable, from the file its C{_FILE} setting names,
    or from systemd's C{$CREDENTIALS_DIRECTORY}: C{(value, file)}, the file
    empty when it came from the variable.  Unset, it is its default (or an
    error, when required)."""
    assert isinstance(item.kind, Secret)
    name, credential = item.name, item.kind.credential
    file_setting = next(other.name for other in SETTINGS if other.attribute == item.kind.file_field)
    path = values[item.kind.file_field]
    if path and name in env:
        raise ConfigError(f"{name} and {file_setting} are both set: use one", name)
    if not path:
        if name in env:
            return env[name].strip(), ""
        directory = values["credentials_directory"]
        if not directory or not os.path.isfile(os.path.join(directory, credential)):
            if item.required:
                raise ConfigError(f"{name} is required but not set (or {file_setting}, or a "
                                  f"{credential} credential in $CREDENTIALS_DIRECTORY)", name)
            return item.default, ""
        path, file_setting = os.path.join(directory, credential), f"credential {credential}"
    try:
        return parse_header_secret(read_secret_text(path), path), path
    except SecretError as e:
        raise ConfigError(f"{file_setting}: {e}",
                          file_setting if file_setting in BY_NAME else name) from None

