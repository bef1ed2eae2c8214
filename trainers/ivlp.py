"""IVLP: independent deep prompts for the text and the image tower (no coupling); deep language prompting is
IVLP with ``PROMPT_DEPTH_VISION 0``.

Depth convention (as the official code): ``PROMPT_DEPTH d`` puts a prompt at the tower's input and a fresh one
at the input of blocks ``1 .. d-1``; depth 0 means no prompt at all for that tower. A depth larger than the
tower's number of blocks covers every block.

Checkpoints use the official key names (the official trainers register the whole CustomCLIP, whose prompts
live inside the CLIP modules), see :data:`OFFICIAL_KEYS`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from yacs.config import CfgNode as CN

from clip import clip
from clip.model import CLIP, VisionTransformer
from engine import TRAINER_REGISTRY

from .base import PromptLearnerBase, PromptTrainer, VisionPrompts, clean_classnames
from .prompts import (SHORT_PHRASE, PromptLevels, deep_by_block, init_context, prompt_depth, random_prompts,
                      require_vit, take, text_point, vision_point)

logger = logging.getLogger(__name__)

# (our key, official key) of every learnable tensor: level k of our deep prompts is the official block k + 1.
OFFICIAL_KEYS: Tuple[Tuple[str, str], ...] = (
    ("prompt_learner.ctx", "prompt_learner.ctx"),
    ("prompt_learner.vision_shallow", "image_encoder.VPT"),
    ("prompt_learner.vision_deep.{i}", "image_encoder.transformer.resblocks.{i+1}.VPT_shallow"),
    ("prompt_learner.text_deep.{i}", "text_encoder.transformer.resblocks.{i+1}.VPT_shallow"),
)


def prompt_draws(clip_model: CLIP, tower: str, n_ctx: int, depth: int) -> Dict[str, Callable[[], Dict[str, Any]]]:
    """Where the official VPT/IVLP code drew one tower's prompts while CLIP was being built: the vision input
    prompt right after the patch convolution, the prompt of block i (1 <= i < depth) right after that block's own
    layers. Returns :meth:`PromptTrainer.official_draws` entries, named as the learner's tensors."""
    if depth < 1 or n_ctx < 1 or (tower == "vision" and not isinstance(clip_model.visual, VisionTransformer)):
        return {}  # nothing to prompt (the learner explains a ResNet tower)
    if tower == "vision":
        blocks, width, point, prefix = clip_model.visual.transformer.layers, clip_model.vision_width, vision_point, ""
    else:
        blocks, width, point, prefix = clip_model.transformer.layers, clip_model.text_width, text_point, "text"
    draws = {"visual.conv1": lambda: {"vision_shallow": random_prompts(n_ctx, width)}} if tower == "vision" else {}
    for i in range(1, min(depth, blocks)):
        draws[point(i)] = lambda i=i: {f"{prefix or tower}_deep.{i - 1}": random_prompts(n_ctx, width)}
    return draws


def deep_levels(drawn: Optional[Mapping[str, Any]], name: str, levels: int, n: int, width: int) -> PromptLevels:
    """``levels`` deep prompts called ``<name>.<k>``, drawn earlier where possible (see :func:`take`)."""
    return PromptLevels(n=n, width=width, drawn=[take(drawn, f"{name}.{k}", lambda: random_prompts(n, width))
                                                 for k in range(levels)])


class DeepVisionLearner(PromptLearnerBase):
    """Learner part shared by VPT and IVLP: ``vision_shallow`` (n, Dv) at the input, ``vision_deep[k]`` (n, Dv)
    at block ``k + 1``. Depth 0: no vision prompt at all (the image tower is plain CLIP)."""

    def _init_vision(self, clip_model: CLIP, n_ctx: int, depth: int, key: str,
                     drawn: Optional[Mapping[str, Any]] = None) -> None:
        self.register_parameter("vision_shallow", None)
        self.vision_deep = PromptLevels()
        if depth == 0:
            return
        require_vit(clip_model, "vision prompting")
        if n_ctx < 1:
            raise ValueError(f"{key} is {depth} but N_CTX_VISION is {n_ctx}: use at least 1 prompt token, or depth 0 "
                             f"for no vision prompts")
        depth = prompt_depth(depth, len(clip_model.visual.transformer.resblocks), key)
        width = clip_model.vision_width
        self.vision_shallow = nn.Parameter(take(drawn, "vision_shallow", lambda: random_prompts(n_ctx, width)))
        self.vision_deep = deep_levels(drawn, "vision_deep", depth - 1, n_ctx, width)

    def vision_prompts(self) -> VisionPrompts:
        if self.vision_shallow is None:
            return None, None
        return self.vision_shallow, deep_by_block(self.vision_deep)


