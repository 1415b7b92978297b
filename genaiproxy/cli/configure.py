"""genai-proxy configure CLIENT: write a client's configuration for this proxy.

The proxy's address comes from C{--listen}, parsed as the twistd plugin
parses it; how clients authenticate, from the daemon's own settings
(AUTH_TOKEN, AUTH_TOKEN_FILE, AUTH_TOKENS_FILE, checked by L{load_config});
the model ids, from C{--models} (those not C{hidden}; for claude-code's
C{--model} and C{--small-model}, any id of the file, with its
C{max_output_tokens} and C{context_window}).  What goes into each client's
file is L{genaiproxy.cli.client_configs}' (and, for Claude Code,
L{genaiproxy.cli.claude_settings}'); this module finds the file, merges,
backs up and writes.

Where each client's file is:

    codex        $CODEX_HOME/config.toml (default ~/.codex/config.toml)
    opencode     $XDG_CONFIG_HOME/opencode/opencode.json (default ~/.config/...)
    vscode       VS Code's user settings.json ($XDG_CONFIG_HOME/Code/User on Linux)
    open-webui   $XDG_CONFIG_HOME/genai-proxy/open-webui.env (mode 0600)
    openai-env   $XDG_CONFIG_HOME/genai-proxy/openai.env
    claude-code  $CLAUDE_CONFIG_DIR/settings.json (default ~/.claude/settings.json)

A file that changes is first copied to C{FILE.YYYYmmdd-HHMMSS.bak} beside
it, then replaced at once (a temporary file renamed over it; a symbolic link
is followed, not replaced).  A file that would not change is not written:
a second run reports it unchanged and makes no backup.  With C{--print}
nothing is written: the configuration goes to stdout, the notes to stderr.
"""

from __future__ import annotations

import ipaddress
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from genaiproxy.cli import client_configs as configs
from genaiproxy.cli.claude_settings import claude_code
from genaiproxy.cli.client_configs import Auth, ClientConfigError, Merged, ModelLimits, Setup
from genaiproxy.config import (
    DEFAULT_MODELS,
    ConfigError,
    ModelsFileError,
    SecretError,
    load_config,
    parse_listen,
    parse_models_file,
    parse_tokens_file,
    read_secret_text,
)

# The variables of the daemon that say how clients authenticate.
AUTH_VARIABLES = ("AUTH_TOKEN", "AUTH_TOKEN_FILE", "AUTH_TOKENS_FILE", "CREDENTIALS_DIRECTORY")
# The models.yaml of the installed service (deploy/genai-proxy-native.service).
SERVICE_MODELS = "/opt/genai-proxy/models.yaml"
# The clients whose configuration is made from the model ids, and those of
# them that cannot be configured without one.
NEEDS_MODELS = ("codex", "opencode", "vscode", "open-webui", "claude-code")
MODELS_REQUIRED = ("opencode", "vscode", "claude-code")
# The clients whose file may hold the token: written with mode 0600.
PRIVATE = ("open-webui",)


class ConfigureError(Exception):
    """The configuration cannot be made; the message says why (never a secret)."""


def run(options: Any) -> int:
    """Write (or print) the configuration of C{options["client"]}; the exit status."""
    client = options["client"]
    try:
        return _configure(client, options, os.environ)
    except ConfigureError as e:
        sys.stderr.write(f"genai-proxy configure {client}: {e}\n")
        return 1
    except BrokenPipeError:  # stdout closed early (| head): no traceback at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _configure(client: str, options: Any, env: Mapping[str, str]) -> int:
    notes: list[str] = []
    entries: list[dict[str, Any]] = []
    given = options["models"]  # None: the default, which may be missing
    path = given or DEFAULT_MODELS
    if client in NEEDS_MODELS:
        entries = model_entries(path, notes, given is not None)
    models = visible(entries)
    if not models and client in MODELS_REQUIRED:
        raise ConfigureError("no models to configure: " + (
            notes[0] if notes else f"{os.path.abspath(path)} lists none"))
    limits = model_limits(entries)
    chosen = {option: options.get(option) or "" for option in ("model", "small-model")}
    for option, model_id in chosen.items():
        if model_id and model_id not in limits:
            raise ConfigureError(f"--{option} {model_id!r} is not a model id of "
                                 f"{os.path.abspath(path)} ({', '.join(limits)})")
    setup = Setup(client_url(options["listen"]), models, read_auth(env, client), limits,
                  chosen["model"], chosen["small-model"])
    if options["print"]:
        merged = _merge(client, None, setup, reveal=False)
        sys.stdout.write(configs.vscode_snippet(setup) if client == "vscode" else merged.text)
        _show(notes + merged.notes, sys.stderr)
        return 0
    path = target(client, env)
    old = _read(path)
    try:
        merged = _merge(client, old, setup, reveal=True)
    except ClientConfigError as e:
        if e.paste:
            sys.stdout.write(e.paste)
        raise ConfigureError(f"{path} {e}") from None
    if old is not None and merged.text == old:
        print(f"{path} unchanged")
    else:
        backup = _write(path, merged.text, old is not None, private=client in PRIVATE)
        print(f"wrote {path}" + (f" (the previous one is in {backup.name})" if backup else ""))
    _show(notes + merged.notes + _usage(client, path), sys.stdout)
    return 0


