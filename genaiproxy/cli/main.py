"""`genai-proxy`: the command line around the daemon.

    genai-proxy quickstart [--listen ...] [--models ...]   run it (mock upstream if none)
    genai-proxy doctor [--json] [--chat MODEL]              check the path to the upstream
    genai-proxy configure CLIENT [--print]                  set a client up for this proxy
    genai-proxy configure claude-code [--model ID] [--small-model ID]
    genai-proxy --version | --help

Built on Twisted's C{usage.Options} with sub-commands, as twistd's own
plugin options are: C{doctor} and C{configure} take the plugin's C{--listen}
and C{--models} with the same defaults and the same parsing, so that they
describe the daemon that this command line would start.  The daemon itself
still runs under twistd (C{twistd -n genaiproxy}); C{quickstart} starts it so.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.python import usage

from genaiproxy.config import DEFAULT_LISTEN, DEFAULT_MODELS, version_text

_LISTEN = ["listen", "l", DEFAULT_LISTEN,
           "Where the daemon listens, as for twistd genaiproxy --listen."]
_MODELS = ["models", "m", None,
           f"The daemon's models.yaml, as for --models [default: {DEFAULT_MODELS}]."]

CLIENTS = ("codex", "opencode", "open-webui", "vscode", "openai-env", "claude-code")
# The clients told which models to ask for by --model and --small-model.
CHOOSES_MODELS = ("claude-code",)


class DoctorOptions(usage.Options):
    """genai-proxy doctor: walk the path a request takes, step by step."""

    synopsis = "genai-proxy doctor [--json] [--chat MODEL] [--listen ...] [--models ...]"
    optFlags = [["json", None, "Print the result as one JSON document."]]
    optParameters = [_LISTEN, _MODELS,
                     ["chat", None, None, "Also send MODEL one tiny streamed chat completion."]]


class ConfigureOptions(usage.Options):
    """genai-proxy configure CLIENT: write CLIENT's configuration for this proxy."""

    synopsis = (f"genai-proxy configure {{{','.join(CLIENTS)}}} [--print] [--listen ...]\n"
                "       genai-proxy configure claude-code [--model ID] [--small-model ID] ...")
    optFlags = [["print", None, "Print the configuration instead of writing it."]]
    optParameters = [
        _LISTEN, _MODELS,
        ["model", None, None,
         "claude-code: the model id of models.yaml to ask for [default: the file's own, "
         "if models.yaml has it, else models.yaml's first]."],
        ["small-model", None, None,
         "claude-code: the model id for background work (Claude Code's Haiku) "
         "[default: the file's own, if models.yaml has it, else --model's]."],
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Options after the client name too (C{configure codex --print}), as
        GNU's getopt allows: Twisted's stops at the first argument that is not
        an option, so the client name is moved after the options."""
        args = list(sys.argv[1:] if options is None else options)
        i = 0
        while i < len(args) and args[i] != "--":
            if args[i] in ("-l", "--listen", "-m", "--models", "--model", "--small-model"):
                i += 2  # and its value
            elif not args[i].startswith("-"):
                args.append(args.pop(i))
                break
            else:
                i += 1
        super().parseOptions(args)

    # Twisted types parseArgs without arguments, yet calls it with the positional ones.
    def parseArgs(self, client: str) -> None:  # type: ignore[override]
        if client not in CLIENTS:
            raise usage.UsageError(f"unknown client {client!r}: one of {', '.join(CLIENTS)}")
        self["client"] = client

    def postOptions(self) -> None:
        if self["client"] not in CHOOSES_MODELS:
            for option in ("model", "small-model"):
                if self[option] is not None:
                    raise usage.UsageError(f"--{option} is for {', '.join(CHOOSES_MODELS)} only")


class QuickstartOptions(usage.Options):
    """Listed for --help; its arguments go to the twistd plugin as they are."""

    synopsis = "genai-proxy quickstart [--listen ENDPOINT] [--models PATH]"


class Options(usage.Options):
    """genai-proxy's sub-commands."""

    synopsis = "genai-proxy {quickstart,doctor,configure} [options]"
    subCommands = [
        ["quickstart", None, QuickstartOptions,
         "Run the proxy (in front of the bundled mock upstream when GENAI_BASE_URL is unset)."],
        ["doctor", None, DoctorOptions,
         "Check each step from this machine to the upstream; say what to fix."],
        ["configure", None, ConfigureOptions,
         f"Write a client's configuration for this proxy ({', '.join(CLIENTS)})."],
    ]

    def opt_version(self) -> None:
        """Print genai-proxy's version (and Twisted's and treq's) and exit."""
        print(version_text())
        raise SystemExit(0)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("a command is needed: quickstart, doctor or configure")


def main(argv: list[str] | None = None) -> None:
    """The C{genai-proxy} console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["quickstart"]:
        from genaiproxy.cli.quickstart import main as quickstart

        quickstart(args[1:])
        return
    options = Options()
    try:
        options.parseOptions(args)
    except usage.UsageError as e:
        sys.stderr.write(f"{options.getUsage()}\ngenai-proxy: {e}\n")
        raise SystemExit(2) from None
    except BrokenPipeError:  # `genai-proxy --help | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(0) from None
    command: Any = options.subOptions
    if options.subCommand == "doctor":
        from genaiproxy.cli.doctor.main import run as doctor

        raise SystemExit(doctor(command))
    from genaiproxy.cli.configure import run as configure

    raise SystemExit(configure(command))
