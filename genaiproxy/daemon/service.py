"""The twistd service: options, configuration, and the listening site.

C{twistd -n genaiproxy [--listen ENDPOINT] [--models PATH]} lands in
L{makeService}.  A configuration error ends start-up with one line on stderr
and exit status 2, before anything listens.
"""

from __future__ import annotations

import gc
import os
import resource
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger
from twisted.python import usage
from twisted.python.components import Componentized

from genaiproxy.config import (
    DEFAULT_LISTEN,
    DEFAULT_MODELS,
    LISTEN_HELP,
    MODELS_HELP,
    ClientTokens,
    Config,
    ConfigError,
    ModelCatalog,
    RoutingTable,
    SecretError,
    SecretFile,
    build_routing,
    environment_help,
    load_config,
    parse_header_secret,
    parse_tokens_file,
    version_text,
)
from genaiproxy.daemon.process import (
    FDS_RESERVED,
    GC_THRESHOLDS,
    describe_listen_error,
    fail_start,
    raise_open_files_limit,
    with_backlog,
)
from genaiproxy.forwarding import Forwarder
from genaiproxy.limits import StateFile, state_path
from genaiproxy.limits.redis_store import RedisWindows, redis_windows
from genaiproxy.observe import LEVELS, LinesObserver, TextSink, log_stream
from genaiproxy.server import AccessPolicy, ClientLimits, ProxySite, build_tree
from genaiproxy.upstream import UpstreamClient

log = Logger(namespace="genaiproxy.service")

class Options(usage.Options):
    """Command-line options of the C{genaiproxy} twistd plugin."""

    # Declared in genaiproxy.config.settings, beside the environment settings.
    # --models has no default here, so that a path given can be told from it.
    optParameters = [
        ["listen", "l", DEFAULT_LISTEN, LISTEN_HELP],
        ["models", "m", None, MODELS_HELP],
    ]

    def opt_version(self) -> NoReturn:
        """Print genai-proxy's version (and Twisted's and treq's) and exit."""
        print(version_text())
        raise SystemExit(0)

    def getUsage(self, width: int | None = None) -> str:
        """The options, then the environment settings."""
        return super().getUsage(width) + "\n" + environment_help()


class StartupError(Exception):
    """Start-up failed after twistd daemonized; the message says why."""


