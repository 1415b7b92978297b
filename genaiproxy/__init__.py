"""genai-proxy: an OpenAI-compatible proxy that injects a subscription key."""

__version__ = "0.1.0"
