"""twistd plugin: `twistd -n genaiproxy`.

ServiceMaker imports genaiproxy.daemon.service only when the plugin is used, so
plugin discovery stays cheap and never fails on our imports.
"""

from twisted.application.service import ServiceMaker

genaiproxy = ServiceMaker(
    "genai-proxy",
    "genaiproxy.daemon.service",
    "OpenAI-compatible proxy that injects a subscription key and forwards upstream.",
    "genaiproxy",
)
