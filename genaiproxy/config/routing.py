"""Several upstreams behind one endpoint: the routing part of models.yaml.

models.yaml may name upstreams besides the one the environment defines
(called C{default}) and say, per model, which upstream serves it, under
which name (C{upstream_model}), whether C{/v1/models} lists it (C{hidden}),
and where a request goes when its upstream fails (C{fallbacks}).
L{build_routing} checks all of it at once and gives a L{RoutingTable}; a
file with a mistake is refused whole, so that the last good one stays.

Keys never sit in the file: an upstream names the variable (C{api_key_env})
or the file (C{api_key_file}) that holds its key.  The keys themselves are
declared in L{genaiproxy.config.models_keys}.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from genaiproxy.config.credentials import SecretError, parse_header_secret, read_secret_text
from genaiproxy.config.kinds import (
    ApiVersion,
    ConfigError,
    check_http_url,
    is_header_value,
    is_token,
)
from genaiproxy.config.models_keys import (
    DEFAULT_UPSTREAM,
    REFUSED_KEYS,
    ROUTING_KEYS,
    UPSTREAM_KEY_NAMES,
    UPSTREAM_NUMBERS,
)
from genaiproxy.config.settings import BY_NAME, Config
from genaiproxy.config.tls import trust_root

# Upstream names go in logs, metrics labels and the X-Upstreams-Tried header.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class RoutingError(ValueError):
    """The routing part of models.yaml cannot be used; the message says why
    (and never holds a key)."""


@dataclass(frozen=True)
class UpstreamSpec:
    """One upstream named in models.yaml: its settings, key included."""

    name: str
    config: Config = field(repr=False)

    @property
    def key_file(self) -> str:
        """The file its key is read from (re-read when it changes), or empty."""
        return self.config.api_key_file


@dataclass(frozen=True)
class ModelRoute:
    """Where requests for one model id go, and how they are sent.

    @ivar max_output_tokens: the most tokens an answer of this model may
        take (models.yaml's C{max_output_tokens}): a request asking for more
        is sent with this cap.  C{None}: no cap.  Each hop has its own, so
        a fallback is sent with its own cap.
    """

    id: str
    upstream: str = DEFAULT_UPSTREAM
    upstream_model: str | None = None  # the name sent upstream, when not the id
    fallbacks: tuple[str, ...] = ()
    max_output_tokens: int | None = None


@dataclass(frozen=True)
class RoutingTable:
    """The upstreams and model routes of one version of models.yaml."""

    upstreams: Mapping[str, UpstreamSpec] = field(default_factory=dict)
    routes: Mapping[str, ModelRoute] = field(default_factory=dict)
    # The hops of each model of the file, worked out on its first request
    # (the table never changes: a reload makes a new one).
    _hops: dict[str, list[ModelRoute]] = field(default_factory=dict, compare=False,
                                               repr=False)

    def hops(self, model: str | None) -> list[ModelRoute]:
        """The routes a request for C{model} tries, in order: its own, then
        its fallbacks (each followed by its own, depth first).  A model not
        in the file goes to the default upstream as it is.  (The list is
        shared: not to be changed.)"""
        route = self.routes.get(model) if model is not None else None
        if route is None:
            return [ModelRoute(model or "")]
        known = self._hops.get(route.id)
        if known is None:
            known = self._hops[route.id] = self._walk(route)
        return known

    def _walk(self, route: ModelRoute) -> list[ModelRoute]:
        order: list[ModelRoute] = []
        seen: set[str] = set()

        def visit(current: ModelRoute) -> None:
            if current.id in seen:
                return
            seen.add(current.id)
            order.append(current)
            for name in current.fallbacks:
                visit(self.routes[name])

        visit(route)
        return order


NO_ROUTING = RoutingTable()


def uses_routing(upstreams: Any, entries: list[dict[str, Any]]) -> bool:
    """Whether a models.yaml uses any of the routing keys."""
    return upstreams is not None or any(ROUTING_KEYS & entry.keys() for entry in entries)


def build_routing(upstreams: Any, entries: list[dict[str, Any]], default: Config,
                  environ: Mapping[str, str]) -> RoutingTable:
    """The routing table of a models.yaml: its C{upstreams:} mapping and its
    model C{entries}.  Raises L{RoutingError} for any mistake."""
    for entry in entries:
        inline = REFUSED_KEYS & entry.keys()
        if inline:  # it would be shown on /v1/models
            raise RoutingError(f"model {entry['id']!r}: a key must not be written in "
                               f"models.yaml ({', '.join(sorted(inline))})")
    if not uses_routing(upstreams, entries):
        return NO_ROUTING
    specs = _upstreams(upstreams or {}, default, environ)
    routes: dict[str, ModelRoute] = {}
    for entry in entries:
        model_id = entry["id"]
        if model_id in routes:
            raise RoutingError(f"model id {model_id!r} appears twice")
        routes[model_id] = _route(entry, specs)
    for route in routes.values():
        for name in route.fallbacks:
            if name not in routes:
                raise RoutingError(f"model {route.id!r}: fallback {name!r} is not a model id of "
                                   "this file")
    _refuse_cycles(routes)
    return RoutingTable(specs, routes)


def _upstreams(section: Any, default: Config, environ: Mapping[str, str],
               ) -> dict[str, UpstreamSpec]:
    if not isinstance(section, dict):
        raise RoutingError("'upstreams' must be a mapping of names to settings")
    specs: dict[str, UpstreamSpec] = {}
    for name, settings in section.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == DEFAULT_UPSTREAM:
            raise RoutingError(f"upstream name {str(name)[:64]!r} is not allowed (letters, "
                               f"digits, '.', '_', '@', '-'; not {DEFAULT_UPSTREAM!r}, which "
                               "the environment defines)")
        if not isinstance(settings, dict):
            raise RoutingError(f"upstream {name!r}: its settings must be a mapping")
        inline = REFUSED_KEYS & settings.keys()
        if inline:
            raise RoutingError(
                f"upstream {name!r}: a key must not be written in models.yaml "
                f"({', '.join(sorted(inline))}); name its variable with api_key_env or its "
                "file with api_key_file")
        unknown = settings.keys() - UPSTREAM_KEY_NAMES
        if unknown:
            raise RoutingError(f"upstream {name!r}: unknown setting(s) "
                               f"{', '.join(sorted(map(str, unknown)))}")
        key, key_file = _key(name, settings, environ)
        try:
            config = derive_upstream(default, name, settings, key, key_file)
            trust_root(config.ca_bundle, config.ssl_cert_file)
        except ConfigError as e:
            raise RoutingError(str(e).replace("GENAI_CA_BUNDLE", f"ca_bundle of upstream {name!r}")
                               ) from None
        except ValueError:  # a URL urllib cannot split ("http://[::1")
            raise RoutingError(f"upstream {name!r}: base_url is not a valid URL") from None
        specs[name] = UpstreamSpec(name, config)
    return specs


def derive_upstream(default: Config, name: str, settings: Mapping[str, Any],
                    api_key: str, api_key_file: str = "") -> Config:
    """The settings of another upstream, C{name}, from its entry in
    models.yaml: what it gives replaces the default's; the rest (timeouts,
    retries, HTTPS_PROXY, NO_PROXY, ...) is inherited.  Raises L{ConfigError}."""
    where = f"upstream {name!r}"
    base_url = settings.get("base_url")
    if not isinstance(base_url, str) or not base_url.strip():
        raise ConfigError(f"{where}: base_url is required")
    base_url = base_url.strip()
    if not base_url.isascii():
        raise ConfigError(f"{where}: base_url must be plain ASCII")
    check_http_url(f"{where}: base_url", base_url)
    subscription_name = settings.get("subscription_name", "")
    if not isinstance(subscription_name, str):
        raise ConfigError(f"{where}: subscription_name must be text")
    subscription_name = subscription_name.strip()
    if subscription_name and not is_token(subscription_name):
        raise ConfigError(f"{where}: subscription_name is not a valid header name")
    if bool(subscription_name) != bool(api_key):
        raise ConfigError(f"{where}: a subscription_name needs a key (api_key_env or "
                          "api_key_file), and a key needs a subscription_name")
    if not is_header_value(api_key):
        raise ConfigError(f"{where}: the key holds a character that cannot go in a header")
    api_version = str(settings.get("api_version", default.api_version) or "").strip()
    try:
        api_version = ApiVersion().read("api_version", api_version) if api_version else ""
    except ConfigError:
        raise ConfigError(f"{where}: api_version looks wrong (e.g. 2024-10-21)") from None
    changes: dict[str, Any] = {
        "base_url": base_url, "subscription_name": subscription_name, "api_key": api_key,
        "api_key_file": api_key_file, "api_version": api_version,
    }
    for key in ("responses_api", "messages_api"):
        mode = settings.get(key)
        if mode is None:
            continue
        choice = BY_NAME[key.upper()].kind
        if not isinstance(mode, str):
            raise ConfigError(f"{where}: {key} must be one of {choice.label()}")
        changes[key] = choice.read(f"{where}: {key}", mode.strip())
    ca_bundle = settings.get("ca_bundle")
    if ca_bundle is not None:
        if not isinstance(ca_bundle, str):
            raise ConfigError(f"{where}: ca_bundle must be a file path")
        changes["ca_bundle"] = ca_bundle.strip()
    for key, field_name, kind in UPSTREAM_NUMBERS:
        if key not in settings:
            continue
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (
                kind is int and not isinstance(value, int)) or not math.isfinite(value):
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{where}: {key} must be {what} >= 0")
        changes[field_name] = kind(value)
    if changes.get("request_timeout", 1) == 0:
        raise ConfigError(f"{where}: request_timeout must be above 0")
    return replace(default, **changes)


def _key(name: str, settings: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[str, str]:
    """An upstream's key and the file it came from (empty for a variable)."""
    variable, path = settings.get("api_key_env"), settings.get("api_key_file")
    if variable and path:
        raise RoutingError(f"upstream {name!r}: api_key_env and api_key_file are both set: "
                           "use one")
    if variable:
        if not isinstance(variable, str) or not variable.isidentifier():
            # (Not repeated: a key pasted here by mistake must not reach a log.)
            raise RoutingError(f"upstream {name!r}: api_key_env must be the name of an "
                               "environment variable")
        if variable not in environ:
            raise RoutingError(f"upstream {name!r}: api_key_env names {variable!r}, which is "
                               "not set in the proxy's environment")
        return environ[variable].strip(), ""
    if path:
        if not isinstance(path, str) or not path.startswith(("/", "./", "../", "~")):
            # (Not repeated: a key pasted here by mistake must not reach a log.)
            raise RoutingError(f"upstream {name!r}: api_key_file must be a file path "
                               "(absolute, or starting with ./)")
        path = os.path.expanduser(path)
        try:
            return parse_header_secret(read_secret_text(path), path), path
        except SecretError as e:
            raise RoutingError(f"upstream {name!r}: api_key_file: {e}") from None
    return "", ""


