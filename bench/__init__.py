"""genai-proxy's benchmark: see README.md in this directory.

Modules: ``common`` (constants, HTTP and SSE helpers), ``procs`` (starting and
stopping every process the benchmark runs, RSS/CPU readings), ``wrk`` (load
runs), ``litellm_peer`` (the LiteLLM proxy, installed on demand), one module
per phase (``phase_requests``, ``phase_streaming``, ``phase_open_streams``),
``report`` (Markdown), ``run_bench`` (all phases, one report),
``profile_proxy`` (the proxy under cProfile while wrk runs) and
``stream_memory`` (the proxy under tracemalloc with many streams open).
"""
