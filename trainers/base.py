"""Glue shared by every prompt-learning trainer: load CLIP once, freeze it, wrap CLIP + learner, one training step.

A method is a *learner*: an ``nn.Module`` that owns every learnable tensor and says which prompts enter which
tower (see clip/prompts.py; its building blocks are in trainers/prompts.py). ``PromptedCLIP`` turns (frozen
CLIP, learner) into a classifier whose :meth:`PromptedCLIP.outputs` carries what a loss needs, and
``PromptTrainer`` does what all methods share (loading, freezing, precision, optimiser, checkpoints, the step).
A method with its own loss overrides :meth:`PromptTrainer.compute_loss`; one that edits gradients overrides
:meth:`PromptTrainer.optimizer_step`.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from clip import clip
from clip.model import CLIP, cast_model
from engine.checkpoint import load_checkpoint, load_learnable
from engine.hooks import EpochAverageHook, HookBase, LRStepHook
from engine.optim import build_lr_scheduler, build_optimizer
from engine.trainer import TrainerBase

from .prompts import rename_keys
from .replay import replay_openai_init
from .templates import template_for

logger = logging.getLogger(__name__)

VisionPrompts = Tuple[Optional[torch.Tensor], Optional[Dict[int, Any]]]


def load_clip(cfg) -> CLIP:
    """Load the CLIP named by ``MODEL.BACKBONE.NAME`` (downloaded) and/or ``MODEL.BACKBONE.PATH`` (a local file or
    folder, used instead of downloading; an ``openclip:`` / ``hf:`` NAME then says how to read it).

    Returns an fp32 model in eval mode on the CPU; precision is applied later, in one place.
    """
    name, path = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH
    if not (name or path):
        raise ValueError("No CLIP model given: set MODEL.BACKBONE.NAME (e.g. ViT-B/16, openclip:ViT-B-16/"
                         "laion2b_s34b_b88k, hf:openai/clip-vit-base-patch16) or MODEL.BACKBONE.PATH (a local "
                         "checkpoint)")
    logger.info("CLIP weights: %s", " from ".join(s for s in (name, path) if s))
    model, _ = clip.load(name, device="cpu", path=path or None)
    return model.eval()


def check_input_size(cfg, clip_model: CLIP) -> None:
    """The images must have the resolution the CLIP was trained at (its positional embedding is fixed); a
    normalisation or interpolation other than the checkpoint's own is allowed but logged with its fix."""
    expected = clip_model.visual.input_resolution
    if tuple(cfg.INPUT.SIZE) != (expected, expected):
        raise ValueError(f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP model expects {expected}x{expected} "
                         f"images: set INPUT.SIZE ({expected}, {expected})")
    own = clip_model.preprocess
    if own is None:
        return
    fixes = [f"{key} '{list(value)}'" for key, value, ours in (("INPUT.PIXEL_MEAN", own.mean, cfg.INPUT.PIXEL_MEAN),
                                                               ("INPUT.PIXEL_STD", own.std, cfg.INPUT.PIXEL_STD))
             if list(value) != list(ours)]
    if own.interpolation != cfg.INPUT.INTERPOLATION:
        fixes.append(f"INPUT.INTERPOLATION {own.interpolation}")
    if fixes:
        logger.warning("This CLIP checkpoint's own image preprocessing differs from the config's: to use it, add %s",
                       " ".join(fixes))
    if own.resize_mode != "shortest":
        logger.warning("This CLIP checkpoint resized images to %dx%d without keeping their aspect ratio (%s); the "
                       "test transform here keeps it and centre-crops", expected, expected, own.resize_mode)


