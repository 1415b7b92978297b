"""Packaging for genai-proxy: the package and its twistd plugin."""

from setuptools import setup

setup(
    name="genai-proxy",
    version="0.1.0",
    description="OpenAI-compatible proxy daemon on Twisted that injects a subscription key",
    python_requires=">=3.10",
    # twisted.plugins is a namespace shared with Twisted itself: list it
    # explicitly and ship no __init__.py for it.
    packages=["genaiproxy", "twisted.plugins"],
    package_data={"twisted.plugins": ["genaiproxy_plugin.py"]},
    # The design's stack: Twisted (with its tls extra, which brings
    # pyOpenSSL and service-identity), treq for the upstream calls, PyYAML
    # for models.yaml.  pyOpenSSL and service-identity are named as well, as
    # the TLS code imports them directly (and cryptography, which pyOpenSSL
    # itself requires, for reading PEM bundles).
    install_requires=[
        "Twisted[tls]>=23.10",
        "treq>=24.9",
        "PyYAML>=6",
        "pyOpenSSL>=24",
        "service-identity>=24",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            # A silent daemon fails its test after a while instead of hanging.
            "pytest-timeout>=2.3",
            "httpx>=0.27",
            "openai>=1.40",
            "hypothesis>=6",
            "trustme>=1.1",
            # Types and lint, checked by run-tests before pytest.  Pinned:
            # a new release of either may find new things in unchanged code,
            # and mypy-zope supports a narrow range of mypy versions.
            "mypy==2.4.1",
            "mypy-zope==1.0.17",
            "types-PyYAML",
            "ruff==0.17.6",
        ],
    },
    entry_points={
        "console_scripts": [
            "genai-proxy-quickstart=genaiproxy.quickstart:main",
            "genai-mock-upstream=genaiproxy.mock_upstream:main",
        ],
    },
)