class ProxyService(MultiService):
    """The proxy: its listening port, the upstream client, the model list.

    When twistd adds it to its application, it installs the JSON-lines log
    observer there (unless C{--logger} chose another), so every event, ours
    and Twisted's, goes to stdout as one JSON object a line.

    Signals: SIGTERM stops gracefully (no new connections, in-flight requests
    and streams get SHUTDOWN_GRACE_SEC to finish, then exit status 0); SIGHUP
    reads models.yaml and the secret files again.
    """

    def __init__(self, config: Config, site: ProxySite, forwarder: Forwarder,
                 catalog: ModelCatalog, reactor: Any, log_to: TextSink = sys.stdout,
                 log_format: str = "json", secret_files: list[SecretFile[Any]] | None = None,
                 ) -> None:
        super().__init__()
        self.config = config
        self.secret_files = secret_files or []
        self.site = site
        self.forwarder = forwarder
        self.catalog = catalog
        self._reactor = reactor
        self.log_format = log_format
        # In the foreground (twistd -n) start-up errors go to stderr with
        # status 2; a daemon reports them through twistd.
        self.foreground = True
        self.log_observer = LinesObserver(log_to, clock=reactor, text=log_format == "text",
                                          level=LEVELS[config.log_level])
        reactor.addSystemEventTrigger("after", "shutdown", self.log_observer.flush)
        self._model_check = LoopingCall(self.check_files)
        self._model_check.clock = reactor
        # The clients' day and month windows, kept across restarts.
        self.limits_state: StateFile | None = None
        # The windows shared with the other replicas (LIMITS_REDIS_URL).
        self.limits_store: RedisWindows | None = None

    def setServiceParent(self, parent: Any) -> None:
        if isinstance(parent, Componentized) and parent.getComponent(ILogObserver) is None:
            parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        """Listen (twistd does this before it runs the reactor); a port that
        is taken or not permitted ends start-up with one line and status 2."""
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            message = f"cannot listen on {describe_listen_error(e)}"
            if self.foreground:
                fail_start(message)
            # Daemonized, stderr is gone and twistd's launcher waits for a
            # report: an exception is what it reports ("An error has occurred").
            raise StartupError(message) from None

    def startService(self) -> None:
        log.info("startup_config", **self.config.summary(), LOG_FORMAT=self.log_format)
        before, soft, hard = raise_open_files_limit()
        unlimited = soft == resource.RLIM_INFINITY
        log.info("open_files_limit", soft=None if unlimited else soft,
                 hard=None if hard == resource.RLIM_INFINITY else hard,
                 raised_from=None if before == resource.RLIM_INFINITY else before,
                 streams_max=None if unlimited else (soft - FDS_RESERVED) // 2)
        super().startService()
        if self.limits_store is not None:
            self.limits_store.connect()
        self.catalog.refresh()
        self._model_check.start(MODELS_CHECK_INTERVAL, now=False)
        # After twistd's own handlers are in place (they are installed as the
        # reactor starts), take over SIGTERM and SIGHUP.
        self._reactor.callLater(0, self._install_signal_handlers)
        # Everything made so far lives as long as the process: keep it out of
        # the garbage collector's full passes, which otherwise pause the
        # reactor for milliseconds now and then (p99 latency 7 ms -> 2 ms).
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)

    def _install_signal_handlers(self) -> None:
        reactor = self._reactor
        # Twisted's own SIGTERM handler makes twistd exit by that signal
        # (status 143); a graceful stop is a success, so stop the reactor
        # ourselves and exit 0.
        signal.signal(signal.SIGTERM, lambda *_: reactor.callFromThread(reactor.stop))
        signal.signal(signal.SIGHUP, lambda *_: reactor.callFromThread(self.reload_models))

    def check_files(self) -> None:
        """Take in what changed in models.yaml and the secret files (and try
        a models.yaml whose last load failed again).  A failure of one (a
        bug) is logged and does not stop the checks."""
        for refresh in (self.catalog.check, *(s.refresh for s in self._secrets())):
            try:
                refresh()
            except Exception:
                log.failure("unexpected error while checking the configuration files")

    def reload_models(self) -> None:
        """Read models.yaml and the secret files again now (SIGHUP)."""
        log.info("models_reload_requested", path=self.catalog.path)
        self.catalog.refresh(force=True)
        for secret in self._secrets():
            secret.refresh(force=True)

    def _secrets(self) -> list[SecretFile[Any]]:
        """The secret files in use: the environment's, and the key files of
        the upstreams models.yaml names now."""
        return [*self.secret_files, *self.forwarder.upstreams.key_files]

    def stopService(self) -> Deferred[Any]:
        """Turn not-ready (/readyz: 503), keep listening for SHUTDOWN_DELAY_SEC
        (so that a load balancer stops sending first), stop listening, let
        in-flight requests finish within the grace period, cut what is left,
        then close upstream connections."""
        grace, delay = self.config.shutdown_grace_sec, self.config.shutdown_delay_sec
        self.forwarder.draining = True
        self.site.draining = True
        log.info("shutdown_started", in_flight=self.forwarder.in_flight, grace_sec=grace,
                 delay_sec=delay)
        if self._model_check.running:
            self._model_check.stop()
        started = self._reactor.seconds()
        waited = task.deferLater(self._reactor, delay, lambda: None) if delay else succeed(None)
        stopped = waited.addCallback(lambda _: super(ProxyService, self).stopService())

        def drain(_: object) -> Deferred[None]:
            waiting = self.forwarder.idle()
            waiting.addTimeout(grace, self._reactor)
            return waiting.addErrback(lambda f: f.trap(defer.TimeoutError))

        def finish(_: object) -> Deferred[None]:
            cut = self.forwarder.cut_all()
            closing = self.site.close_connections(self._reactor)

            def closed(connections: int) -> Deferred[None]:
                if self.limits_state is not None:
                    self.limits_state.save()  # with the requests that just ended
                log.info(
                    "shutdown_finished",
                    drained_sec=round(self._reactor.seconds() - started, 3),
                    cut=cut,
                    connections_closed=connections,
                )
                upstreams_closed = self.forwarder.upstreams.close()
                store = self.limits_store
                if store is not None:  # after the last requests' releases
                    upstreams_closed.addCallback(lambda _: store.disconnect())
                return upstreams_closed

            return closing.addCallback(closed)

        stopping = stopped.addCallback(drain).addCallback(finish)
        # Twisted's shutdown does not report a failing stop: log it here.
        return stopping.addErrback(lambda f: log.failure("error during shutdown", f))


MODELS_CHECK_INTERVAL = 2.0