def _route(entry: Mapping[str, Any], specs: Mapping[str, UpstreamSpec]) -> ModelRoute:
    model_id = entry["id"]
    upstream = entry.get("upstream", DEFAULT_UPSTREAM)
    if not isinstance(upstream, str):
        raise RoutingError(f"model {model_id!r}: upstream must be the name of one upstream")
    if upstream != DEFAULT_UPSTREAM and upstream not in specs:
        raise RoutingError(f"model {model_id!r}: upstream {upstream!r} is not defined under "
                           "'upstreams'")
    upstream_model = entry.get("upstream_model")
    if upstream_model is not None and (not isinstance(upstream_model, str) or not upstream_model):
        raise RoutingError(f"model {model_id!r}: upstream_model must be a model name")
    if not isinstance(entry.get("hidden", False), bool):
        raise RoutingError(f"model {model_id!r}: hidden must be true or false")
    fallbacks = entry.get("fallbacks", [])
    if isinstance(fallbacks, str):
        fallbacks = [fallbacks]
    if not isinstance(fallbacks, list) or not all(isinstance(f, str) for f in fallbacks):
        raise RoutingError(f"model {model_id!r}: fallbacks must be a list of model ids")
    # Checked when the file was read (genaiproxy.config.models): a whole number above 0.
    cap = entry.get("max_output_tokens")
    return ModelRoute(model_id, upstream, upstream_model, tuple(fallbacks), cap)


def _refuse_cycles(routes: Mapping[str, ModelRoute]) -> None:
    """A model must not fall back, directly or not, to itself."""
    done: set[str] = set()

    def walk(model_id: str, path: list[str]) -> None:
        if model_id in path:
            cycle = " -> ".join([*path[path.index(model_id):], model_id])
            raise RoutingError(f"fallback cycle: {cycle}")
        if model_id in done:
            return
        for name in routes[model_id].fallbacks:
            walk(name, [*path, model_id])
        done.add(model_id)

    try:
        for model_id in routes:
            walk(model_id, [])
    except RecursionError:
        raise RoutingError("fallbacks are nested too deep") from None
