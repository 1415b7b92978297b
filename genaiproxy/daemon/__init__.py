"""The twistd service: C{twistd genaiproxy}'s options, the start-up checks,
the listening ports, reloads and the graceful stop.  The plugin in
C{twisted/plugins} imports L{genaiproxy.daemon.service} only when used.
"""

__all__: list[str] = []
