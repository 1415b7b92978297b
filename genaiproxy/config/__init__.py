"""What the proxy is told: the environment settings, secrets read from files
(keys and client tokens), models.yaml (the model list and its routing to
upstreams), C{--listen}, and the certificate authorities it trusts.  Read
and checked here, so that the layers above only ever see values that are
valid.

The environment settings are one table (L{genaiproxy.config.settings}), and
so are models.yaml's keys (L{genaiproxy.config.models_keys}); the reference
pages in docs/reference are made from them by L{genaiproxy.config.reference}.
"""

from genaiproxy.config.credentials import (
    ClientTokens,
    SecretError,
    SecretFile,
    parse_header_secret,
    parse_tokens_file,
    read_secret_text,
)
from genaiproxy.config.environment import load_config
from genaiproxy.config.kinds import ConfigError, strip_userinfo
from genaiproxy.config.limits import (
    DEFAULT_CLIENT,
    NO_LIMITS,
    ClientLimits,
    LimitRules,
    LimitsError,
    Price,
    parse_limits,
)
from genaiproxy.config.listen import Listen, parse_listen
from genaiproxy.config.models import (
    ModelCatalog,
    ModelsFileError,
    parse_models_document,
    parse_models_file,
)
from genaiproxy.config.models_keys import DEFAULT_UPSTREAM
from genaiproxy.config.routing import (
    NO_ROUTING,
    ModelRoute,
    RoutingError,
    RoutingTable,
    build_routing,
)
from genaiproxy.config.settings import (
    BY_NAME,
    DEFAULT_LISTEN,
    DEFAULT_MODELS,
    LISTEN_HELP,
    MODELS_HELP,
    SETTINGS,
    Config,
    Setting,
    default_of,
    environment_help,
    version_text,
)
from genaiproxy.config.tls import SystemAndExtraTrust, client_tls, trust_root

__all__ = [
    "BY_NAME",
    "DEFAULT_CLIENT",
    "NO_LIMITS",
    "ClientLimits",
    "ClientTokens",
    "Config",
    "ConfigError",
    "DEFAULT_LISTEN",
    "DEFAULT_MODELS",
    "DEFAULT_UPSTREAM",
    "LISTEN_HELP",
    "LimitRules",
    "LimitsError",
    "Listen",
    "MODELS_HELP",
    "ModelCatalog",
    "ModelRoute",
    "ModelsFileError",
    "NO_ROUTING",
    "Price",
    "RoutingError",
    "RoutingTable",
    "SETTINGS",
    "SecretError",
    "SecretFile",
    "Setting",
    "SystemAndExtraTrust",
    "build_routing",
    "client_tls",
    "default_of",
    "environment_help",
    "load_config",
    "parse_header_secret",
    "parse_limits",
    "parse_listen",
    "parse_models_document",
    "parse_models_file",
    "parse_tokens_file",
    "read_secret_text",
    "strip_userinfo",
    "trust_root",
    "version_text",
]
