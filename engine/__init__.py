"""Method- and model-agnostic engine: config, registries, data protocol, training loop, checkpoints, evaluation.

Imports nothing from clip/, trainers/ or datasets/.
"""
from .config import get_cfg_default
from .registry import DATASET_REGISTRY, TRAINER_REGISTRY, Registry


def build_trainer(cfg):
    """Build the trainer registered as ``cfg.TRAINER.NAME``, called as ``cls(cfg)``."""
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)


__all__ = ["Registry", "TRAINER_REGISTRY", "DATASET_REGISTRY", "get_cfg_default", "build_trainer"]