def _usage(client: str, path: Path) -> list[str]:
    """How the written file is put to use, when it is not the client's own."""
    if client == "openai-env":
        return ["load it into your shell (or your ~/.profile):", f"    . {path}"]
    if client == "open-webui":
        return ["give it to Open WebUI: docker run --env-file "
                f"{path} --network=host ... (to reach 127.0.0.1),",
                f"or systemd's EnvironmentFile={path}, or: set -a; . {path}; set +a"]
    return []


_MERGERS: dict[str, Callable[[str | None, Setup], Merged]] = {
    "codex": configs.codex, "opencode": configs.opencode, "vscode": configs.vscode,
    "openai-env": configs.openai_env, "claude-code": claude_code,
}


def _merge(client: str, old: str | None, setup: Setup, reveal: bool) -> Merged:
    if client == "open-webui":
        return configs.open_webui(old, setup, reveal)
    return _MERGERS[client](old, setup)


def _show(notes: list[str], stream: Any) -> None:
    for note in notes:
        stream.write(note + "\n")


# --- what the configuration is made from ---------------------------------------------

def client_url(listen: str) -> str:
    """The proxy's C{/v1} URL for a client on this machine, from the
    daemon's C{--listen} endpoint description (C{tcp:PORT:interface=ADDR},
    C{tcp6:...} or C{ssl:...}); an address of all interfaces means loopback."""
    try:
        endpoint = parse_listen(listen)
    except ValueError:
        endpoint = None
    if endpoint is None or endpoint.kind not in ("tcp", "tcp6", "ssl"):
        raise ConfigureError(
            f"--listen {listen!r}: clients need a TCP port; give the daemon's address as "
            "--listen tcp:PORT:interface=ADDR (or ssl:PORT:...)")
    port = endpoint.port
    if port is None or not 0 < port < 65536:
        raise ConfigureError(f"--listen {listen!r}: the port must be a number from 1 to 65535")
    kind, host = endpoint.kind, endpoint.bound_interface
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None  # a host name
    if address is not None and address.is_unspecified:
        host = "::1" if address.version == 6 else "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if kind == 'ssl' else 'http'}://{host}:{port}/v1"


def read_auth(env: Mapping[str, str], client: str) -> Auth:
    """How clients authenticate, from the daemon's settings in C{env}, checked
    by the daemon's own L{load_config}.  From an AUTH_TOKENS_FILE, the token
    named after C{client} (e.g. C{open-webui:}) is taken when there is one."""
    given = {name: env[name] for name in AUTH_VARIABLES if name in env}
    # The upstream settings are not this command's concern: neutral values.
    upstream = {"GENAI_SUBSCRIPTION_NAME": "", "GENAI_API_KEY": "",
                "GENAI_BASE_URL": "http://127.0.0.1/"}
    try:
        config = load_config({**upstream, **given})
    except ConfigError as e:
        raise ConfigureError(str(e)) from None
    if config.auth_tokens_file:
        path = config.auth_tokens_file
        try:
            tokens = parse_tokens_file(read_secret_text(path), path)
        except SecretError as e:
            raise ConfigureError(f"AUTH_TOKENS_FILE: {e}") from None
        return Auth(True, "AUTH_TOKENS_FILE", path, tokens.get(client, ""))
    if config.auth_token:
        source = "AUTH_TOKEN_FILE" if config.auth_token_file else "AUTH_TOKEN"
        return Auth(True, source, config.auth_token_file, config.auth_token)
    return Auth()


def visible(entries: list[dict[str, Any]]) -> tuple[str, ...]:
    """The ids of C{entries} that C{/v1/models} lists (not C{hidden}), in order."""
    ids = [entry["id"] for entry in entries if entry.get("hidden") is not True]
    return tuple(dict.fromkeys(ids))