def freeze(module: nn.Module) -> nn.Module:
    """Turn off gradients of every parameter of ``module`` (the frozen CLIP)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def clean_classnames(classnames: Iterable[str]) -> List[str]:
    """Class names as they enter a prompt: underscores become spaces (as the official code does)."""
    return [name.replace("_", " ") for name in classnames]


@contextmanager
def compute_weights_in(clip_model: CLIP, dtype: torch.dtype) -> Iterator[CLIP]:
    """``clip_model`` with its compute weights in ``dtype`` (``cast_model``) inside the context, bit for bit as
    before after it (the original tensors are put back, nothing is rounded)."""
    saved = [(param, param.data) for param in clip_model.parameters()]
    cast_model(clip_model, dtype)
    try:
        yield clip_model
    finally:
        for param, data in saved:
            param.data = data


def template_text_features(clip_model: CLIP, classnames: Iterable[str], templates: Sequence[str],
                           chunk: int = 256, normalize_each: bool = True,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised class text features ``(C, E)`` of hand-written templates ("a photo of a {}."), averaged over
    the templates and renormalised (one template: just its features). ``normalize_each`` False averages the
    templates' unnormalised features instead (PromptSRC's ensemble). In fp32 the template x class prompts are
    encoded ``chunk`` at a time, shortest first, so that each call runs only up to its longest prompt.

    ``dtype`` other than fp32 encodes (and normalises) the text in that precision over all 77 positions, template
    by template (the OpenAI fp16 layout), as official code that kept a second, fp16 CLIP for these features did;
    the result is returned in fp32 with the values of that computation.
    """
    names = clean_classnames(classnames)
    if dtype != torch.float32:
        per_template = []
        with torch.no_grad(), compute_weights_in(clip_model, dtype):
            for template in templates:
                tokens = clip.tokenize([template.format(name) for name in names]).long()  # (C, L)
                # full length: low-precision kernels round differently on a shorter sequence
                feats = torch.cat([clip_model.encode_text(t, trim=False) for t in tokens.split(chunk)])  # (C, E)
                per_template.append(feats if not normalize_each else feats / feats.norm(dim=-1, keepdim=True))
        per_template = torch.stack(per_template).float()  # (T, C, E)
    else:
        tokens = clip.tokenize([template.format(name) for template in templates for name in names]).long()  # (T*C, L)
        order = tokens.argmax(dim=-1).argsort(stable=True)  # by EOT position
        with torch.no_grad():
            parts = [clip_model.encode_text(tokens[idx]).float() for idx in order.split(chunk)]
        feats = torch.empty(len(tokens), parts[0].shape[-1]).index_copy_(0, order, torch.cat(parts))
        per_template = feats.view(len(templates), len(names), -1)  # (T, C, E)
        if normalize_each:
            per_template = F.normalize(per_template, dim=-1)
    if not normalize_each:
        return F.normalize(per_template.mean(dim=0), dim=-1)
    if len(templates) == 1:  # renormalising a unit vector would only add rounding
        return per_template[0]
    return F.normalize(per_template.mean(dim=0), dim=-1)


def image_features(clip_model: CLIP, image: torch.Tensor, shallow: Optional[torch.Tensor] = None,
                   deep: Optional[Dict[int, Any]] = None, normalize: bool = True) -> torch.Tensor:
    """Normalised (``normalize`` False: raw) fp32 image features ``(B, E)`` of ``image`` ``(B, 3, H, W)``, with
    optional vision prompts."""
    feats = clip_model.encode_image(image.to(clip_model.dtype), shallow=shallow, deep=deep).float()  # (B, E)
    return F.normalize(feats, dim=-1) if normalize else feats


class PromptLearnerBase(nn.Module):
    """What a method implements: the prompts for each tower. Override the two methods that apply.

    ``image_conditional``: the text prompts depend on the image (CoCoOp), so class text features cannot be
    computed once per evaluation, and there is one set of class text features per image.
    """

    image_conditional: bool = False

    def vision_prompts(self) -> VisionPrompts:
        """``(shallow, deep)`` for ``CLIP.encode_image``; ``(None, None)`` = plain image tower."""
        return None, None

    def text_inputs(self, image_features: Optional[torch.Tensor] = None) -> Dict[str, Any]:
        """Keyword arguments of ``CLIP.encode_text`` (``text`` ids (C, L) and optional prompts)."""
        raise NotImplementedError


@dataclass
class PromptedOutput:
    """One forward pass of :class:`PromptedCLIP`: what a loss may need. Features are L2-normalised fp32."""

    logits: torch.Tensor  # (B, C)
    image_features: torch.Tensor  # (B, E)
    text_features: torch.Tensor  # (C, E); (B, C, E) for image-conditional learners
    logit_scale: torch.Tensor  # () exp of CLIP's learned temperature
    frozen_image_features: Optional[torch.Tensor] = None  # (B, E) the plain CLIP's, when the trainer asks
    frozen_text_features: Optional[torch.Tensor] = None  # (C, E) hand-written templates, when the trainer asks
    # further heads of methods with more than one (e.g. MMRL's class-token and representation logits, (B, C))
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)
    image_features_raw: Optional[torch.Tensor] = None  # (B, E) before normalisation
    text_features_raw: Optional[torch.Tensor] = None  # like text_features, before normalisation (``keep_raw``)

    @property
    def frozen_logits(self) -> torch.Tensor:
        """Zero-shot CLIP's logits ``(B, C)`` (needs the frozen features)."""
        return self.logit_scale * self.frozen_image_features @ self.frozen_text_features.t()


