"""A mock OpenAI-compatible upstream: a real HTTP server on twisted.web for
tests and demos (C{python -m genaiproxy.mock}, C{genai-mock-upstream}).
It imports nothing from the proxy, so it can stand in for any gateway.
"""

from genaiproxy.mock.controls import MockOptions
from genaiproxy.mock.server import MockResource, MockSite, build_site
from genaiproxy.mock.tool_calls import ToolCall

__all__ = [
    "MockOptions",
    "MockResource",
    "MockSite",
    "ToolCall",
    "build_site",
]
