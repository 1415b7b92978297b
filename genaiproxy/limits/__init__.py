"""Per-client limits: rate limits, quotas, budgets and model lists, from
models.yaml's C{limits:} (read by L{genaiproxy.config.limits}).

The windows' arithmetic (L{windows}), this process's windows (L{memory})
and the state file that keeps their days and months across restarts
(L{state}), the windows shared by replicas through Redis
(L{redis_store}: its scripts in L{redis_scripts}, its connection in
L{redis_connection}, what it knows of each client's room to let requests
through ahead of Redis's answer in L{redis_view}), and the L{Limiter} that
the forwarding asks before a request goes upstream (L{limiter}).
"""

from genaiproxy.limits.limiter import Limiter, SharedWindows
from genaiproxy.limits.memory import MemoryWindows
from genaiproxy.limits.state import StateFile, state_path
from genaiproxy.limits.windows import Admission, Window, format_reset

__all__ = ["Admission", "Limiter", "MemoryWindows", "SharedWindows", "StateFile", "Window",
           "format_reset", "state_path"]
