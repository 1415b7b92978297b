"""Doctor's network steps for one upstream: resolve, connect, CONNECT, TLS."""

from __future__ import annotations

from time import monotonic
from typing import Any
from urllib.parse import urlsplit

from service_identity import VerificationError
from twisted.python.failure import Failure

from genaiproxy.cli.doctor.checks import (
    presented_chain,
    resolve,
    route_to,
    summarize,
    tcp,
    tls_reason,
    tunnel,
    verified,
)
from genaiproxy.cli.doctor.report import Report, Step
from genaiproxy.config import DEFAULT_UPSTREAM, Config, trust_root
from genaiproxy.upstream import ForwardProxy, ProxyConnectError, UpstreamEndpoints, describe_failure


def _setting(name: str, variable: str, key: str) -> str:
    """How a person sets something: a variable for the default upstream,
    a key of its models.yaml entry for another."""
    return variable if name == DEFAULT_UPSTREAM else f"{key} of upstream {name!r} in models.yaml"


async def _failure_of(deferred: Any) -> tuple[Any, Failure | None]:
    try:
        return await deferred, None
    except Exception:
        return None, Failure()


async def check_network(reactor: Any, report: Report, name: str, config: Config) -> bool:
    """Steps 3 to 5 for one upstream; True when all passed."""
    url = urlsplit(config.base_url)
    host, https = url.hostname or "", url.scheme == "https"
    port = url.port or (443 if https else 80)
    trust = trust_root(config.ca_bundle, config.ssl_cert_file)
    proxy = ForwardProxy(config.https_proxy) if config.https_proxy else None
    endpoints = UpstreamEndpoints(reactor, config.request_timeout, trust, proxy, config.no_proxy)
    via = endpoints.proxy_for(host, port)
    base_url = _setting(name, "GENAI_BASE_URL", "base_url")

    # 3. Names: the origin's, and the proxy's when one is used.
    started = monotonic()
    if via is None:
        decision = ("direct: NO_PROXY matches" if proxy is not None else
                    "direct: no HTTPS_PROXY")
        looked_up, target = host, port
    else:
        decision = f"through {via.display} (NO_PROXY does not match {host})"
        looked_up, target = via.host, via.port
    addresses, problem = await _failure_of(resolve(reactor, looked_up, target))
    if problem is not None:
        report.add(Step("resolve", "fail", f"{looked_up}: {problem.getErrorMessage()}", started,
                        cause=f"the name {looked_up} does not resolve from this machine",
                        fix=(f"check the host of {base_url}, your DNS or VPN; behind a "
                             "corporate proxy set HTTPS_PROXY (the proxy resolves names)")
                        if via is None else "check the host of HTTPS_PROXY"))
        return False
    report.add(Step("resolve", "pass", f"{looked_up} -> {', '.join(addresses[:4])}; {decision}",
                    started))

    # 4. TCP to the origin or to the proxy, then the tunnel through it.
    started = monotonic()
    peer, problem = await _failure_of(tcp(reactor, looked_up, target, config.request_timeout))
    if problem is not None:
        what = "the forward proxy" if via is not None else "the upstream"
        report.add(Step("connect", "fail", f"{looked_up}:{target}: {describe_failure(problem)}",
                        started, cause=f"{what} does not accept connections from here",
                        fix="check HTTPS_PROXY" if via is not None else
                        f"check the host and port of {base_url}, a firewall or VPN; if this "
                        "network reaches the internet only through a proxy, set HTTPS_PROXY"))
        return False
    report.add(Step("connect", "pass", f"{looked_up}:{target} ({peer})", started))
    if via is not None and https:
        started = monotonic()
        _, problem = await _failure_of(tunnel(endpoints, via, host, port))
        if problem is not None:
            report.add(_tunnel_failure(problem, via, host, port, started))
            return False
        report.add(Step("proxy CONNECT", "pass", f"{via.display} opened a tunnel to "
                        f"{host}:{port}", started))
    elif via is not None:
        report.add(Step("proxy CONNECT", "skip", "plain http: the proxy gets each request "
                        "itself (no tunnel)", monotonic()))
    if not https:
        return True

    # 5. TLS: the chain as presented, then the daemon's own verification.
    started = monotonic()
    base = route_to(reactor, endpoints, host, port, config.request_timeout)
    chain, problem = await _failure_of(presented_chain(base, host))
    if problem is not None:
        report.add(Step("tls", "fail", f"no TLS handshake with {host}:{port}: "
                        f"{describe_failure(problem)}", started,
                        cause="the server does not speak TLS there",
                        fix=f"check the scheme and port of {base_url}"))
        return False
    shown = [summarize(certificate) for certificate in chain]
    seen = "; ".join(f"{c.subject} (issued by {c.issuer})" for c in shown) or "no certificate"
    _, problem = await _failure_of(verified(base, host, trust))
    if problem is None:
        report.add(Step("tls", "pass", seen, started))
        return True
    bundle = _setting(name, "GENAI_CA_BUNDLE", "ca_bundle")
    if problem.check(VerificationError):
        names = ", ".join(shown[0].names) if shown else "none"
        report.add(Step("tls", "fail", f"{seen}; valid for: {names}", started,
                        cause=f"the certificate is not for {host}",
                        fix=f"use a host name the certificate holds in {base_url}"))
        return False
    top = shown[-1].issuer if shown else "unknown"
    report.add(Step("tls", "fail", f"{seen}: not trusted ({tls_reason(problem)})", started,
                    cause=f"the chain ends at an issuer this machine does not trust: {top}. "
                          "That is what TLS inspection by a corporate CA looks like",
                    fix=f"export that CA ({top}) as PEM and set {bundle} to its path"))
    return False


def _tunnel_failure(problem: Failure, proxy: ForwardProxy, host: str, port: int,
                    started: float) -> Step:
    refusal = problem.value
    status = refusal.status if isinstance(refusal, ProxyConnectError) else None
    detail = f"{proxy.display} -> {host}:{port}: {problem.getErrorMessage()}"
    if status == 407:
        return Step("proxy CONNECT", "fail", detail, started,
                    cause="the proxy wants credentials",
                    fix="put them in HTTPS_PROXY: http://user:password@proxy:port")
    if status == 403:
        return Step("proxy CONNECT", "fail", detail, started,
                    cause=f"the proxy refuses {host}",
                    fix=f"ask for {host}:{port} to be allowed, or add {host} to NO_PROXY if "
                        "it is reachable directly")
    return Step("proxy CONNECT", "fail", detail, started, cause="the tunnel was not opened",
                fix="check HTTPS_PROXY and NO_PROXY")
