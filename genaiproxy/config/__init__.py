"""What the proxy is told: the environment settings, secrets read from files
(keys and client tokens), models.yaml (the model list and its routing to
upstreams), and the certificate authorities it trusts.  Read and checked
here, so that the layers above only ever see values that are valid.
"""

from genaiproxy.config.credentials import (
    ClientTokens,
    SecretError,
    SecretFile,
    parse_header_secret,
    parse_tokens_file,
    read_secret_text,
)
from genaiproxy.config.environment import Config, ConfigError, load_config, strip_userinfo
from genaiproxy.config.models import ModelCatalog, ModelsFileError, parse_models_file
from genaiproxy.config.routing import (
    DEFAULT_UPSTREAM,
    NO_ROUTING,
    ModelRoute,
    RoutingError,
    RoutingTable,
    build_routing,
)
from genaiproxy.config.settings import DEFAULT_LISTEN, DEFAULT_MODELS, environment_help, version_text
from genaiproxy.config.tls import SystemAndExtraTrust, client_tls, trust_root

__all__ = [
    "ClientTokens",
    "Config",
    "ConfigError",
    "DEFAULT_LISTEN",
    "DEFAULT_MODELS",
    "DEFAULT_UPSTREAM",
    "ModelCatalog",
    "ModelRoute",
    "ModelsFileError",
    "NO_ROUTING",
    "RoutingError",
    "RoutingTable",
    "SecretError",
    "SecretFile",
    "SystemAndExtraTrust",
    "build_routing",
    "client_tls",
    "environment_help",
    "load_config",
    "parse_header_secret",
    "parse_models_file",
    "parse_tokens_file",
    "read_secret_text",
    "strip_userinfo",
    "trust_root",
    "version_text",
]
