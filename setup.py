"""Packaging for genai-proxy: the package and its twistd plugin."""

from setuptools import find_packages, setup

setup(
    name="genai-proxy",
    version="0.1.0",
    description="OpenAI-compatible proxy daemon on Twisted that injects a subscription key",
    python_requires=">=3.10",
    # Every subpackage of genaiproxy is found, so none is left out of the
    # wheel.  twisted.plugins is a namespace shared with Twisted itself: it is
    # named explicitly, and no __init__.py is shipped for it.
    packages=find_packages(include=["genaiproxy", "genaiproxy.*"]) + ["twisted.plugins"],
    package_data={"twisted.plugins": ["genaiproxy_plugin.py"]},
    # The design's stack: Twisted (with its tls extra, which brings
    # pyOpenSSL and service-identity), treq for the upstream calls, PyYAML
    # for models.yaml.  pyOpenSSL and service-identity are named as well, as
    # the TLS code imports them directly (and cryptography, which pyOpenSSL
    # itself requires, for reading PEM bundles).
    install_requires=[
        # Below Twisted's next major release: the proxy relies on a few
        # private parts of Twisted (listed in genaiproxy/server/_twisted_private.py),
        # pinned by tests/unit/test_twisted_private.py.  The bound is moved
        # deliberately, once the suite passes on the new release.
        "Twisted[tls]>=23.10,<27",
        "treq>=26.7",  # treq.cookies.IndexableCookieJar, our jar's base
        "PyYAML>=6",
        # genai-proxy configure codex: round-trip TOML editing of the user's
        # ~/.codex/config.toml that keeps their comments and formatting
        # (the standard library's tomllib only reads).
        "tomlkit>=0.12",
        "pyOpenSSL>=24",
        "service-identity>=24",
        # /metrics: the Prometheus client's own registry, metric types and
        # text exposition, rather than a hand-written format.
        "prometheus-client>=0.20",
        # The clients' limits shared by replicas through Redis
        # (genaiproxy/limits/redis_store.py): a Redis client that speaks
        # Twisted's protocols (no thread, no second event loop), with a
        # lazy pool that reconnects by itself, EVALSHA and TLS.  Below 2: the
        # store extends its connection factory (RedisFactory).
        "txredisapi>=1.6,<2",
    ],
    extras_require={
        "test": [
            # Pinned: a new release can change what a test sees (the openai
            # SDK's exception for a broken stream, say) without any change here.
            "pytest==9.2.0",
            # A silent daemon fails its test after a while instead of hanging.
            "pytest-timeout==2.4.0",
            "httpx==0.28.1",
            "openai==3.57.0",
            # The Messages API's client (issue 20): its SDK and types check
            # what the proxy answers on /v1/messages.
            "anthropic==2.10.0",
            "hypothesis==6.170.17",
            "trustme==1.2.1",
            # The wheel test builds without build isolation, so without network.
            "setuptools>=64",
            "wheel",
            # Types and lint, checked by run-tests before pytest.  Pinned:
            # a new release of either may find new things in unchanged code,
            # and mypy-zope supports a narrow range of mypy versions.
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
            "types-PyYAML",
            "ruff==0.17.6",
            # The Kubernetes manifests (tests/test_kubernetes.py) are checked
            # against the API schemas of a named release, which this package
            # ships (no cluster, no network); strict mode rejects unknown fields.
            "kubernetes-validate==1.37.0",
            # The docs site: run-tests builds docs/ with `mkdocs build --strict`,
            # so that a broken link or a page left out of the nav fails the
            # suite.  Pinned: a new release may warn about more (strict mode
            # fails on any warning) in pages that did not change.
            "mkdocs==1.6.1",
        ],
    },
    entry_points={
        "console_scripts": [
            "genai-proxy=genaiproxy.cli.main:main",
            # The older name of "genai-proxy quickstart", kept working.
            "genai-proxy-quickstart=genaiproxy.cli.quickstart:main",
            "genai-mock-upstream=genaiproxy.mock.cli:main",
        ],
    },
)
