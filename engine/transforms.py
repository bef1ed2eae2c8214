"""Image transforms built from ``cfg.INPUT`` (Dassl-compatible names and behaviour).

Train transforms are applied in a FIXED order whatever the order of ``INPUT.TRANSFORMS`` (as Dassl does):
resize (only if neither random crop is asked) -> random_crop -> random_resized_crop -> random_flip ->
colorjitter -> randomgrayscale -> gaussian_blur -> ToTensor -> normalize.
Test: Resize(max(INPUT.SIZE)) of the shorter side -> CenterCrop(INPUT.SIZE) -> ToTensor -> normalize (if listed).
``center_crop`` is accepted for compatibility; as in Dassl it only matters at test time, where it always applies.
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
SUPPORTED_TRANSFORMS = ("random_resized_crop", "random_flip", "random_crop", "center_crop", "normalize",
                        "colorjitter", "randomgrayscale", "gaussian_blur")


def _interpolation(cfg) -> InterpolationMode:
    name = cfg.INPUT.INTERPOLATION
    if name not in INTERPOLATIONS:
        raise ValueError(f"INPUT.INTERPOLATION {name!r} is not supported; choose one of {sorted(INTERPOLATIONS)}")
    return INTERPOLATIONS[name]


def _check_choices(choices: Sequence[str]) -> None:
    unknown = [c for c in choices if c not in SUPPORTED_TRANSFORMS]
    if unknown:
        raise ValueError(f"Unknown transform(s) {unknown} in INPUT.TRANSFORMS; supported: "
                         f"{', '.join(SUPPORTED_TRANSFORMS)}")


def _normalize(cfg) -> T.Normalize:
    return T.Normalize(mean=list(cfg.INPUT.PIXEL_MEAN), std=list(cfg.INPUT.PIXEL_STD))


def _train_ops(cfg, choices: Sequence[str]) -> List[Callable]:
    """The augmentations before ToTensor, in Dassl's fixed order."""
    size, interp = tuple(cfg.INPUT.SIZE), _interpolation(cfg)
    ops: List[Callable] = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        ops.append(T.Resize(size, interpolation=interp))  # guarantees the target size
    if "random_crop" in choices:
        ops.append(T.RandomCrop(size, padding=cfg.INPUT.CROP_PADDING))
    if "random_resized_crop" in choices:
        ops.append(T.RandomResizedCrop(size, scale=tuple(cfg.INPUT.RRCROP_SCALE), interpolation=interp))
    if "random_flip" in choices:
        ops.append(T.RandomHorizontalFlip())
    if "colorjitter" in choices:
        ops.append(T.ColorJitter(brightness=cfg.INPUT.COLORJITTER_B, contrast=cfg.INPUT.COLORJITTER_C,
                                 saturation=cfg.INPUT.COLORJITTER_S, hue=cfg.INPUT.COLORJITTER_H))
    if "randomgrayscale" in choices:
        ops.append(T.RandomGrayscale(p=cfg.INPUT.RGS_P))
    if "gaussian_blur" in choices:
        ops.append(T.RandomApply([T.GaussianBlur(cfg.INPUT.GB_K)], p=cfg.INPUT.GB_P))
    return ops


def _test_ops(cfg) -> List[Callable]:
    size = tuple(cfg.INPUT.SIZE)
    # An int size resizes the SHORTER side (aspect ratio kept); the crop then takes the centre.
    return [T.Resize(max(size), interpolation=_interpolation(cfg)), T.CenterCrop(size)]


def build_transform(cfg, is_train: bool, choices: Optional[Sequence[str]] = None) -> T.Compose:
    """PIL image -> float tensor (3, H, W) with (H, W) = ``cfg.INPUT.SIZE``.

    Args:
        cfg: config (reads the ``INPUT`` node).
        is_train: training (random augmentations) or test (deterministic resize + centre crop).
        choices: transform names overriding ``cfg.INPUT.TRANSFORMS``.

    Raises:
        ValueError: an unknown transform or interpolation name.
    """
    choices = list(cfg.INPUT.TRANSFORMS if choices is None else choices)
    _check_choices(choices)
    if cfg.INPUT.NO_TRANSFORM:
        logger.info("INPUT.NO_TRANSFORM: images are only converted to tensors")
        return T.Compose([T.ToTensor()])
    ops = _train_ops(cfg, choices) if is_train else _test_ops(cfg)
    ops.append(T.ToTensor())
    if "normalize" in choices:
        ops.append(_normalize(cfg))
    tfm = T.Compose(ops)
    logger.info("Built %s transform: %s", "train" if is_train else "test", tfm)
    return tfm


def build_unaugmented_transform(cfg) -> T.Compose:
    """Resize to ``INPUT.SIZE`` -> ToTensor (-> normalize if listed): the ``img0`` view of Dassl."""
    ops: List[Callable] = [T.Resize(tuple(cfg.INPUT.SIZE), interpolation=_interpolation(cfg)), T.ToTensor()]
    if "normalize" in cfg.INPUT.TRANSFORMS:
        ops.append(_normalize(cfg))
    return T.Compose(ops)
