"""C{genai-proxy doctor}: the path a request takes, walked step by step with
the daemon's own parts, and a report of what breaks it.
"""

__all__: list[str] = []
