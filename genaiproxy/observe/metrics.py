"""Prometheus metrics of the forwarded requests, made with prometheus-client.

One L{ProxyMetrics} per process holds its own registry (not the library's
global one, so that tests can build several) and the series below; the
forwarder reports to it at a few points of a request's life.  Label values
are bounded: a request's C{route} label is its kind, which the layers above
decide once from a fixed set (chat, responses, embeddings, completions,
models, other: the label of L{genaiproxy.api.Route}) and pass in as a
string, and model names past L{MAX_MODELS} distinct ones fold into
C{other}, so that no client can make the series grow without end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "MAX_MODELS", "ProxyMetrics"]

# LLM latencies: from a quick local answer to a long reasoning stream.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# Distinct model names kept as labels; more are counted as "other".
MAX_MODELS = 50
_MAX_LABEL = 100

class ProxyMetrics:
    """The proxy's series, in a registry of their own."""

    def __init__(self, version: str, in_flight: Callable[[], float]) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        Info("genai_proxy_build", "The proxy's version.", registry=registry).info(
            {"version": version})
        self.requests = Counter(
            "genai_proxy_requests", "Forwarded requests by route, model, status, client and "
            "upstream (status 499: the client left first).",
            ["route", "model", "status", "client", "upstream"],
            registry=registry)
        self.duration = Histogram(
            "genai_proxy_request_duration_seconds", "Time from a request to the end of its "
            "answer (of its stream, for streams), by route, model and client.",
            ["route", "model", "client"], buckets=LATENCY_BUCKETS,
            registry=registry)
        self.upstream_headers = Histogram(
            "genai_proxy_upstream_response_seconds", "Time from a request to the upstream's "
            "response headers (retries and waits included).", ["route"],
            buckets=LATENCY_BUCKETS, registry=registry)
        self.first_byte = Histogram(
            "genai_proxy_stream_first_byte_seconds", "Time from a request to the first byte "
            "of its streamed answer.", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
        self.reloads = Counter(
            "genai_proxy_config_reloads", "Loads of models.yaml and of the secret files, by file "
            "(models, GENAI_API_KEY_FILE, AUTH_TOKEN_FILE, AUTH_TOKENS_FILE) and result (ok, "
            "failed).", ["file", "result"], registry=registry)
        in_flight_gauge = Gauge("genai_proxy_requests_in_flight",
                                "Forwarded requests not yet answered in full.", registry=registry)
        in_flight_gauge.set_function(in_flight)
        self.streams = Gauge("genai_proxy_streams_in_flight", "Streams being passed through.",
                             registry=registry)
        self.streamed_bytes = Counter("genai_proxy_streamed_bytes",
                                      "Bytes of streamed answers passed to clients.",
                                      registry=registry)
        self.retries = Counter("genai_proxy_retries", "Upstream attempts retried, by reason.",
                               ["reason"], registry=registry)
        self.failures = Counter("genai_proxy_upstream_failures",
                                "Upstream calls that failed for good, and streams that broke, "
                                "by kind and upstream.", ["kind", "upstream"], registry=registry)
        self.rate_limit_waits = Counter("genai_proxy_rate_limit_waits",
                                        "Upstream Retry-After waits the proxy absorbed.",
                                        registry=registry)
        # When the proxy started (Unix time), like the client libraries'
        # process_start_time_seconds (their process collector is not in this
        # registry): uptime is time() minus it, in Grafana and on /status alike.
        self.start_time = Gauge("genai_proxy_start_time_seconds",
                                "When the proxy process started, in seconds since the epoch.",
                                registry=registry)
        self.start_time.set_to_current_time()
        self.tokens = Counter("genai_proxy_tokens", "Tokens the upstream reported, by model, "
                              "client and kind (input, output, cached, reasoning).",
                              ["model", "client", "kind"], registry=registry)
        # The limits of models.yaml (genaiproxy.limits).
        self.limited = Counter("genai_proxy_limited", "Requests the proxy refused for a "
                               "client's limit (429) or model list (403), by client and limit.",
                               ["client", "limit"], registry=registry)
        self.cost = Counter("genai_proxy_cost", "What the tokens the upstream reported cost, "
                            "by the models' price in models.yaml, by client and model.",
                            ["client", "model"], registry=registry)
        self.budget_remaining = Gauge("genai_proxy_budget_remaining",
                                      "What is left of a client's budget, by window (day, "
                                      "month).", ["client", "window"],
                                      registry=registry)
        self.limits_store_down = Gauge("genai_proxy_limits_store_unavailable",
                                       "1 while the shared limits store (Redis) cannot be "
                                       "reached.", registry=registry)
        self._models: set[str] = set()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}

    def child(self, family: Any, *labels: str) -> Any:
        """C{family}'s child for C{labels}, kept: prometheus_client's own
        C{labels()} checks and joins the labels on every call (a few
        microseconds, five times a request).  The children live as long
        as the family's own (no label set is ever removed)."""
        key = (family, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    def count_tokens(self, model: str | None, client: str, usage: dict[str, int]) -> None:
        """Add an answer's token counts (from L{genaiproxy.api.usage.usage_of})."""
        label = self.model_label(model)
        for kind, count in usage.items():
            self.child(self.tokens, label, client, kind).inc(count)

    def model_label(self, model: str | None) -> str:
        """C{model} as a label value: none, itself, or other once
        L{MAX_MODELS} distinct names have been seen."""
        if not model:
            return "none"
        # A JSON body may carry a lone surrogate ("\ud800"): no UTF-8 text can
        # hold it, and /metrics and /status are written in UTF-8.
        model = model[:_MAX_LABEL].encode("utf-8", "replace").decode("utf-8")
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODELS:
            return "other"
        self._models.add(model)
        return model

    def reloaded(self, file: str, ok: bool) -> None:
        """A configuration file was (re)loaded, or failed to."""
        self.reloads.labels(file, "ok" if ok else "failed").inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
