"""The twistd service: C{twistd genaiproxy}'s options, the start-up checks,
the listening ports, reloads and the graceful stop (L{service}), and what
it asks of its process (L{process}).  The plugin in
C{twisted/plugins} imports L{genaiproxy.daemon.service} only when used.
"""

__all__: list[str] = []
