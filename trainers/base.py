"""Glue shared by every prompt-learning trainer: load CLIP once, freeze it, wrap CLIP + learner, one precision.

A method is a *learner*: an ``nn.Module`` that owns every learnable tensor and says which prompts enter which
tower (see clip/prompts.py). ``PromptedCLIP`` turns (frozen CLIP, learner) into a classifier, and
``PromptTrainer`` does what all methods share (loading, freezing, precision, optimiser, checkpoint name).
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip import clip
from clip.model import CLIP, VisionTransformer, cast_model
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


# ----------------------------------------------------------------------------------- helpers shared by methods
# The official code initialises the text context from CTX_INIT only for short contexts; longer ones start random.
MAX_INIT_CTX = 4


def random_prompts(n: int, width: int) -> torch.Tensor:
    """``(n, width)`` prompt tokens drawn from N(0, 0.02^2) (the official init of every prompt of these methods)."""
    return torch.empty(n, width).normal_(std=0.02)


def short_phrase_context(clip_model: CLIP, n_ctx: int, ctx_init: str, key: str) -> Tuple[torch.Tensor, str]:
    """Initial text context ``(n_ctx, Dt)`` and the phrase the class prompts start with (MaPLe / IVLP rule).

    With ``ctx_init`` and ``n_ctx <= 4`` the context is the embedding of the phrase's first ``n_ctx`` tokens and
    the prompts keep the WHOLE phrase: with "a photo of a" and 2 tokens, "of a" stays as frozen words after the
    learned "a photo". Otherwise the context is N(0, 0.02) and the phrase is ``n_ctx`` placeholder "X" words.
    ``key`` names the config node in errors (e.g. ``TRAINER.MAPLE``).
    """
    if n_ctx < 1:
        raise ValueError(f"{key}.N_CTX is {n_ctx}; at least one context token is needed")
    if ctx_init and n_ctx <= MAX_INIT_CTX:
        phrase = ctx_init.replace("_", " ")
        ids = clip.tokenize(phrase).long()  # (1, L)
        n_words = int(ids[0].argmax()) - 1  # BPE tokens between SOS and EOT
        if n_ctx > n_words:
            # The context span would cover the class name and EOT (the official code silently does that).
            raise ValueError(f"{key}.CTX_INIT {ctx_init!r} has {n_words} tokens but N_CTX is {n_ctx}; use a "
                             f"phrase of at least {n_ctx} tokens or an empty CTX_INIT")
        with torch.no_grad():
            emb = clip_model.token_embedding(ids)  # (1, L, Dt)
        return emb[0, 1:1 + n_ctx].float().clone(), phrase
    if ctx_init:
        logger.warning("%s.CTX_INIT is ignored for N_CTX %d > %d (random init, as the official code)",
                       key, n_ctx, MAX_INIT_CTX)
    return random_prompts(n_ctx, clip_model.text_width), " ".join(["X"] * n_ctx)


def prompt_depth(depth: int, num_blocks: int, key: str, minimum: int = 0) -> int:
    """The prompt depth actually used: ``depth`` checked (>= ``minimum``) and capped at ``num_blocks``.

    Depth ``d`` = prompts at the input + blocks ``1 .. d-1``; above the block count every block is prompted.
    """
    if depth < minimum:
        raise ValueError(f"{key} is {depth}; it must be >= {minimum}")
    if depth > num_blocks:
        logger.warning("%s is %d but the tower has %d blocks: prompting every block", key, depth, num_blocks)
    return min(depth, num_blocks)


def require_vit(clip_model: CLIP, what: str) -> None:
    """Vision prompts are tokens of a ViT: fail at build time (not at the first batch) on a ResNet tower."""
    if not isinstance(clip_model.visual, VisionTransformer):
        raise ValueError(f"{what} needs a ViT image tower, but this CLIP has a {type(clip_model.visual).__name__} "
                         f"(ResNet) tower: choose a ViT backbone (e.g. MODEL.BACKBONE.NAME ViT-B/16)")


def _key_regex(template: str) -> "re.Pattern[str]":
    pattern = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
    return re.compile(pattern + r"(?P<rest>\..*)?")


def rename_keys(state: Mapping[str, torch.Tensor], pairs: Sequence[Tuple[str, str]]) -> Dict[str, torch.Tensor]:
    """Rename keys equal to, or below (``src.``), a ``src`` of ``(src, dst)`` pairs; ``{i}`` matches a block index.

    Keys that match nothing (the frozen CLIP of an official whole-model file) pass unchanged, so the checkpoint
    loader can recognise and ignore them.
    """
    compiled = [(_key_regex(src), dst) for src, dst in pairs]
    out: Dict[str, torch.Tensor] = OrderedDict()
    for key, value in state.items():
        for regex, dst in compiled:
            match = regex.fullmatch(key)
            if match:
                key = dst.format(i=match.groupdict().get("i")) + (match.group("rest") or "")
                break
        out[key] = value
    return out


def template_text_features(clip_model: CLIP, classnames: Iterable[str], templates: Sequence[str],
                           chunk: int = 256) -> torch.Tensor:
    """Normalised class text features ``(C, E)`` of hand-written templates ("a photo of a {}."), averaged over
    the templates and renormalised (one template: just its features). Classes are encoded ``chunk`` at a time."""
    names = clean_classnames(classnames)
    per_template = []
    with torch.no_grad():
        for template in templates:
            tokens = clip.tokenize([template.format(name) for name in names]).long()  # (C, L)
            feats = torch.cat([clip_model.encode_text(t) for t in tokens.split(chunk)]).float()  # (C, E)
            per_template.append(F.normalize(feats, dim=-1))
    if len(per_template) == 1:  # renormalising a unit vector would only add rounding
        return per_template[0]
    return F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)


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
    # (our key, official key) pairs for checkpoints whose official names differ from our modules' (see
    # rename_keys); empty = our names are the official ones.
    OFFICIAL_KEYS: Sequence[Tuple[str, str]] = ()
    PRECISIONS: Sequence[str] = ("fp16", "fp32", "amp", "bf16")
    # What official files of whole-model methods also carry: their frozen CLIP and token buffers (never loaded).
    checkpoint_ignore_prefixes = ("image_encoder.", "text_encoder.", "logit_scale", "clip_model.", "clip.")
    checkpoint_ignore_suffixes = ("token_prefix", "token_suffix")

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

    def official_keys(self) -> Sequence[Tuple[str, str]]:
        """The ``(our key, official key)`` pairs of this trainer's checkpoints (default: ``OFFICIAL_KEYS``)."""
        return self.OFFICIAL_KEYS

    def export_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return rename_keys(state, self.official_keys()) if self.official_keys() else state

    def import_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        pairs = [(official, ours) for ours, official in self.official_keys()]
        return rename_keys(state, pairs) if pairs else state

    def load_init_weights(self, path: str) -> None:
        """Initialise the learnable tensors from a checkpoint file (``MODEL.INIT_WEIGHTS``; ours or official)."""
        ckpt = load_checkpoint(path)
        state = ckpt.get("state_dict", ckpt)
        module = self.model if self.REGISTER_WHOLE_MODEL else self.model.prompt_learner
        report = load_learnable(module, self.import_state_dict(self.REGISTERED_NAME, state), source=path,
                                ignore_prefixes=self.checkpoint_ignore_prefixes,
                                ignore_suffixes=self.checkpoint_ignore_suffixes)
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
