"""The reference pages made from the tables: docs/reference/configuration.md
from the environment settings (L{genaiproxy.config.settings}) and
docs/reference/models-yaml.md from models.yaml's keys
(L{genaiproxy.config.models_keys}).  Plain Markdown tables, which read the
same on GitHub and in MkDocs.

    python -m genaiproxy.config.reference docs/reference           write them
    python -m genaiproxy.config.reference --check docs/reference   exit 1 if stale

tests/unit/test_settings_table.py fails when a committed page is not what
the tables make.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genaiproxy.config.models_keys import (
    LIMIT_KEYS,
    MODEL_KEYS,
    PRICE_KEYS,
    REFUSED_KEYS,
    TOP_KEYS,
    UPSTREAM_KEYS,
    Key,
)
from genaiproxy.config.settings import (
    DEFAULT_LISTEN,
    DEFAULT_MODELS,
    GROUPS,
    LISTEN_HELP,
    SETTINGS,
    Setting,
)

_GENERATED = ("<!-- Made by `python -m genaiproxy.config.reference docs/reference` from {source}:"
              " edit the table there, then run that command; do not edit this page. -->")


def _cell(text: str) -> str:
    """C{text} fit for a table cell: a C{|} would end the cell."""
    return text.replace("|", "\\|")


def _sentence(text: str) -> str:
    """A help line as the start of a sentence, ending with a full stop."""
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _row(*cells: str) -> str:
    return "| " + " | ".join(_cell(cell) for cell in cells) + " |"


def _setting_row(item: Setting) -> str:
    if item.required or item.shown_default:
        default = item.default_text()  # words: "required", "text on a terminal, ..."
    else:
        default = f"`{item.default_text()}`" if item.default_text() else "empty"
    return _row(f"`{item.name}`", default, item.kind.label(), item.details or _sentence(item.help))


def configuration_page() -> str:
    """docs/reference/configuration.md."""
    lines = [
        _GENERATED.format(source="genaiproxy/config/settings.py"),
        "",
        "# Configuration",
        "",
        "All settings come from the environment. A missing required variable or an invalid",
        "value stops start-up with one line that names the variable, and exit status 2;",
        "nothing listens. An empty variable counts as unset. Booleans accept `true`/`false`,",
        "`1`/`0`, `yes`/`no`, `on`/`off`. `twistd genaiproxy --help` lists the same settings,",
        "one line each, and `genai-proxy doctor` checks them as the daemon would.",
        "",
        "## Options",
        "",
        "The daemon's own options come after `genaiproxy` on the twistd command line;",
        "`genai-proxy doctor` and `genai-proxy configure` take the same two, to describe the",
        "daemon they would start.",
        "",
        "| Option | Default | Meaning |",
        "|---|---|---|",
        _row("`--listen`, `-l`", f"`{DEFAULT_LISTEN}`",
             f"{LISTEN_HELP} For example `tcp:8111:interface=0.0.0.0`, `ssl:...`, "
             "`systemd:domain=INET:index=0`."),
        _row("`--models`, `-m`", f"`{DEFAULT_MODELS}`",
             "The model list served on `/v1/models` (see [models.yaml](models-yaml.md)). The "
             "default may be missing (an empty list); a path given here must exist."),
    ]
    for group in GROUPS:
        lines += ["", f"## {group}", "",
                  "| Variable | Default | Type | Meaning |", "|---|---|---|---|"]
        lines += [_setting_row(item) for item in SETTINGS if item.group == group]
    return "\n".join(lines) + "\n"


def _anchor(heading: str) -> str:
    """The anchor GitHub and MkDocs give a heading of plain words."""
    return "-".join(heading.lower().split())


def _key_rows(keys: tuple[Key, ...], defaults: bool = True) -> list[str]:
    head = ["| Key | Default | Meaning |", "|---|---|---|"] if defaults else \
        ["| Key | Meaning |", "|---|---|"]
    rows = []
    for key in keys:
        meaning = _sentence(key.help)
        if key.setting is not None:
            meaning += (f" As [`{key.like}`](configuration.md#{_anchor(key.setting.group)}), "
                        "for this upstream.")
        rows.append(_row(f"`{key.name}`", key.default_text(), meaning) if defaults else
                    _row(f"`{key.name}`", meaning))
    return head + rows


def models_yaml_page() -> str:
    """docs/reference/models-yaml.md."""
    refused = ", ".join(f"`{name}`" for name in sorted(REFUSED_KEYS))
    lines = [
        _GENERATED.format(source="genaiproxy/config/models_keys.py"),
        "",
        "# models.yaml",
        "",
        "The model list served on `/v1/models`, and where each model's requests go. The file",
        "is either a list of model entries or a mapping with the keys below. It is read again",
        "when it changes; a version with a mistake is refused whole, and the last good one",
        "stays in service.",
        "",
        "```yaml",
        "upstreams:",
        "  local:",
        "    base_url: http://127.0.0.1:11434",
        "models:",
        "  - id: gpt-5",
        "  - id: llama3.2",
        "    upstream: local",
        "```",
        "",
        "## Top-level keys",
        "",
        *_key_rows(TOP_KEYS, defaults=False),
        "",
        "## A model entry",
        "",
        "Any other key of an entry is passed on to `/v1/models` as it is. These keys",
        f"({', '.join(f'`{key.name}`' for key in MODEL_KEYS if not key.listed)}) are never "
        "shown there.",
        "",
        *_key_rows(MODEL_KEYS),
        "",
        "## An upstream",
        "",
        "Each entry of `upstreams:` is an upstream besides `default`, which the environment",
        "defines; what it does not set is inherited from `default`, except its key. Any",
        "other key is refused.",
        "",
        *_key_rows(UPSTREAM_KEYS),
        "",
        "## Limits",
        "",
        "`limits:` holds `default:` (every client without an entry of its own; with",
        "`AUTH_TOKEN`, or no token, every request is the client `default`) and `clients:`,",
        "by the names of `AUTH_TOKENS_FILE`. A client's entry replaces the default's keys it",
        "names and inherits the others; a key left out means no limit of that kind. Numbers",
        "are whole (budgets may have decimals) and not negative; any other key is refused.",
        "",
        "```yaml",
        "limits:",
        "  default:",
        "    requests_per_minute: 120",
        "    budget_per_day: 20",
        "  clients:",
        "    ci-runner:",
        "      requests_per_minute: 600",
        "      models: [gpt-4.1-mini]",
        "models:",
        "  - id: gpt-4.1-mini",
        "    price: {input: 0.4, output: 1.6, cached_input: 0.1}",
        "```",
        "",
        *_key_rows(LIMIT_KEYS, defaults=False),
        "",
        "A model's `price`, per million tokens (numbers, not negative):",
        "",
        *_key_rows(PRICE_KEYS),
        "",
        "## Keys refused everywhere",
        "",
        "A key is never written in the file itself. These keys are refused in an upstream and",
        "in a model entry:",
        "",
        refused + ".",
        "",
        "An upstream names the variable (`api_key_env`) or the file (`api_key_file`) that",
        "holds its key instead.",
    ]
    return "\n".join(lines) + "\n"


PAGES = {"configuration.md": configuration_page, "models-yaml.md": models_yaml_page}


def main(argv: list[str] | None = None) -> int:
    """Write the pages into a folder (or, with C{--check}, say which differ)."""
    parser = argparse.ArgumentParser(prog="python -m genaiproxy.config.reference",
                                     description="Write the reference pages made from the tables.")
    parser.add_argument("folder", type=Path, help="where the pages go (docs/reference)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 when a page differs from the tables")
    args = parser.parse_args(argv)
    stale = []
    for name, make in PAGES.items():
        path = args.folder / name
        text = make()
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
        else:
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{path} is not what the tables make: run python -m genaiproxy.config.reference "
              f"{args.folder}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