class IVLPPromptLearner(DeepVisionLearner):
    """Text: ``ctx`` (n_t, Dt) after SOS + ``text_deep[k]`` at block k + 1 < d_t; vision: see DeepVisionLearner."""

    def __init__(self, clip_model: CLIP, classnames: List[str], n_ctx_text: int, ctx_init: str, depth_text: int,
                 n_ctx_vision: int, depth_vision: int, drawn: Optional[Mapping[str, Any]] = None,
                 draw_dtype: torch.dtype = torch.float32, key: str = "TRAINER.IVLP") -> None:
        super().__init__()
        if depth_text < 1 or n_ctx_text < 1:
            raise ValueError(f"IVLP needs text prompts (PROMPT_DEPTH_TEXT {depth_text}, N_CTX_TEXT {n_ctx_text} "
                             f"must both be >= 1); use the VPT trainer to prompt only the image tower")
        depth_text = prompt_depth(depth_text, len(clip_model.transformer.resblocks), f"{key}.PROMPT_DEPTH_TEXT")
        ctx, phrase = init_context(clip_model, n_ctx_text, ctx_init, SHORT_PHRASE, key, dtype=draw_dtype)
        self.ctx = nn.Parameter(ctx)
        self.text_deep = deep_levels(drawn, "text_deep", depth_text - 1, n_ctx_text, clip_model.text_width)
        names = clean_classnames(classnames)
        self.register_buffer("tokens", clip.tokenize([f"{phrase} {name}." for name in names]).long(),
                             persistent=False)  # (C, L)
        self._init_vision(clip_model, n_ctx_vision, depth_vision, f"{key}.PROMPT_DEPTH_VISION", drawn)
        vision = 0 if self.vision_shallow is None else len(self.vision_deep) + 1
        logger.info("IVLP: text prompts at depth %d, vision prompts at depth %d", depth_text, vision)

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        return {"text": self.tokens, "shallow": self.ctx, "deep": deep_by_block(self.text_deep)}


def prompt_config(n_ctx: int) -> CN:
    """The config keys of independent deep text and vision prompts (IVLP, PromptSRC) with their defaults."""
    node = CN()
    node.N_CTX_VISION = n_ctx  # learned tokens per prompted image-tower layer
    node.N_CTX_TEXT = n_ctx  # learned tokens per prompted text-tower layer
    node.CTX_INIT = "a photo of a"  # start of the text tokens, read only for N_CTX_TEXT <= 4
    node.PREC = "fp16"  # fp16 | fp32 | amp | bf16
    node.PROMPT_DEPTH_VISION = 9  # prompted input + blocks 1..d-1; 0 = plain image tower
    node.PROMPT_DEPTH_TEXT = 9  # >= 1, counted as for the image tower
    return node


class OfficialKeysTrainer(PromptTrainer):
    """Saves learnable tensors under the official CustomCLIP key names and reads official files back."""

    REGISTER_WHOLE_MODEL = True
    OFFICIAL_KEYS = OFFICIAL_KEYS


@TRAINER_REGISTRY.register()
class IVLP(OfficialKeysTrainer):
    """Independent V-L prompting, the baseline of MaPLe: Multi-modal Prompt Learning (Khattak et al., CVPR 2023,
    arXiv 2210.03117)."""

    CFG_NODE = "IVLP"
    REGISTERED_NAME = "VLPromptLearner"

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.IVLP = prompt_config(n_ctx=2)

    def official_draws(self, clip_model: CLIP) -> Dict[str, Callable[[], Dict[str, Any]]]:
        c = self.method_cfg
        return {**prompt_draws(clip_model, "vision", c.N_CTX_VISION, c.PROMPT_DEPTH_VISION),
                **prompt_draws(clip_model, "text", c.N_CTX_TEXT, c.PROMPT_DEPTH_TEXT)}

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> IVLPPromptLearner:
        c = self.method_cfg
        return IVLPPromptLearner(clip_model, classnames, c.N_CTX_TEXT, c.CTX_INIT, c.PROMPT_DEPTH_TEXT,
                                 c.N_CTX_VISION, c.PROMPT_DEPTH_VISION, self.drawn, self.draw_dtype,
                                 f"TRAINER.{self.CFG_NODE}")
