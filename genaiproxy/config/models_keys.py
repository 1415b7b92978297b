"""The one table of models.yaml's keys: the top-level keys, a model entry's,
an upstream's, each declared once with a one-line help.

What the file accepts is made from it (an upstream's unknown key is refused;
a model entry's keys that are not C{listed} are kept off C{/v1/models}), and
so is docs/reference/models-yaml.md (L{genaiproxy.config.reference}).  A key
that an issue to come adds (C{responses_api}, C{messages_api}, C{limits},
C{price}) is one more row here, then its handling where the file is read
(L{genaiproxy.config.models}, L{genaiproxy.config.routing}).
"""

from __future__ import annotations

from dataclasses import dataclass

from genaiproxy.config.kinds import Integer, Number
from genaiproxy.config.settings import BY_NAME, Setting

# The upstream the environment defines; models.yaml names the others.
DEFAULT_UPSTREAM = "default"
# What a model entry gets when it does not say.
DEFAULT_OBJECT = "model"
DEFAULT_OWNER = "genai"
_INHERITED = "the default upstream's"


@dataclass(frozen=True)
class Key:
    """One key of models.yaml.

    @ivar name: the key.
    @ivar help: one line.
    @ivar default: the value when it is absent (empty when there is none).
    @ivar shown_default: what it is when absent, in words, when that is not
        one value.
    @ivar required: an entry without it is refused (or, for a model's
        C{id}, skipped).
    @ivar routing: a model entry's key that its route carries (where its
        requests go, and how they are sent); a file with one is routed
        (L{genaiproxy.config.routing}).
    @ivar listed: a model entry's key shown on C{/v1/models}.
    @ivar count: a model entry's key whose value is a whole number of
        tokens, above 0; any other value refuses the file.
    @ivar like: the environment setting this key is an upstream's own of.
    """

    name: str
    help: str
    default: str = ""
    shown_default: str = ""
    required: bool = False
    routing: bool = False
    listed: bool = True
    count: bool = False
    like: str = ""

    @property
    def setting(self) -> Setting | None:
        """The environment setting it is an upstream's own of, if any."""
        return BY_NAME[self.like] if self.like else None

    def default_text(self) -> str:
        """The default as the reference shows it (Markdown)."""
        if self.required:
            return "required"
        if self.shown_default:
            return self.shown_default
        return f"`{self.default}`" if self.default else "none"


TOP_KEYS: tuple[Key, ...] = (
    Key("models", "the model entries (the file may also be that list alone)"),
    Key("upstreams", f"more upstreams, by name, besides `{DEFAULT_UPSTREAM}` (the environment's)"),
    Key("limits", "rate limits, quotas, budgets and model lists per client: `default:` for "
        "every client without an entry of its own, `clients:` by name"),
)

MODEL_KEYS: tuple[Key, ...] = (
    Key("id", "the model's id, as clients send it; an entry without one is skipped",
        required=True),
    Key("object", "shown on `/v1/models`", default=DEFAULT_OBJECT),
    Key("owned_by", "shown on `/v1/models`", default=DEFAULT_OWNER),
    Key("created", "shown on `/v1/models` (seconds since 1970)",
        shown_default="the time the file was read"),
    Key("upstream", "the upstream that serves it", default=DEFAULT_UPSTREAM, routing=True,
        listed=False),
    Key("upstream_model", "the model name sent upstream, when it is not the id (an alias)",
        routing=True, listed=False),
    Key("hidden", "`true`: routable and answered on `/v1/models/{id}`, not listed on `/v1/models`",
        default="false", routing=True, listed=False),
    Key("fallbacks", "model ids of this file to try, in order, when its upstream fails",
        routing=True, listed=False),
    Key("max_output_tokens", "the most tokens an answer may take: a request that asks for "
        "more is sent upstream with this cap, on every route",
        routing=True, listed=False, count=True),
    Key("context_window", "the model's context window, in tokens: `genai-proxy configure "
        "claude-code` tells Claude Code, which then compacts before it is full",
        listed=False, count=True),
    Key("price", "what a million tokens cost, for the budgets of `limits:`: "
        "`{input: 1.25, output: 10.0, cached_input: 0.125}`", shown_default="free",
        listed=False),
)

