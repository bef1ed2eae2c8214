"""CLIP with prompt-token entry points; ``from clip import clip`` gives OpenAI's API (load, tokenize, ...)."""
from .clip import available_models, load, tokenize

__all__ = ["available_models", "load", "tokenize"]