def watch_secret_files(config: Config, upstream: UpstreamClient, tokens: ClientTokens,
                       on_load: Callable[[str, bool], None] | None = None,
                       ) -> list[SecretFile[Any]]:
    """The secrets kept in files, each handing its value (now and after each
    change) to what uses it: the upstream key, the clients' tokens."""
    tokens.set_single(config.auth_token)
    files: list[SecretFile[Any]] = []
    try:
        if config.api_key_file:
            files.append(SecretFile("GENAI_API_KEY_FILE", config.api_key_file,
                                    parse_header_secret, upstream.set_api_key, on_load))
        if config.auth_token_file:
            files.append(SecretFile("AUTH_TOKEN_FILE", config.auth_token_file,
                                    parse_header_secret, tokens.set_single, on_load))
        if config.auth_tokens_file:
            files.append(SecretFile("AUTH_TOKENS_FILE", config.auth_tokens_file,
                                    parse_tokens_file, tokens.set_named, on_load))
    except SecretError as e:
        raise ConfigError(str(e)) from None
    return files


def client_limits(config: Config) -> ClientLimits:
    """What a client connection may send, from the configuration."""
    return ClientLimits(
        max_body_bytes=int(config.max_request_body_mb * 1_000_000),
        max_header_line_bytes=config.max_header_line_bytes,
        max_header_bytes=config.max_header_bytes,
        max_header_count=config.max_header_count,
        header_timeout=config.header_timeout,
        keepalive_timeout=config.keepalive_timeout,
        body_idle_timeout=config.request_timeout,
        max_connections=config.max_client_connections,
    )


def build_service(
    config: Config, listen: str, models_path: str, reactor: Any = None,
    log_to: TextSink = sys.stdout, log_format: str = "json",
    environ: Mapping[str, str] | None = None,
) -> ProxyService:
    """Wire the proxy together: upstream client, resource tree, site, port."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    upstream = UpstreamClient(config, reactor)
    forwarder = Forwarder(upstream)
    metrics = forwarder.metrics
    env = os.environ if environ is None else environ

    def routing(upstreams: Any, entries: list[dict[str, Any]]) -> RoutingTable:
        return build_routing(upstreams, entries, config, env)

    catalog = ModelCatalog(models_path, on_load=lambda ok: metrics.reloaded("models", ok),
                           routing=routing)
    catalog.on_routing = forwarder.set_routing
    catalog.on_limits = forwarder.limits.set_rules
    tokens = ClientTokens()
    secret_files = watch_secret_files(config, upstream, tokens, metrics.reloaded)
    site = ProxySite(build_tree(forwarder, catalog),
                     AccessPolicy(tokens, config.allowed_origins),
                     client_limits(config))
    try:
        listening = strports.service(with_backlog(listen), site, reactor=reactor)
    except ValueError as e:
        raise ConfigError(f"invalid --listen {listen!r}: {e}") from None
    proxy = ProxyService(config, site, forwarder, catalog, reactor, log_to, log_format,
                         secret_files)
    listening.setServiceParent(proxy)
    if not config.limits_redis_url:  # (with Redis, Redis keeps the windows)
        proxy.limits_state = StateFile(state_path(config, env), forwarder.limits.memory,
                                       reactor)
        proxy.limits_state.setServiceParent(proxy)
    else:
        proxy.limits_store = redis_windows(config, metrics, reactor)
        forwarder.limits.shared = proxy.limits_store
        forwarder.limits.closed = config.limits_redis_failure == "closed"
    return proxy


def makeService(options: Mapping[str, Any]) -> ProxyService:
    """twistd's entry point for the genaiproxy plugin."""
    try:
        config = load_config(os.environ)
        models = options["models"]
        if models is None:
            models = DEFAULT_MODELS
        elif not os.path.isfile(models):
            raise ConfigError(f"--models {models!r}: no such file ({os.path.abspath(models)})")
        # twistd's own options (--logfile, --syslog, -n) say where logs go.
        try:
            log_to = log_stream(getattr(options, "parent", None))
        except OSError as e:
            raise ConfigError(f"cannot open the log file: {e}") from None
        # Text for a person at a terminal, JSON for systemd, containers, files.
        log_format = config.log_format or (
            "text" if log_to is sys.stdout and sys.__stdout__ is not None
            and sys.__stdout__.isatty() else "json")
        proxy = build_service(config, options["listen"], models, log_to=log_to,
                              log_format=log_format, environ=os.environ)
        twistd_options = getattr(options, "parent", None)
        proxy.foreground = bool(twistd_options.get("nodaemon", True)) if twistd_options else True
        return proxy
    except ConfigError as e:
        fail_start(f"configuration error: {e}")
