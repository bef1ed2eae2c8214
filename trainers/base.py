"""Glue shared by every prompt-learning trainer: load CLIP once, freeze it, wrap CLIP + learner, one precision.

A method is a *learner*: an ``nn.Module`` that owns every learnable tensor and says which prompts enter which
tower (see clip/prompts.py). ``PromptedCLIP`` turns (frozen CLIP, learner) into a classifier, and
``PromptTrainer`` does what all methods share (loading, freezing, precision, optimiser, checkpoint name).
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip import clip
from clip.model import CLIP, cast_model
from engine.checkpoint import load_checkpoint, load_learnable
from engine.optim import build_lr_scheduler, build_optimizer
from engine.trainer import TrainerBase

logger = logging.getLogger(__name__)

VisionPrompts = Tuple[Optional[torch.Tensor], Optional[Dict[int, Any]]]


def load_clip(cfg) -> CLIP:
    """Load the CLIP named by ``MODEL.BACKBONE.PATH`` (a local file) or ``MODEL.BACKBONE.NAME`` (downloaded).

    Returns an fp32 model in eval mode on the CPU; precision is applied later, in one place.
    """
    source = cfg.MODEL.BACKBONE.PATH or cfg.MODEL.BACKBONE.NAME
    if not source:
        raise ValueError("No CLIP model given: set MODEL.BACKBONE.NAME (e.g. ViT-B/16) or MODEL.BACKBONE.PATH "
                         "(a local checkpoint)")
    logger.info("Loading CLIP (backbone: %s)", source)
    model, _ = clip.load(source, device="cpu")
    return model.eval()


def check_input_size(cfg, clip_model: CLIP) -> None:
    """The images must have the resolution the CLIP was trained at (its positional embedding is fixed)."""
    expected = clip_model.visual.input_resolution
    if tuple(cfg.INPUT.SIZE) != (expected, expected):
        raise ValueError(f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP model expects {expected}x{expected} "
                         f"images: set INPUT.SIZE ({expected}, {expected})")


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter of ``module`` (the frozen CLIP)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def clean_classnames(classnames: Iterable[str]) -> List[str]:
    """Class names as they enter a prompt: underscores become spaces (as the official code does)."""
    return [name.replace("_", " ") for name in classnames]


class PromptLearnerBase(nn.Module):
    """What a method implements: the prompts for each tower. Override the two methods that apply.

    ``image_conditional``: the text prompts depend on the image (CoCoOp), so class text features cannot be
    computed once per evaluation.
    """

    image_conditional: bool = False

    def vision_prompts(self) -> VisionPrompts:
        """``(shallow, deep)`` for ``CLIP.encode_image``; ``(None, None)`` = plain image tower."""
        return None, None

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        """Keyword arguments of ``CLIP.encode_text`` (``text`` ids (C, L) and optional prompts)."""
        raise NotImplementedError


class PromptedCLIP(nn.Module):
    """Frozen CLIP + learner -> logits ``(B, C) = exp(logit_scale) * cos(image, class text)``.

    The learner lives at ``self.prompt_learner`` so checkpoint keys of methods that register the whole model
    read ``prompt_learner.<name>`` as in the official files. ``trim_text``: run the text tower only up to the
    last EOT (equal results, see ``CLIP.encode_text``); False = the official full 77-token path.
    """

    def __init__(self, clip_model: CLIP, prompt_learner: PromptLearnerBase, trim_text: bool = True) -> None:
        super().__init__()
        self.clip = clip_model
        self.prompt_learner = prompt_learner
        self.trim_text = trim_text
        self._text_cache: Optional[Dict[str, Optional[torch.Tensor]]] = None

    @contextmanager
    def cached_text(self, enabled: bool = True) -> Iterator[None]:
        """Within this context, image-independent class text features are computed once and reused.

        For evaluation only: the learnable tensors must not change inside (the cache is dropped on exit).
        """
        use = enabled and not self.prompt_learner.image_conditional
        self._text_cache = {"features": None} if use else None
        try:
            yield
        finally:
            self._text_cache = None

    def image_features(self, image: torch.Tensor) -> torch.Tensor:
        """Normalised image features ``(B, E)``."""
        shallow, deep = self.prompt_learner.vision_prompts()
        feats = self.clip.encode_image(image.to(self.clip.dtype), shallow=shallow, deep=deep)  # (B, E)
        return F.normalize(feats.float(), dim=-1)

    def compute_text_features(self, image_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Normalised class text features ``(C, E)`` (``(B*C, E)`` for image-conditional learners)."""
        inputs = self.prompt_learner.text_inputs(image_features)
        feats = self.clip.encode_text(**inputs, trim=self.trim_text)  # (C, E)
        return F.normalize(feats.float(), dim=-1)

    def text_features(self, image_features: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Class text features, from the evaluation cache when one is active (see :meth:`cached_text`)."""
        cache = self._text_cache
        if cache is None:
            return self.compute_text_features(image_features)
        if cache["features"] is None:
            cache["features"] = self.compute_text_features(image_features)
        return cache["features"]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        img = self.image_features(image)  # (B, E)
        txt = self.text_features(img)  # (C, E)
        return self.clip.logit_scale.exp().float() * img @ txt.t()  # (B, C)


class PromptTrainer(TrainerBase):
    """Shared trainer for prompt learners; subclasses set ``CFG_NODE`` and implement ``build_learner``.

    ``REGISTERED_NAME`` is the Dassl model name used for checkpoint folders (the official one per method);
    ``REGISTER_WHOLE_MODEL`` registers the whole ``PromptedCLIP`` (keys ``prompt_learner.*``) instead of the learner.
    """

    CFG_NODE: str = ""
    REGISTERED_NAME: str = "prompt_learner"
    REGISTER_WHOLE_MODEL: bool = False
    PRECISIONS: Sequence[str] = ("fp16", "fp32", "amp", "bf16")

    @property
    def method_cfg(self):
        """This method's config node, e.g. ``cfg.TRAINER.COOP``."""
        return self.cfg.TRAINER[self.CFG_NODE]

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> PromptLearnerBase:
        """Return the method's learner for these class names (names as in the dataset)."""
        raise NotImplementedError

    def build_wrapper(self, clip_model: CLIP, learner: PromptLearnerBase) -> nn.Module:
        """The module ``trainer.model`` becomes; override for methods whose logits are computed differently."""
        return PromptedCLIP(clip_model, learner, trim_text=self.cfg.MODEL.TRIM_TEXT)

    def build_model(self) -> None:
        prec = self.method_cfg.PREC
        if prec not in self.PRECISIONS:
            raise ValueError(f"TRAINER.{self.CFG_NODE}.PREC is {prec!r}; choose one of {list(self.PRECISIONS)}")
        clip_model = load_clip(self.cfg)
        check_input_size(self.cfg, clip_model)
        freeze(clip_model)
        learner = self.build_learner(clip_model, list(self.dm.dataset.classnames))
        self.model = self.build_wrapper(clip_model, learner)
        if self.cfg.MODEL.INIT_WEIGHTS:
            self.load_init_weights(self.cfg.MODEL.INIT_WEIGHTS)
        self.precision = self.build_precision(prec)
        # The frozen towers may run in low precision (OpenAI's mixed fp16 layout); learnable tensors stay fp32.
        cast_model(clip_model.to(self.device), self.precision.frozen_dtype)
        learner.to(self.device)
        registered = self.model if self.REGISTER_WHOLE_MODEL else learner
        n_learn = sum(p.numel() for p in registered.parameters() if p.requires_grad)
        logger.info("Learnable parameters: %d (%s)", n_learn, self.REGISTERED_NAME)
        optim = build_optimizer(registered, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model(self.REGISTERED_NAME, registered, optim, sched)

    def load_init_weights(self, path: str) -> None:
        """Initialise the learnable tensors from a checkpoint file (``MODEL.INIT_WEIGHTS``; ours or official)."""
        ckpt = load_checkpoint(path)
        state = ckpt.get("state_dict", ckpt)
        module = self.model if self.REGISTER_WHOLE_MODEL else self.model.prompt_learner
        report = load_learnable(module, self.import_state_dict(self.REGISTERED_NAME, state), source=path,
                                ignore_prefixes=self.checkpoint_ignore_prefixes)
        logger.info("Initialised %d learnable tensors from %s", len(report.loaded), path)

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            logits = self.model(image)  # (B, C)
            loss = F.cross_entropy(logits.float(), label)
        self.model_backward_and_update(loss)
        acc = (logits.argmax(dim=1) == label).float().mean().item() * 100.0
        return {"loss": loss.item(), "acc": acc}

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            return self.model(image).float()

    def test(self, split: Optional[str] = None) -> Dict[str, float]:
        """Evaluate with the class text features computed once per call (``TEST.CACHE_TEXT``) when they do not
        depend on the image; ``TEST.CACHE_TEXT False`` recomputes them per batch as the official code."""
        with self.model.cached_text(self.cfg.TEST.CACHE_TEXT):
            return super().test(split)
