"""C{genai-proxy doctor}: walk the path a request takes, say what breaks it.

It reads the daemon's own configuration (the environment, models.yaml,
the secret files) and checks, one step at a time and for every upstream:
the configuration; the listen address; name resolution (and whether
HTTPS_PROXY applies, by NO_PROXY); the TCP connection (to the origin or to
the proxy); the CONNECT tunnel; TLS, with the chain as presented; the
gateway's answer to the key; and, with C{--chat MODEL}, a tiny streamed
chat, sent where the daemon would send a request for MODEL (its upstream
and C{upstream_model} name in models.yaml).  Each step is one line (pass,
fail or skipped, what was checked, how long it took); a failure says its
most likely cause and the setting that fixes it.  The configuration step
shows the settings as the settings table describes them: a refused one
with its line of the table, and, when all are valid, those not at their
defaults (secrets only as set).  The network steps use the daemon's own
parts (its endpoint factory, tunnel, trust root and treq client), so that
what doctor reports is what the daemon will do.  Nothing secret is ever
printed.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from time import monotonic
from typing import Any

from twisted.internet import defer, task

from genaiproxy import __version__
from genaiproxy.cli.doctor.gateway import check_chat, check_gateway
from genaiproxy.cli.doctor.limits import check_limits, check_redis
from genaiproxy.cli.doctor.local import check_listen
from genaiproxy.cli.doctor.network import check_network
from genaiproxy.cli.doctor.report import Report, Step, render_text
from genaiproxy.config import (
    BY_NAME,
    DEFAULT_MODELS,
    DEFAULT_UPSTREAM,
    NO_LIMITS,
    NO_ROUTING,
    Config,
    ConfigError,
    LimitRules,
    LimitsError,
    ModelsFileError,
    RoutingError,
    RoutingTable,
    build_routing,
    load_config,
    parse_limits,
    parse_models_document,
    trust_root,
)

__all__ = ["Report", "Step", "run"]


@dataclass
class Setup:
    """What the configuration step found: the upstreams to check, and
    where each model's requests go."""

    upstreams: list[tuple[str, Config]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    routing: RoutingTable = NO_ROUTING
    limits: LimitRules = NO_LIMITS


def check_configuration(report: Report, environ: Mapping[str, str], models_path: str,
                        models_given: bool) -> Setup | None:
    """Step 1: the settings, models.yaml and the secret files, validated as
    the daemon validates them."""
    started = monotonic()
    setup = Setup()
    try:
        config = load_config(environ)
        trust_root(config.ca_bundle, config.ssl_cert_file)
    except ConfigError as e:
        report.add(Step("configuration", "fail", str(e), started, fix=_fix(e)))
        return None
    setup.upstreams.append((DEFAULT_UPSTREAM, config))
    detail = f"settings valid; upstream {config.upstream_display}"
    changed = ", ".join(f"{name}={shown}" for name, shown in config.changed())
    path = os.path.abspath(models_path)
    if not os.path.exists(path):
        if models_given:
            report.add(Step("configuration", "fail", f"--models {path}: no such file", started,
                            fix="give the path of an existing models.yaml"))
            return None
        detail += f"; no {path} (an empty model list)"
    else:
        try:
            with open(path, encoding="utf-8") as f:
                entries, upstreams, limits = parse_models_document(f.read(), 0)
            setup.limits = parse_limits(limits, entries)
            routing = setup.routing = build_routing(upstreams, entries, config, environ)
            for name, spec in routing.upstreams.items():
                trust_root(spec.config.ca_bundle, spec.config.ssl_cert_file)
                setup.upstreams.append((name, spec.config))
        except (OSError, UnicodeDecodeError, ModelsFileError, RoutingError, ConfigError,
                LimitsError) as e:
            report.add(Step("configuration", "fail", f"{path}: {e}", started,
                            fix="correct models.yaml (the daemon would keep its last good "
                                "version, or serve no models)"))
            return None
        setup.models = [entry["id"] for entry in entries if entry.get("hidden") is not True]
        detail += f"; {path}: {len(entries)} models"
        if len(setup.upstreams) > 1:
            detail += f", {len(setup.upstreams)} upstreams"
    detail += f"; not at their defaults: {changed}" if changed else "; the rest at their defaults"
    report.add(Step("configuration", "pass", detail, started))
    return setup


def _fix(error: ConfigError) -> str:
    """What to do about a refused setting: its line of the settings table."""
    setting = BY_NAME.get(error.setting)
    if setting is None:
        return "correct that setting (`twistd genaiproxy --help` lists them)"
    default = setting.default_text() or "empty"
    return f"correct {setting.name}: {setting.help} [default: {default}]"


async def diagnose(reactor: Any, options: Mapping[str, Any], environ: Mapping[str, str],
                   report: Report) -> Report:
    """Every step, in order, into C{report}; a step that cannot be taken
    after a failure is skipped."""
    models = options.get("models")
    setup = check_configuration(report, environ, models or DEFAULT_MODELS, models is not None)
    await check_listen(reactor, report, options["listen"])
    if setup is not None:
        check_limits(report, setup.limits, setup.upstreams[0][1])
        await check_redis(reactor, report, setup.upstreams[0][1])
    if setup is None:
        report.add(Step("upstream", "skip", "not checked: the configuration is not valid",
                        monotonic()))
        return report
    # The chat goes where a request for its model would: the first of the
    # model's routes (doctor tries no fallback), under its upstream name.
    chat = setup.routing.hops(options["chat"])[0] if options.get("chat") else None
    for name, config in setup.upstreams:
        # Doctor tries once: a retry would only hide what it came to see.
        config = replace(config, max_retries=0)
        report.section(f"upstream {name}: {config.upstream_display}")
        if not await check_network(reactor, report, name, config):
            continue
        if not await check_gateway(reactor, report, name, config):
            continue
        if chat is not None and name == chat.upstream:
            await check_chat(reactor, report, config, chat)
    return report


def run(options: Mapping[str, Any], environ: Mapping[str, str] | None = None,
        out: Any = None) -> int:
    """Run doctor under the reactor; print the report; the exit status
    (0: every step passed; 1: otherwise)."""
    env = os.environ if environ is None else environ
    stream = sys.stdout if out is None else out
    report = Report(version=__version__)

    async def main(reactor: Any) -> None:
        try:
            await diagnose(reactor, options, env, report)
        except Exception as e:  # a bug of ours: said as a failed step, not a traceback
            report.add(Step("doctor", "fail", f"unexpected error: {type(e).__name__}",
                            monotonic(), fix="please report it, with the steps above"))

    try:
        task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    except SystemExit as e:  # react() ends the process's reactor run with it
        if e.code not in (0, None):
            raise
    if options.get("json"):
        steps = [{key: value for key, value in asdict(step).items() if key != "started"}
                 for step in report.steps]
        stream.write(json.dumps({"ok": report.ok, "version": report.version, "steps": steps},
                                indent=2))
        stream.write("\n")
    else:
        stream.write(render_text(report))
    stream.flush()
    return 0 if report.ok else 1