def model_limits(entries: list[dict[str, Any]]) -> dict[str, ModelLimits]:
    """Every id of C{entries}, hidden ones too, with its limits (the first
    entry of an id repeated)."""
    limits: dict[str, ModelLimits] = {}
    for entry in entries:
        limits.setdefault(entry["id"], ModelLimits(entry.get("max_output_tokens"),
                                                   entry.get("context_window")))
    return limits


def model_entries(path: str, notes: list[str], given: bool = True) -> list[dict[str, Any]]:
    """The model entries of models.yaml at C{path}, checked as the daemon
    checks them.  As for the daemon, a path not C{given} (the default) may
    be missing: then none, and a note says so."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        if given:
            raise ConfigureError(f"--models {path}: no such file") from None
        notes.append(f"no models.yaml at {os.path.abspath(path)}, so no models listed: "
                     f"give --models PATH (the installed service's is {SERVICE_MODELS})")
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigureError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        entries, _ = parse_models_file(text, 0)
    except ModelsFileError as e:
        raise ConfigureError(f"{os.path.abspath(path)}: {e}") from None
    return entries


def target(client: str, env: Mapping[str, str]) -> Path:
    """The file that holds C{client}'s configuration."""
    home = Path(env.get("HOME") or Path.home())
    xdg = env.get("XDG_CONFIG_HOME", "")
    config_home = Path(xdg) if os.path.isabs(xdg) else home / ".config"
    if client == "codex":
        codex_home = env.get("CODEX_HOME", "")
        return (Path(codex_home) if codex_home else home / ".codex") / "config.toml"
    if client == "claude-code":
        claude_home = env.get("CLAUDE_CONFIG_DIR", "").strip()
        return (Path(claude_home) if claude_home else home / ".claude") / "settings.json"
    if client == "opencode":
        directory = config_home / "opencode"
        if not (directory / "opencode.json").exists() and (directory / "opencode.jsonc").exists():
            return directory / "opencode.jsonc"
        return directory / "opencode.json"
    if client == "vscode":
        if sys.platform == "darwin":
            return home / "Library" / "Application Support" / "Code" / "User" / "settings.json"
        if sys.platform == "win32" and env.get("APPDATA"):
            return Path(env["APPDATA"]) / "Code" / "User" / "settings.json"
        return config_home / "Code" / "User" / "settings.json"
    return config_home / "genai-proxy" / ("openai.env" if client == "openai-env" else f"{client}.env")


# --- files ------------------------------------------------------------------------------

def _read(path: Path) -> str | None:
    """The text of C{path}, C{None} when it does not exist."""
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise ConfigureError(f"{path} is not UTF-8 text: left untouched") from None
    except OSError as e:
        raise ConfigureError(f"cannot read {path}: {e.strerror or e}") from None


def _write(path: Path, text: str, exists: bool, private: bool) -> Path | None:
    """Replace C{path} with C{text} (after a backup when it C{exists});
    C{private}: mode 0600.  The backup's path, if one was made."""
    real = path.resolve() if exists else path  # through a symbolic link, as an editor writes
    try:
        real.parent.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
        if exists:
            mode = 0o600 if private else real.stat().st_mode & 0o7777
            backup = _backup(real, 0o600 if private else mode)
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode, backup = 0o600 if private else 0o666 & ~umask, None
        temporary = real.with_name(f".{real.name}.genai-proxy-{os.getpid()}.tmp")
        try:
            _create(temporary, text.encode("utf-8"), mode)
            os.replace(temporary, real)
        finally:
            if temporary.exists():
                temporary.unlink()
    except OSError as e:
        raise ConfigureError(f"cannot write {path}: {e.strerror or e}") from None
    return backup


def _backup(real: Path, mode: int) -> Path:
    """A copy of C{real} beside it, named after the time; never over another file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stat = real.stat()
    data = real.read_bytes()
    for n in range(1, 100):
        backup = real.with_name(f"{real.name}.{stamp}{'' if n == 1 else f'-{n}'}.bak")
        try:
            _create(backup, data, mode)
        except FileExistsError:
            continue
        os.utime(backup, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        return backup
    raise ConfigureError(f"too many backups of {real} this second")


def _create(path: Path, data: bytes, mode: int) -> None:
    """Write a new file C{path} with C{mode} from the start (no moment
    with a wider one)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(descriptor, mode)  # the umask narrowed it
        with os.fdopen(descriptor, "wb", closefd=False) as f:
            f.write(data)
            f.flush()
            os.fsync(descriptor)
    finally:
        os.close(descriptor)