LIMIT_KEYS: tuple[Key, ...] = (
    Key("requests_per_minute", "requests in any rolling minute"),
    Key("tokens_per_minute", "tokens (input and output, as the answers report them) in any "
        "rolling minute"),
    Key("concurrent_requests", "requests and streams under way at once"),
    Key("tokens_per_day", "tokens in a calendar day (UTC)"),
    Key("budget_per_day", "what the tokens of a calendar day (UTC) may cost, by the models' "
        "`price`"),
    Key("budget_per_month", "the same, for a calendar month (UTC)"),
    Key("models", "the model ids this client may use (ids of this file); others get 403 and "
        "`/v1/models` lists only these"),
)

PRICE_KEYS: tuple[Key, ...] = (
    Key("input", "a million input tokens", required=True),
    Key("output", "a million output tokens", required=True),
    Key("cached_input", "a million input tokens read from the upstream's prompt cache",
        shown_default="as `input`"),
)

UPSTREAM_KEYS: tuple[Key, ...] = (
    Key("base_url", "its base URL; request paths are appended", required=True,
        like="GENAI_BASE_URL"),
    Key("subscription_name", "the header that carries its key", shown_default="empty: no key",
        like="GENAI_SUBSCRIPTION_NAME"),
    Key("api_key_env", "the name of the proxy's environment variable that holds its key"),
    Key("api_key_file", "or a file holding it (absolute, or starting with `./` or `~/`), "
        "read again when it changes"),
    Key("api_version", "added as `api-version` to its query strings (`\"\"` for none)",
        shown_default=_INHERITED, like="GENAI_API_VERSION"),
    Key("responses_api", "`auto`, `native` or `chat`: how `/v1/responses` reaches it",
        shown_default=_INHERITED, like="RESPONSES_API"),
    Key("messages_api", "`chat` or `native`: how `/v1/messages` reaches it",
        shown_default=_INHERITED, like="MESSAGES_API"),
    Key("ca_bundle", "a PEM file of extra CAs to trust for it", shown_default=_INHERITED,
        like="GENAI_CA_BUNDLE"),
    Key("request_timeout", "its own timeout, in seconds", shown_default=_INHERITED,
        like="REQUEST_TIMEOUT"),
    Key("max_retries", "its own number of retries", shown_default=_INHERITED,
        like="MAX_RETRIES"),
    Key("retry_backoff_sec", "its own wait before a retry", shown_default=_INHERITED,
        like="RETRY_BACKOFF_SEC"),
)

# Keys that would write a secret into the file: refused in an upstream and
# in a model entry (which /v1/models would show).
REFUSED_KEYS = frozenset({"api_key", "api-key", "apikey", "key", "subscription_key", "token",
                          "password", "secret"})

# A model entry's keys that say how it is routed.
ROUTING_KEYS = frozenset(key.name for key in MODEL_KEYS if key.routing)
# A model entry's keys never shown on /v1/models.
UNLISTED_KEYS = frozenset(key.name for key in MODEL_KEYS if not key.listed)
# A model entry's keys that hold a number of tokens.
COUNT_KEYS = tuple(key.name for key in MODEL_KEYS if key.count)
# The keys an upstream accepts.
UPSTREAM_KEY_NAMES = frozenset(key.name for key in UPSTREAM_KEYS)
# An upstream's numbers of its own: (key, the Config field it replaces, int or float).
UPSTREAM_NUMBERS: tuple[tuple[str, str, type], ...] = tuple(
    (key.name, key.setting.attribute, int if isinstance(key.setting.kind, Integer) else float)
    for key in UPSTREAM_KEYS
    if key.setting is not None and isinstance(key.setting.kind, Integer | Number))
