"""Glue for trainers that learn over a frozen CLIP's image features (linear probe, adapters): load CLIP once,
freeze it, say which encoder the cached features come from. The caching itself is engine/features.py."""
from __future__ import annotations

import logging

import torch

from clip.model import CLIP, cast_model
from engine.features import FeatureTrainer, tensors_digest

from .base import check_input_size, freeze, load_clip
from .replay import replay_openai_init

logger = logging.getLogger(__name__)


class FrozenCLIPTrainer(FeatureTrainer):
    """A :class:`FeatureTrainer` whose features are the frozen CLIP image tower's (unnormalised, fp32).

    ``self.clip`` is the frozen model; subclasses build their head in :meth:`build_head` and register it. On a
    GPU the tower runs in fp16, as the official feature scripts' CLIP; on the CPU in fp32.
    """

    def build_model(self) -> None:
        self.clip: CLIP = freeze(load_clip(self.cfg))
        # the loaded image tower's tensors, not a file: the same for every family, layout and name that loads them
        self.tower_digest = tensors_digest(self.clip.visual.state_dict())
        check_input_size(self.cfg, self.clip)
        self.precision = self.build_precision("fp16" if self.device.type == "cuda" else "fp32")
        cast_model(self.clip.to(self.device), self.precision.frozen_dtype)
        self.build_head()

    def build_head(self) -> None:
        """Build ``self.model`` from ``self.clip`` and ``register_model`` it."""
        raise NotImplementedError

    def replay_clip_construction(self) -> None:
        """Advance the global generator as OpenAI's CLIP constructor did in the official run, so that a head
        drawn next gets the official initial weights (``MODEL.REPLAY_CLIP_INIT``; see trainers/replay.py)."""
        if self.cfg.MODEL.REPLAY_CLIP_INIT:
            replay_openai_init(**self.clip.config)

    def encoder_identity(self) -> str:
        return f"clip-image:{self.tower_digest}:{self.precision.frozen_dtype}"

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.clip.encode_image(images.to(self.clip.dtype)).float()  # (B, E)
