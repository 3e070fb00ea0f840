"""Limner: a self-hosted image generation service that speaks the OpenAI Images API."""

__version__ = "0.1.0"
