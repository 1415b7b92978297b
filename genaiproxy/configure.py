"""genai-proxy configure CLIENT: not written yet (issue 13, in progress)."""

from __future__ import annotations

import sys
from typing import Any


def run(options: Any) -> int:
    """Write the configuration of C{options["client"]}; the exit status."""
    sys.stderr.write("genai-proxy configure: not available yet\n")
    return 1
