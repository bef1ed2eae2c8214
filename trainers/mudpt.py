"""MuDPT: deep text and vision prompts that inform each other through an injection network, in three variants.

``MuDPT``   two-way linear injection: ``V0 = vision_ctx + A(ctx)``, ``V_j = vision_deep_j + B(text_deep_j)``,
            ``T_j = text_deep_j + C(vision_deep_j)``; the shallow text prompt ``ctx`` gets nothing from vision.
``UMuDPT``  text -> vision only: every visual prompt level is ``proj(LN(block(LN(text level))))``; no own visual
            prompts, the text prompts are used unchanged.
``UUMuDPT`` a transformer injection in each direction, added to each tower's own prompts (the shallow visual
            prompt, as in MuDPT, never reaches the text side).

``DEEP_PROMPT_DEPTH`` D counts prompted layers, the input included: deep level ``j`` (0-based) of ``D - 1`` enters
block ``j + 1``. The injection transformer mixes the ``n`` tokens of ONE level (the levels are its batch), as the
authors' code. Checkpoints carry the authors' key names (:func:`official_key_pairs`).
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP, LayerNorm, ResidualAttentionBlock
from engine import TRAINER_REGISTRY

from .base import PromptLearnerBase, PromptTrainer, VisionPrompts, clean_classnames
from .prompts import (FIRST_WORDS, PromptLevels, deep_by_block, init_context, random_prompts, require_vit,
                      round_to_fp16, take)

logger = logging.getLogger(__name__)

VARIANTS = ("MuDPT", "UMuDPT", "UUMuDPT")


class LinearInjection(nn.Module):
    """MuDPT's map between towers: one Linear shared by all deep levels, plus one for the shallow level."""

    def __init__(self, deep: nn.Linear, shallow: Optional[nn.Linear] = None) -> None:
        super().__init__()
        self.shallow = shallow
        self.deep = deep

    def forward(self, shallow: Optional[torch.Tensor], deep: torch.Tensor
                ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        """shallow ``(n, Din)`` or None, deep ``(D-1, n, Din)`` -> the same levels at ``Dout``."""
        out_shallow = None if shallow is None or self.shallow is None else self.shallow(shallow)  # (n, Dout)
        return out_shallow, self.deep(deep)  # (D-1, n, Dout)


class TransformerInjection(nn.Module):
    """UMuDPT/UUMuDPT's map: LN -> one CLIP residual block (non-causal) -> LN -> Linear, over each level.

    The levels are the block's batch and the ``n`` tokens its sequence, so tokens attend only to the tokens of
    their own level (the axis of the authors' sequence-first ``nn.MultiheadAttention`` after their permute).
    """

    def __init__(self, in_width: int, out_width: int) -> None:
        super().__init__()
        self.ln_in = LayerNorm(in_width)
        self.block = ResidualAttentionBlock(in_width, max(1, in_width // 64))
        self.ln_out = LayerNorm(in_width)
        self.proj = nn.Linear(in_width, out_width)

    def forward(self, shallow: Optional[torch.Tensor], deep: torch.Tensor
                ) -> Tuple[Optional[torch.Tensor], torch.Tensor]:
        """shallow ``(n, Din)`` or None, deep ``(D-1, n, Din)`` -> the same levels at ``Dout``."""
        levels = deep if shallow is None else torch.cat([shallow.unsqueeze(0), deep])  # (levels, n, Din)
        if levels.shape[0] == 0:
            return None, deep.new_zeros(0, deep.shape[1], self.proj.out_features)
        out = self.proj(self.ln_out(self.block(self.ln_in(levels))))  # (levels, n, Dout)
        return (None, out) if shallow is None else (out[0], out[1:])


def vision_side(variant: str, n_ctx: int, depth: int, vision_width: int, text_width: int) -> Dict[str, Any]:
    """The vision tower's prompts and map to the text tower, which the authors' code builds inside CLIP (after the
    positional embedding: ``official_draws``) and CLIP's fp16 conversion rounds (the map starts fp16-valued)."""
    ctx = random_prompts(n_ctx, vision_width)  # (n, Dv)
    deep = [level.clone() for level in random_prompts(depth - 1, n_ctx, vision_width)]  # one (D-1, n, Dv) draw
    if variant == "MuDPT":
        to_text: nn.Module = LinearInjection(nn.Linear(vision_width, text_width))
    else:
        to_text = TransformerInjection(vision_width, text_width)
    return {"vision_ctx": ctx, "vision_deep": deep, "vision_to_text": round_to_fp16(to_text)}


class MuDPTPromptLearner(PromptLearnerBase):
    """Text prompts ``text_ctx`` (n, Dt) + D-1 levels ``text_deep`` (n, Dt); own visual prompts ``vision_ctx``
    (n, Dv) + ``vision_deep`` (n, Dv) except in UMuDPT; ``text_to_vision`` / ``vision_to_text`` injections. Drawn
    in the authors' order (``drawn``: :func:`vision_side`), so a seed gives their initial values."""

    def __init__(self, clip_model: CLIP, classnames: List[str], variant: str, n_ctx: int, ctx_init: str,
                 depth: int, drawn: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown MuDPT variant {variant!r}; choose one of {VARIANTS}")
        if depth < 1:
            raise ValueError(f"TRAINER.{variant.upper()}.DEEP_PROMPT_DEPTH is {depth}; it must be >= 1 "
                             f"(1 = prompts at the input only)")
        require_vit(clip_model, variant)
        self.variant = variant
        dt, dv = clip_model.text_width, clip_model.vision_width
        self.vision_ctx: Optional[nn.Parameter] = None
        self.vision_deep: Optional[PromptLevels] = None
        self.vision_to_text: Optional[nn.Module] = None
        if variant != "UMuDPT":
            vision = take(drawn, "vision", lambda: vision_side(variant, n_ctx, depth, dv, dt))
            self.vision_ctx = nn.Parameter(vision["vision_ctx"])
            self.vision_deep = PromptLevels(n=n_ctx, width=dv, drawn=vision["vision_deep"])
            self.vision_to_text = vision["vision_to_text"]
        ctx, phrase = init_context(clip_model, n_ctx, ctx_init, FIRST_WORDS, f"TRAINER.{variant.upper()}")
        self.text_ctx = nn.Parameter(ctx)  # (n, Dt)
        shallow_map = nn.Linear(dt, dv) if variant == "MuDPT" else None  # drawn before the deep text prompts
        self.text_deep = PromptLevels(depth - 1, n_ctx, dt, single_draw=True)
        if variant == "MuDPT":
            self.text_to_vision: nn.Module = LinearInjection(nn.Linear(dt, dv), shallow_map)
        else:
            self.text_to_vision = TransformerInjection(dt, dv)
        # Levels beyond a tower's last block are learnable but never used (as in the authors' code).
        self.text_blocks = self._prompted_blocks(depth, len(clip_model.transformer.resblocks), "text")
        self.vision_blocks = self._prompted_blocks(depth, len(clip_model.visual.transformer.resblocks), "vision")
        names = clean_classnames(classnames)
        self.register_buffer("tokens", clip.tokenize([f"{phrase} {name}." for name in names]).long(),
                             persistent=False)  # (C, L)
        logger.info("%s: prompts of %d tokens at depth %d in both towers", variant, n_ctx, depth)

    @staticmethod
    def _prompted_blocks(depth: int, num_blocks: int, tower: str) -> List[int]:
        if depth > num_blocks:
            logger.warning("DEEP_PROMPT_DEPTH %d: the %s tower has only %d blocks, so the deep prompts for blocks "
                           "%d..%d are unused", depth, tower, num_blocks, num_blocks, depth - 1)
        return list(range(1, min(depth, num_blocks)))

    def vision_prompts(self) -> VisionPrompts:
        shallow, deep = self.text_to_vision(self.text_ctx, self.text_deep.stacked())  # (n, Dv), (D-1, n, Dv)
        if self.vision_ctx is not None:
            shallow = self.vision_ctx + shallow
            deep = self.vision_deep.stacked() + deep
        return shallow, deep_by_block(deep, self.vision_blocks)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        deep = self.text_deep.stacked()  # (D-1, n, Dt)
        if self.vision_to_text is not None and self.text_blocks:
            deep = deep + self.vision_to_text(None, self.vision_deep.stacked())[1]
        return {"text": self.tokens, "shallow": self.text_ctx, "deep": deep_by_block(deep, self.text_blocks)}


def official_key_pairs(variant: str) -> List[Tuple[str, str]]:
    """(our key, the authors' key) of every learnable tensor of ``variant``'s whole-model state (the authors keep
    each tower's deep levels in one stacked tensor)."""
    ours, theirs = "prompt_learner.", f"{variant.lower()}_prompt_learner."
    pairs = [("text_ctx", theirs + "ctx"), ("text_deep.{i}", theirs + "deep_prompts[{i}]")]
    vision = [("vision_ctx", "image_encoder.visual_ctx"),
              ("vision_deep.{i}", "image_encoder.visual_ctx_deep_prompts[{i}]")]
    if variant == "MuDPT":
        pairs += [("text_to_vision.shallow", theirs + "embed_projection"),
                  ("text_to_vision.deep", theirs + "deep_projections"), *vision,
                  ("vision_to_text.deep", "image_encoder.visual_ctx_deep_projections")]
        return [(ours + a, b) for a, b in pairs]
    pairs += [("text_to_vision.ln_in", theirs + "ln_pre"), ("text_to_vision.block", theirs + "self_attn"),
              ("text_to_vision.ln_out", theirs + "ln_post"), ("text_to_vision.proj", theirs + "visual_proj")]
    if variant == "UUMuDPT":
        pairs += [*vision, ("vision_to_text.ln_in", "image_encoder.visual_ctx_ln_intra_pre"),
                  ("vision_to_text.block", "image_encoder.visual_ctx_self_attn"),
                  ("vision_to_text.ln_out", "image_encoder.visual_ctx_ln_intra_post"),
                  ("vision_to_text.proj", "image_encoder.visual_ctx_text_proj")]
    return [(ours + a, b) for a, b in pairs]


class _MuDPTTrainer(PromptTrainer):
    """Shared trainer of the three variants; subclasses set ``VARIANT``, ``CFG_NODE`` and ``REGISTERED_NAME``."""

    VARIANT = ""
    # The authors register the whole CustomCLIP (their optimizer sees every parameter; frozen ones get no grad).
    REGISTER_WHOLE_MODEL = True

    @classmethod
    def add_config(cls, cfg) -> None:
        node = CN()
        node.N_CTX = 2  # learned tokens per prompted layer, in each tower
        node.CTX_INIT = "a photo of a"  # the text tokens start from its first N_CTX words ("" = random start)
        node.DEEP_PROMPT_DEPTH = 8  # prompted layers, the input included (9 in every shipped config and script)
        node.PREC = "fp16"  # fp16 | fp32 | amp | bf16 (precision of the frozen CLIP)
        cfg.TRAINER[cls.CFG_NODE] = node

    def official_draws(self, clip_model: CLIP) -> Dict[str, Callable[[], Dict[str, Any]]]:
        if self.VARIANT == "UMuDPT" or self.method_cfg.DEEP_PROMPT_DEPTH < 1:
            return {}
        c, widths = self.method_cfg, (clip_model.vision_width, clip_model.text_width)
        return {"visual.embeddings": lambda: {"vision": vision_side(self.VARIANT, c.N_CTX, c.DEEP_PROMPT_DEPTH,
                                                                    *widths)}}

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> MuDPTPromptLearner:
        c = self.method_cfg
        return MuDPTPromptLearner(clip_model, classnames, self.VARIANT, c.N_CTX, c.CTX_INIT, c.DEEP_PROMPT_DEPTH,
                                  self.drawn)

    def official_keys(self) -> List[Tuple[str, str]]:
        return official_key_pairs(self.VARIANT)

    def official_learner_prefix(self) -> str:
        return f"{self.VARIANT.lower()}_prompt_learner."  # where the authors' files keep the learner


@TRAINER_REGISTRY.register()
class MuDPT(_MuDPTTrainer):
    """MuDPT: Multi-modal Deep-symphysis Prompt Tuning (Miao et al., ICME 2023, arXiv 2306.11400)."""

    VARIANT = "MuDPT"
    CFG_NODE = "MUDPT"
    REGISTERED_NAME = "MultimodalDeepPromptTuning"


@TRAINER_REGISTRY.register()
class UMuDPT(_MuDPTTrainer):
    """MuDPT's unified text->vision variant (Miao et al., ICME 2023, arXiv 2306.11400; authors' code)."""

    VARIANT = "UMuDPT"
    CFG_NODE = "UMUDPT"
    REGISTERED_NAME = "UnifiedMultimodalDeepPromptTuning"


@TRAINER_REGISTRY.register()
class UUMuDPT(_MuDPTTrainer):
    """MuDPT's unified two-way variant (Miao et al., ICME 2023, arXiv 2306.11400; authors' code)."""

    VARIANT = "UUMuDPT"
    CFG_NODE = "UUMUDPT"
    # Same folder name as UMuDPT in the authors' code: their checkpoints of both variants sit there.
    REGISTERED_NAME = "UnifiedMultimodalDeepPromptTuning"
