"""Image transforms from ``cfg.INPUT``, with the official (Dassl) names and results.

Training: the names in ``INPUT.TRANSFORMS`` switch steps on, and the steps always run in this order whatever
the order of the names: random_resized_crop (else a plain resize to ``INPUT.SIZE``) -> random_flip -> tensor ->
normalize. Test: the shorter side is resized to ``max(INPUT.SIZE)``, then centre-cropped to ``INPUT.SIZE`` ->
tensor -> normalize (if listed). ``center_crop`` is accepted for the official configs; the test transform
always crops, and training never does.
"""
from __future__ import annotations

import logging
from typing import Callable, List, Optional, Sequence

import torchvision.transforms as T
from torchvision.transforms import InterpolationMode

logger = logging.getLogger(__name__)

INTERPOLATIONS = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}
SUPPORTED_TRANSFORMS = ("random_resized_crop", "random_flip", "center_crop", "normalize")


def _interpolation(cfg) -> InterpolationMode:
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATIONS:
        raise ValueError(f"INPUT.INTERPOLATION {name!r} is not supported; choose one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def build_transform(cfg, is_train: bool, choices: Optional[Sequence[str]] = None) -> T.Compose:
    """PIL image -> float tensor ``(3, H, W)`` with ``(H, W) = INPUT.SIZE``.

    Args:
        cfg: the config (its ``INPUT`` node).
        is_train: random augmentations (training) or resize + centre crop (evaluation).
        choices: transform names to use instead of ``INPUT.TRANSFORMS``.
    Raises:
        ValueError: a transform or interpolation name this engine does not have.
    """
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    unknown = [c for c in choices if c not in SUPPORTED_TRANSFORMS]
    if unknown:
        raise ValueError(f"INPUT.TRANSFORMS names {unknown}, which this engine does not have; "
                         f"choose from {', '.join(SUPPORTED_TRANSFORMS)}")
    size, interpolation = tuple(cfg.INPUT.SIZE), _interpolation(cfg)
    steps: List[Callable] = []
    if not is_train:
        # an int resizes the SHORTER side, keeping the aspect ratio; the crop then takes the centre
        steps += [T.Resize(max(size), interpolation=interpolation), T.CenterCrop(size)]
    elif "random_resized_crop" in choices:
        steps.append(T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interpolation))
    else:
        steps.append(T.Resize(size, interpolation=interpolation))
    if is_train and "random_flip" in choices:
        steps.append(T.RandomHorizontalFlip())
    steps.append(T.ToTensor())
    if "normalize" in choices:
        steps.append(T.Normalize(mean=list(cfg.INPUT.PIXEL_MEAN), std=list(cfg.INPUT.PIXEL_STD)))
    transform = T.Compose(steps)
    logger.info("%s transform: %s", "Training" if is_train else "Test", transform)
    return transform
