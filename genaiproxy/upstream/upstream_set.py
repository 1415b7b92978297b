"""The upstreams in service: the default one and those models.yaml names.

Each upstream has its own L{UpstreamClient}, so its own connection pool,
trust root, forward-proxy decision, key, timeouts and retries.  When
models.yaml changes, L{UpstreamSet.apply} keeps the client of every upstream
whose settings did not change (and its pooled connections), makes new ones
for the rest, and lets go of the removed ones: their idle connections are
closed, while a request or stream under way on one keeps its client to the
end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from genaiproxy.config import DEFAULT_UPSTREAM, RoutingTable, SecretError, SecretFile, parse_header_secret
from genaiproxy.observe import secret_header_names
from genaiproxy.upstream.client import UpstreamClient

log = Logger(namespace="genaiproxy.upstreams")


class UpstreamSet:
    """The upstream clients by name; C{default} always among them."""

    def __init__(self, default: UpstreamClient, reactor: Any,
                 on_load: Callable[[str, bool], None] | None = None) -> None:
        self.default = default
        self._reactor = reactor
        self._on_load = on_load
        self._clients: dict[str, UpstreamClient] = {DEFAULT_UPSTREAM: default}
        self._key_files: dict[str, SecretFile[str]] = {}
        self.secret_headers = secret_header_names([default.config.subscription_name])
        # The upstreams (RESPONSES_API auto) found to answer /responses with a
        # 404 or 405: their Responses requests are bridged until a reload.
        self._chat_only: set[str] = set()

    def client(self, name: str) -> UpstreamClient:
        """The client of upstream C{name} (the routing table only names
        upstreams that exist when it takes service)."""
        return self._clients.get(name, self.default)

    def close(self) -> Deferred[None]:
        """Close the idle connections of every upstream (when the service stops)."""
        closing = DeferredList([client.close() for client in self._clients.values()])
        return closing.addCallback(lambda _: None)

    def bridges(self, api: str, name: str) -> bool:
        """Whether upstream C{name}'s requests of C{api} (C{responses} or
        C{messages}) go through its chat completions: RESPONSES_API chat, or
        auto once the upstream refused one; MESSAGES_API chat."""
        config = self.client(name).config
        if api == "messages":
            return config.messages_api == "chat"
        mode = config.responses_api
        return mode == "chat" or (mode == "auto" and name in self._chat_only)

    def found_chat_only(self, name: str) -> None:
        """Upstream C{name} (RESPONSES_API auto) refused /responses: bridge
        its Responses requests from now on (logged once)."""
        if name not in self._chat_only:
            self._chat_only.add(name)
            log.info("responses_bridged", upstream_name=name,
                     upstream=self.client(name).config.upstream_display)

    def has(self, name: str) -> bool:
        """Whether upstream C{name} is in service."""
        return name in self._clients

    def items(self) -> list[tuple[str, UpstreamClient]]:
        """(name, client) of every upstream, C{default} first."""
        return list(self._clients.items())

    @property
    def key_files(self) -> list[SecretFile[str]]:
        """The files the named upstreams' keys are read from (for the
        periodic check and SIGHUP)."""
        return list(self._key_files.values())

    def apply(self, routing: RoutingTable) -> None:
        """Take the upstreams of a new routing table into service."""
        clients: dict[str, UpstreamClient] = {DEFAULT_UPSTREAM: self.default}
        key_files: dict[str, SecretFile[str]] = {}
        for name, spec in routing.upstreams.items():
            old = self._clients.get(name)
            kept = self._key_files.get(name)
            if old is not None and (old.config == spec.config or (
                    kept is not None and kept.path == spec.key_file
                    and old.config == replace(spec.config, api_key=old.config.api_key))):
                # Unchanged, or only the key in its file: the file's watcher
                # gives the client the new key (and logs it).
                client = old
            else:
                client = UpstreamClient(spec.config, self._reactor)
            clients[name] = client
            if kept is not None and old is client and kept.path == spec.key_file:
                key_files[name] = kept
                kept.refresh()
            elif spec.key_file:
                try:
                    key_files[name] = SecretFile(f"api_key_file of upstream {name}",
                                                 spec.key_file, parse_header_secret,
                                                 client.set_api_key, self._on_load)
                except SecretError as e:  # changed since the file was checked
                    log.error("credentials_reload_failed", setting=f"upstream {name}",
                              path=spec.key_file, error=str(e), kept="the key read at load")
        for name, client in self._clients.items():
            if clients.get(name) is not client:
                client.close()  # idle connections only; calls under way go on
        self._clients, self._key_files = clients, key_files
        self._chat_only.clear()  # what auto found is found again after a reload
        self.secret_headers = secret_header_names(
            client.config.subscription_name for client in clients.values())
        log.info("upstreams_in_service", upstreams=[
            {"name": name, "url": client.config.upstream_display,
             "via_proxy": client.via_proxy} for name, client in clients.items()])
