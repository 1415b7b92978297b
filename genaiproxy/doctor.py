"""genai-proxy doctor: not written yet (issue 13, in progress)."""

from __future__ import annotations

import sys
from typing import Any


def run(options: Any) -> int:
    """Check the path to the upstream; the exit status."""
    sys.stderr.write("genai-proxy doctor: not available yet\n")
    return 1
