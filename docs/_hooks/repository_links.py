"""MkDocs hook: links from the docs to the repository's files outside docs/.

The pages link to files of the repository (bench/RESULTS.md, deploy/,
install.sh, ...) with relative links, which GitHub follows.  The built site
holds only docs/, and MkDocs would report each such link as broken.  This
hook checks that the file exists in the checkout (a missing one is a warning,
so that C{mkdocs build --strict} fails on it as on any other broken link)
and writes the link in the site as the file's path in the repository.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import get_plugin_logger

log = get_plugin_logger("repository_links")

# [text](target) and [text](target#anchor), outside code.
_LINK = re.compile(r"\[(?P<text>[^\]\n]+)\]\((?P<target>[^)\s#]+)(?:#[^)\s]*)?\)")
_FENCE = re.compile(r"^(```|~~~)", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Rewrite the page's links that leave docs/ for a file of the repository."""
    docs = Path(config["docs_dir"]).resolve()
    repository = docs.parent
    here = (docs / page.file.src_uri).parent

    def rewrite(match: re.Match[str]) -> str:
        target = match["target"]
        if ":" in target or target.startswith("/"):
            return match[0]  # a URL, or an absolute link: MkDocs judges those
        path = (here / target).resolve()
        if path.is_relative_to(docs):
            return match[0]  # a page of the docs: MkDocs checks it
        if not path.is_relative_to(repository) or not path.exists():
            log.warning("%s links to %s, which is not in the repository", page.file.src_uri, target)
            return match[0]
        shown = path.relative_to(repository).as_posix()
        text = match["text"]
        return text if shown in text else f"{text} (`{shown}`)"

    # Only prose is rewritten: fenced code blocks stay as they are.
    parts = _FENCE.split(markdown)
    out, in_code = [], False
    for part in parts:
        if part in ("```", "~~~"):
            in_code = not in_code
            out.append(part)
        else:
            out.append(part if in_code else _LINK.sub(rewrite, part))
    return "".join(out)