class PromptedCLIP(nn.Module):
    """Frozen CLIP + learner -> logits ``(B, C) = exp(logit_scale) * cos(image, class text)``.

    The learner lives at ``self.prompt_learner`` so checkpoint keys of methods that register the whole model
    read ``prompt_learner.<name>`` as in the official files. ``trim_text``: run the text tower only up to the
    last EOT (equal results, see ``CLIP.encode_text``); False = the official full 77-token path. ``batched``
    (image-conditional learners): one text-tower call over all B * C prompts; False = one call per image (the
    official loop: lower peak memory, B times more calls). ``frozen_text_features`` ``(C, E)``: the hand-written
    class text features :meth:`outputs` returns when asked for the frozen model's features. ``keep_raw``: outputs
    also carry the class text features before normalisation (a head over the raw features, DePT's).
    """

    def __init__(self, clip_model: CLIP, prompt_learner: PromptLearnerBase, trim_text: bool = True,
                 batched: bool = True) -> None:
        super().__init__()
        self.clip = clip_model
        self.prompt_learner = prompt_learner
        self.trim_text = trim_text
        self.batched = batched
        self.keep_raw = False
        self.register_buffer("frozen_text_features", None, persistent=False)
        self._text_cache: Optional[Dict[bool, torch.Tensor]] = None

    @contextmanager
    def cached_text(self, enabled: bool = True) -> Iterator[None]:
        """Within this context, image-independent class text features are computed once and reused.

        For evaluation only: the learnable tensors must not change inside (the cache is dropped on exit).
        """
        use = enabled and not self.prompt_learner.image_conditional
        self._text_cache = {} if use else None
        try:
            yield
        finally:
            self._text_cache = None

    def image_features(self, image: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Normalised (``normalize`` False: raw) image features ``(B, E)``."""
        return image_features(self.clip, image, *self.prompt_learner.vision_prompts(), normalize=normalize)

    def compute_text_features(self, image_features: Optional[torch.Tensor] = None,
                              normalize: bool = True) -> torch.Tensor:
        """Normalised (or raw) class text features ``(C, E)`` (``(B*C, E)`` for image-conditional learners)."""
        inputs = self.prompt_learner.text_inputs(image_features)
        feats = self.clip.encode_text(**inputs, trim=self.trim_text).float()  # (C, E)
        return F.normalize(feats, dim=-1) if normalize else feats

    def text_features(self, image_features: Optional[torch.Tensor] = None, normalize: bool = True) -> torch.Tensor:
        """Class text features, from the evaluation cache when one is active (see :meth:`cached_text`)."""
        cache = self._text_cache
        if cache is None:
            return self.compute_text_features(image_features, normalize)
        if normalize not in cache:
            cache[normalize] = self.compute_text_features(image_features, normalize)
        return cache[normalize]

    def class_text_features(self, img: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Class text features for images with features ``img`` ``(B, E)``: ``(C, E)``, or ``(B, C, E)``."""
        if not self.prompt_learner.image_conditional:
            return self.text_features(img, normalize)  # (C, E)
        if self.batched:
            return self.text_features(img, normalize).view(img.shape[0], -1, img.shape[1])  # (B, C, E)
        return torch.stack([self.text_features(img[i:i + 1], normalize) for i in range(img.shape[0])])  # (B, C, E)

    def outputs(self, image: torch.Tensor, frozen: bool = False) -> PromptedOutput:
        """Logits and features of ``image`` ``(B, 3, H, W)``; ``frozen`` adds the plain CLIP's (no gradient)."""
        raw_img = self.image_features(image, normalize=False)  # (B, E)
        img = F.normalize(raw_img, dim=-1)
        raw_txt = self.class_text_features(img, normalize=False) if self.keep_raw else None
        txt = self.class_text_features(img) if raw_txt is None else F.normalize(raw_txt, dim=-1)  # (C, E) / (B, C, E)
        scale = self.clip.logit_scale.exp().float()
        if txt.dim() == 2:
            logits = scale * img @ txt.t()  # (B, C)
        else:
            logits = scale * torch.einsum("be,bce->bc", img, txt)  # (B, C)
        out = PromptedOutput(logits, img, txt, scale, image_features_raw=raw_img, text_features_raw=raw_txt)
        return self.add_frozen(out, image) if frozen else out

    def add_frozen(self, out: PromptedOutput, image: torch.Tensor) -> PromptedOutput:
        """``out`` with the plain CLIP's image features of ``image`` and the hand-written class text features."""
        if self.frozen_text_features is None:
            raise RuntimeError("the frozen model's features were asked for, but its text features were not "
                               "built: set FROZEN_FEATURES = True on the trainer")
        if self.plain_image_tower():  # out's image features already are the plain CLIP's: no second pass
            out.frozen_image_features = out.image_features.detach()  # (B, E)
        else:
            with torch.no_grad():
                out.frozen_image_features = image_features(self.clip, image)  # (B, E)
        out.frozen_text_features = self.frozen_text_features  # (C, E)
        return out

    def plain_image_tower(self) -> bool:
        """True when :meth:`outputs` runs CLIP's image tower unchanged (no vision prompts, no own image path)."""
        return (type(self.prompt_learner).vision_prompts is PromptLearnerBase.vision_prompts
                and type(self).image_features is PromptedCLIP.image_features
                and type(self).outputs is PromptedCLIP.outputs)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.outputs(image).logits  # (B, C)


class PromptTrainer(TrainerBase):
    """Shared trainer for prompt learners; subclasses set ``CFG_NODE`` and implement ``build_learner``.

    ``REGISTERED_NAME`` is the Dassl model name used for checkpoint folders (the official one per method);
    ``REGISTER_WHOLE_MODEL`` registers the whole ``PromptedCLIP`` (keys ``prompt_learner.*``) instead of the learner.
    One training step: :meth:`forward_backward` = batch -> ``model.outputs`` -> :meth:`compute_loss` ->
    :meth:`optimizer_step` -> the logged values.
    """

    CFG_NODE: str = ""
    REGISTERED_NAME: str = "prompt_learner"
    REGISTER_WHOLE_MODEL: bool = False
    # (our key, official key) :class:`trainers.prompts.KeyTemplate` pairs for checkpoints whose official names
    # differ from our modules'; empty = our names are the official ones.
    OFFICIAL_KEYS: Sequence[Tuple[str, str]] = ()
    PRECISIONS: Sequence[str] = ("fp16", "fp32", "amp", "bf16")
    # True: model outputs also carry the plain CLIP's image features and hand-written class text features
    # (:meth:`frozen_templates`), for losses that compare with zero-shot CLIP.
    FROZEN_FEATURES: bool = False
    # How those features combine several templates: the mean of the unit vectors, renormalised (CLIP's ensemble),
    # or with True the mean of the unnormalised features (PromptSRC's)
    FROZEN_TEXT_RAW_MEAN: bool = False
    # The precision those class text features are computed in (once, at build): fp32, or fp16 where the official
    # code encoded them with a second CLIP it never converted to fp32 (KgCoOp, TCP).
    FROZEN_TEXT_DTYPE: torch.dtype = torch.float32
    LOG_ACCURACY: bool = False  # also log the training accuracy (as the official CoOp's lines do; the others' not)
    # Official whole-model files also hold the frozen CLIP and the learner's word-embedding buffers: loading
    # ignores these keys (see checkpoint_ignore_prefixes).
    FROZEN_OFFICIAL_PREFIXES: Tuple[str, ...] = ("image_encoder.", "text_encoder.", "logit_scale", "clip_model.",
                                                 "clip.")
    FROZEN_OFFICIAL_BUFFERS: Tuple[str, ...] = ("token_prefix", "token_suffix")

    @property
    def method_cfg(self):
        """This method's config node, e.g. ``cfg.TRAINER.COOP``."""
        return self.cfg.TRAINER[self.CFG_NODE]

    def build_learner(self, clip_model: CLIP, classnames: List[str]) -> PromptLearnerBase:
        """Return the method's learner for these class names (names as in the dataset). Its random tensors are
        drawn in the official code's order (see :meth:`official_draws`) so that a seed gives the official ones."""
        raise NotImplementedError

    @property
    def draw_dtype(self) -> torch.dtype:
        """The type the official CoOp-lineage code drew a random text context in: its CLIP's, fp16 under PREC
        fp16 (it converted CLIP to fp32 only for fp32 and amp)."""
        return torch.float16 if self.method_cfg.PREC == "fp16" else torch.float32

    def build_wrapper(self, clip_model: CLIP, learner: PromptLearnerBase) -> PromptedCLIP:
        """The module ``trainer.model`` becomes."""
        return PromptedCLIP(clip_model, learner, trim_text=self.cfg.MODEL.TRIM_TEXT)

    def frozen_templates(self) -> List[str]:
        """Hand-written templates of the frozen class text features (default: zero-shot CLIP's for the dataset)."""
        return [template_for(self.cfg.DATASET.NAME)]

    def param_groups(self, registered: nn.Module) -> List[Dict[str, Any]]:
        """The optimizer's parameter groups over the registered module (torch's format; a group without ``"lr"``
        runs at ``OPTIM.LR``, and every group follows the LR schedule in proportion). Default: one group of
        every learnable tensor. A method whose parts learn at different rates (DePT's head) overrides this."""
        return [{"params": [p for p in registered.parameters() if p.requires_grad]}]

    def epoch_weights(self) -> Optional[List[float]]:
        """Per-epoch weights of an average of the learnable tensors that becomes the final model (PromptSRC's
        Gaussian prompt aggregation, see ``engine.hooks.EpochAverageHook``); None (default): the last epoch's."""
        return None

    def build_hooks(self) -> List[HookBase]:
        hooks = super().build_hooks()
        weights = self.epoch_weights()
        if weights is not None:  # right after the LR step, before the checkpoint and the final test
            at = next(i for i, h in enumerate(hooks) if isinstance(h, LRStepHook)) + 1
            hooks.insert(at, EpochAverageHook(weights))
        return hooks

    def official_draws(self, clip_model: CLIP) -> Dict[str, Callable[[], Dict[str, Any]]]:
        """What the official code of this method drew inside CLIP's constructor (VPT/IVLP/MuDPT built prompts
        into CLIP), by construction point of trainers/replay.py in construction order: each function draws and
        returns named tensors or modules, which :meth:`build_learner` finds in ``self.drawn``. Default: none."""
        return {}

    def draw_in_official_order(self, clip_model: CLIP) -> None:
        """Advance the global generator as the official run did before its learner (``MODEL.REPLAY_CLIP_INIT``),
        making this method's :meth:`official_draws` at their points; the learner then draws the rest."""
        self.drawn: Dict[str, Any] = {}
        hooks = {point: (lambda draw=draw: self.drawn.update(draw()))
                 for point, draw in self.official_draws(clip_model).items()}
        # The official code could only build OpenAI's CLIP: OpenCLIP / Hugging Face checkpoints have no official
        # draws to replay, so their prompts are drawn at once (valid random prompts, reproducible per seed).
        replay = self.cfg.MODEL.REPLAY_CLIP_INIT and clip_model.family == "openai"
        if self.cfg.MODEL.REPLAY_CLIP_INIT and not replay:
            logger.info("MODEL.REPLAY_CLIP_INIT: not replayed for a %s checkpoint (the official code loads OpenAI's "
                        "only)", clip_model.family)
        if replay:
            replay_openai_init(**clip_model.config, hooks=hooks)
        else:
            for hook in hooks.values():
                hook()

    def replay_clip_construction(self, clip_model: CLIP) -> None:
        """Advance the generator as one more construction of OpenAI's CLIP does: for official code that built a
        second CLIP (a teacher, the anchors' encoder) before drawing more (skipped with REPLAY_CLIP_INIT False)."""
        if self.cfg.MODEL.REPLAY_CLIP_INIT:
            replay_openai_init(**clip_model.config)

    def build_model(self) -> None:
        prec = self.method_cfg.PREC
        if prec not in self.PRECISIONS:
            raise ValueError(f"TRAINER.{self.CFG_NODE}.PREC is {prec!r}; choose one of {list(self.PRECISIONS)}")
        clip_model = load_clip(self.cfg)
        check_input_size(self.cfg, clip_model)
        freeze(clip_model)
        classnames = list(self.dm.dataset.classnames)
        self.draw_in_official_order(clip_model)
        # computed once (as VPT's fixed text features), before the learner: a learner may build on them (TCP)
        self.frozen_text_features = template_text_features(
            clip_model, classnames, self.frozen_templates(), normalize_each=not self.FROZEN_TEXT_RAW_MEAN,
            dtype=self.FROZEN_TEXT_DTYPE,
        ) if self.FROZEN_FEATURES else None  # (C, E)
        learner = self.build_learner(clip_model, classnames)
        self.model = self.build_wrapper(clip_model, learner)
        if self.frozen_text_features is not None:
            self.model.frozen_text_features = self.frozen_text_features.to(self.device)
        if self.cfg.MODEL.INIT_WEIGHTS:
            self.load_init_weights(self.cfg.MODEL.INIT_WEIGHTS)
        self.precision = self.build_precision(prec)
        # The frozen towers may run in low precision (OpenAI's mixed fp16 layout); learnable tensors stay fp32.
        cast_model(clip_model.to(self.device), self.precision.frozen_dtype)
        self.model.to(self.device)  # the learner, and any module a method added to the wrapper
        registered = self.model if self.REGISTER_WHOLE_MODEL else learner
        n_learn = sum(p.numel() for p in registered.parameters() if p.requires_grad)
        logger.info("Learnable parameters: %d (%s)", n_learn, self.REGISTERED_NAME)
        optim = build_optimizer(self.param_groups(registered), self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model(self.REGISTERED_NAME, registered, optim, sched)

    # ------------------------------------------------------------------ checkpoints
    def official_keys(self) -> Sequence[Tuple[str, str]]:
        """The ``(our key, official key)`` pairs of this trainer's checkpoints (default: ``OFFICIAL_KEYS``)."""
        return self.OFFICIAL_KEYS

    def official_learner_prefix(self) -> str:
        """Where official files keep the learner's own tensors and buffers."""
        return "prompt_learner." if self.REGISTER_WHOLE_MODEL else ""

    @property
    def checkpoint_ignore_prefixes(self) -> Tuple[str, ...]:
        """Official keys of frozen parts, skipped by every checkpoint load (the frozen CLIP, the token buffers)."""
        learner = self.official_learner_prefix()
        return self.FROZEN_OFFICIAL_PREFIXES + tuple(learner + name for name in self.FROZEN_OFFICIAL_BUFFERS)

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
                                ignore_prefixes=self.checkpoint_ignore_prefixes)
        logger.info("Initialised %d learnable tensors from %s", len(report.loaded), path)

    # ------------------------------------------------------------------ one training step
    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with self.precision.autocast():
            output = self.model.outputs(image, frozen=self.FROZEN_FEATURES)
            losses = self.compute_loss(output, label)
        self.optimizer_step(losses)
        summary = {name: value.item() for name, value in losses.items()}
        if self.LOG_ACCURACY:
            summary["acc"] = (output.logits.argmax(dim=1) == label).float().mean().item() * 100.0
        return summary

    def compute_loss(self, output: PromptedOutput, labels: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The named losses of one batch; ``"loss"`` is the total that is optimised (default: cross-entropy).

        Every entry is logged. A method with extra terms adds them here, e.g.
        ``losses = super().compute_loss(output, labels); losses["loss"] = losses["loss"] + w * extra``.
        """
        return {"loss": self.classification_loss(output, labels)}

    def classification_loss(self, output: PromptedOutput, labels: torch.Tensor) -> torch.Tensor:
        """The loss of the class predictions, to which :meth:`compute_loss` adds a method's own terms (default:
        cross-entropy of the logits). A plug-in head (DePT) replaces it and keeps the method's terms."""
        return F.cross_entropy(output.logits.float(), labels)

    def optimizer_step(self, losses: Dict[str, torch.Tensor]) -> None:
        """Backward and optimiser step from the named losses (default: ``losses["loss"]``).

        A method that edits gradients overrides this with ``model_zero_grad`` / ``model_backward`` / its edit /
        ``model_update`` (under ``PREC amp`` the gradients are scaled until ``model_update``).
        """
        self.model_backward_and_update(losses["loss"])

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            output = self.model.outputs(image)
            return self.inference_logits(output, self.cfg.DATASET.SUBSAMPLE_CLASSES).float()

    def inference_logits(self, output: PromptedOutput, classes: str) -> torch.Tensor:
        """The logits an evaluation scores (default ``output.logits``). ``classes`` is the half of the
        base-to-novel protocol being evaluated (``DATASET.SUBSAMPLE_CLASSES``: base, new or all): a method with a
        second inference path (e.g. a head for the classes it was trained on, another for unseen ones) chooses
        here, from ``output.extras``."""
        return output.logits

    def test(self, split: Optional[str] = None) -> Dict[str, float]:
        """Evaluate with the class text features computed once per call (``TEST.CACHE_TEXT``) when they do not
        depend on the image; ``TEST.CACHE_TEXT False`` recomputes them per batch as the official code."""
        with self.model.cached_text(self.cfg.TEST.CACHE_TEXT):
            return super().test(split)
