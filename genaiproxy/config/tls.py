"""Which certificate authorities the proxy trusts for https upstreams.

The system trust store always, plus the PEM bundles named by GENAI_CA_BUNDLE
(for example a TLS-inspecting corporate proxy's CA) and SSL_CERT_FILE.
Hostnames are checked by Twisted's client TLS options (service_identity);
there is no switch to turn verification off.
"""

from __future__ import annotations

import warnings

from cryptography.x509 import load_pem_x509_certificates
from OpenSSL import SSL, crypto

# IOpenSSLTrustRoot is the documented type of optionsForClientTLS's trustRoot
# but is only importable from its implementation module, and its one method
# (_addCACertsToContext, below) is private: Twisted's public trust roots are
# the system store or a list of CAs, never both.  Pinned by
# tests/unit/test_twisted_private.py.
from twisted.internet._sslverify import IOpenSSLTrustRoot
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import optionsForClientTLS
from zope.interface import implementer

from genaiproxy.config.environment import ConfigError


def load_ca_bundle(variable: str, path: str) -> list[crypto.X509]:
    """The certificates in the PEM file at C{path}, or L{ConfigError}."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError(f"{variable} {path!r} cannot be read: {e.strerror or e}") from None
    try:
        with warnings.catch_warnings():
            # System bundles hold a few old certificates cryptography frowns on.
            warnings.simplefilter("ignore")
            certificates = load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{variable} {path!r} holds no valid PEM certificate") from None
    return [crypto.X509.from_cryptography(c) for c in certificates]


@implementer(IOpenSSLTrustRoot)
class SystemAndExtraTrust:
    """The platform's default CA store plus some extra CA certificates."""

    def __init__(self, extra: list[crypto.X509]) -> None:
        self._extra = extra

    def _addCACertsToContext(self, context: SSL.Context) -> None:
        context.set_default_verify_paths()
        store = context.get_cert_store()
        assert store is not None  # every OpenSSL context is made with one
        for certificate in self._extra:
            try:
                store.add_cert(certificate)
            except crypto.Error:
                pass  # already in the store


def trust_root(ca_bundle: str, ssl_cert_file: str) -> SystemAndExtraTrust:
    """The trust root for the configured bundles (checked at start-up)."""
    extra: list[crypto.X509] = []
    if ca_bundle:
        extra += load_ca_bundle("GENAI_CA_BUNDLE", ca_bundle)
    if ssl_cert_file:
        extra += load_ca_bundle("SSL_CERT_FILE", ssl_cert_file)
    return SystemAndExtraTrust(extra)


def client_tls(hostname: str, trust: SystemAndExtraTrust) -> IOpenSSLClientConnectionCreator:
    """TLS options for talking to C{hostname}: SNI, chain and name checked."""
    return optionsForClientTLS(hostname, trustRoot=trust)
