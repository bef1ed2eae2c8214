"""Prompt-learning trainers; importing this package registers every trainer in ``engine.TRAINER_REGISTRY``."""
from . import coop, zsclip  # noqa: F401  (registration by import)
