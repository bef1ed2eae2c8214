"""Videos as folders of frames: segment sampling, per-clip transforms and the loader dataset.

A video is a folder of JPEG frames ``img_00001.jpg, img_00002.jpg, ...`` (1-based, the TSN / ActionCLIP
layout) listed with its frame count. A clip of ``T`` frames is one frame per segment (TSN sampling); the
transforms draw their random parameters once per clip, so every frame of a clip is cropped and flipped alike.
A clip leaves the dataset as a tensor ``(T * 3, H, W)``; a batch of them is reshaped to ``(B * T, 3, H, W)``
by the trainer.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler

from .data import Datum, load_rgb_image

FRAME_TEMPLATE = "img_{:05d}.jpg"
# CLIP's pixel statistics, which the video configs always use
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VideoDatum(Datum):
    """One labelled video: ``impath`` is its frame folder, ``num_frames`` how many frames it holds."""

    num_frames: int = 0


def segment_indices(num_frames: int, num_segments: int) -> List[int]:
    """0-based frame indices of the deterministic TSN sampling: the centre frame of each of ``num_segments``
    equal segments; a video with no more frames than segments repeats frames (``i * N // T``).

    This is what the official ActionCLIP loaders use for training *and* evaluation (see the README).
    """
    n, t = num_frames, num_segments
    if n < 1:
        raise ValueError(f"A video needs at least one frame, got num_frames={n}")
    if t == 1:
        return [n // 2]
    if n <= t:
        return [i * n // t for i in range(t)]
    step = n / t
    return [int(i * step + (step - 1) / 2.0) for i in range(t)]


def random_segment_indices(num_frames: int, num_segments: int, rng=np.random) -> List[int]:
    """0-based indices of TSN's random sampling (the Kinetics-400 config's ``random_shift``): a uniformly drawn
    frame of each of ``num_segments`` segments ``[i * N // T, (i + 1) * N // T)``; a video with no more frames
    than segments keeps every frame once and draws the rest at random, in sorted order. ``rng``: numpy's
    global generator by default, as the official loader."""
    n, t = num_frames, num_segments
    if n < 1:
        raise ValueError(f"A video needs at least one frame, got num_frames={n}")
    if n <= t:
        return sorted(np.concatenate([np.arange(n), rng.randint(n, size=t - n)]).tolist())
    ticks = [i * n // t for i in range(t + 1)]
    return [ticks[i] + (int(rng.randint(ticks[i + 1] - ticks[i])) if ticks[i + 1] > ticks[i] else 0)
            for i in range(t)]


# ----------------------------------------------------------------------------------------------- transforms
class ClipTransform:
    """Frames (PIL) -> normalised ``(T * 3, H, W)`` tensor; ``augment`` is applied to the frame list first."""

    def __init__(self, augment: Callable[[List[Image.Image]], List[Image.Image]], mean=CLIP_MEAN,
                 std=CLIP_STD) -> None:
        self.augment = augment
        self.normalize = T.Compose([T.PILToTensor(), T.ConvertImageDtype(torch.float32), T.Normalize(mean, std)])

    def __call__(self, frames: List[Image.Image]) -> torch.Tensor:
        return torch.cat([self.normalize(f) for f in self.augment(frames)])  # (T * 3, H, W)

    def __repr__(self) -> str:
        return f"ClipTransform({self.augment})"


def eval_clip_transform(size: int) -> ClipTransform:
    """Evaluation: shorter side to ``size * 256 // 224`` (bicubic), centre crop ``size``."""
    steps = T.Compose([T.Resize(size * 256 // 224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size)])
    return ClipTransform(lambda frames: [steps(f) for f in frames])


class MultiScaleCrop:
    """One crop per clip: its side is ``scale * shorter side`` for scales drawn per axis (neighbouring scales at
    most ``max_distort`` apart), at one of 13 fixed positions (corners, centre, edge centres, quarter points);
    then resized to ``size`` (bilinear). Sides within 3 px of ``size`` are snapped to it (TSN's rule)."""

    def __init__(self, size: int, scales: Sequence[float] = (1, .875, .75, .66), max_distort: int = 1) -> None:
        self.size, self.scales, self.max_distort = size, tuple(scales), max_distort

    def params(self, width: int, height: int, rng: random.Random):
        sides = [int(min(width, height) * s) for s in self.scales]
        sides = [self.size if abs(s - self.size) < 3 else s for s in sides]
        pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]
        cw, ch = rng.choice(pairs)
        dx, dy = (width - cw) // 4, (height - ch) // 4
        grid = [(0, 0), (4, 0), (0, 4), (4, 4), (2, 2), (0, 2), (4, 2), (2, 4), (2, 0), (1, 1), (3, 1), (1, 3), (3, 3)]
        gx, gy = rng.choice(grid)
        return cw, ch, gx * dx, gy * dy

    def __call__(self, frames: List[Image.Image], rng: random.Random = random) -> List[Image.Image]:
        cw, ch, x, y = self.params(*frames[0].size, rng)
        return [f.crop((x, y, x + cw, y + ch)).resize((self.size, self.size), Image.BILINEAR) for f in frames]


class TrainClipAugment:
    """Training: [RandAugment per frame] -> multi-scale crop -> horizontal flip (p 0.5) -> colour jitter (p 0.8;
    the jitter factors are drawn per frame, as the official group transform calls torchvision's jitter once per
    frame) -> grayscale (p 0.2). The crop, the flip and the two coin tosses are drawn once per clip from Python's
    ``random``. ``randaug=(N, M)`` with N > 0 first applies torchvision's RandAugment (N ops at magnitude M) to each
    frame on its own, as the official Kinetics-400 config does (with another RandAugment package)."""

    def __init__(self, size: int, randaug: Tuple[int, int] = (0, 0)) -> None:
        self.crop = MultiScaleCrop(size)
        self.jitter = T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
        self.gray = T.Grayscale(num_output_channels=3)
        n, m = randaug
        self.randaug = T.RandAugment(num_ops=n, magnitude=m) if n > 0 else None

    def __call__(self, frames: List[Image.Image]) -> List[Image.Image]:
        if self.randaug is not None:
            frames = [self.randaug(f) for f in frames]
        frames = self.crop(frames)
        if random.random() < 0.5:
            frames = [f.transpose(Image.FLIP_LEFT_RIGHT) for f in frames]
        if random.random() < 0.8:
            frames = [self.jitter(f) for f in frames]
        if random.random() < 0.2:
            frames = [self.gray(f) for f in frames]
        return frames

    def __repr__(self) -> str:
        return f"TrainClipAugment(size={self.crop.size}, randaug={self.randaug})"


def training_clip_transform(size: int, randaug: Tuple[int, int] = (0, 0)) -> ClipTransform:
    return ClipTransform(TrainClipAugment(size, randaug))


# ----------------------------------------------------------------------------------------------- dataset
class VideoFrameDataset(Dataset):
    """``VideoDatum`` list -> ``{"img": (T * 3, H, W), "label", "impath", "index"}`` with ``num_segments``
    frames per video, read as ``<impath>/<template.format(index + 1)>``."""

    def __init__(self, items: Sequence[VideoDatum], num_segments: int, transform: Callable,
                 template: str = FRAME_TEMPLATE, random_shift: bool = False) -> None:
        self.items, self.num_segments = list(items), num_segments
        self.transform, self.template, self.random_shift = transform, template, random_shift

    def __len__(self) -> int:
        return len(self.items)

    def frame_paths(self, item: VideoDatum) -> List[str]:
        sample = random_segment_indices if self.random_shift else segment_indices
        return [os.path.join(item.impath, self.template.format(i + 1))
                for i in sample(item.num_frames, self.num_segments)]

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = self.items[index]
        frames = [load_rgb_image(p) for p in self.frame_paths(item)]
        return {"img": self.transform(frames), "label": item.label, "impath": item.impath, "index": index}


def make_video_loader(items: Sequence[VideoDatum], num_segments: int, batch_size: int, transform: Callable,
                      shuffle: bool, workers: int = 0, drop_last: Optional[bool] = None,
                      random_shift: bool = False) -> DataLoader:
    """A loader of clips; ``drop_last`` defaults to ``shuffle`` (the official loaders drop the last incomplete
    batch when training, and ActionCLIP's evaluation loader does too: pass ``True`` for it); ``random_shift``:
    TSN's random frame per segment instead of the segment centres."""
    if not items:
        raise ValueError("Cannot build a video loader over an empty list")
    dataset = VideoFrameDataset(items, num_segments, transform, random_shift=random_shift)
    sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    drop = shuffle if drop_last is None else drop_last
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop, num_workers=workers)


def clip_stack(batch_img: torch.Tensor) -> torch.Tensor:
    """``(B, T * 3, H, W)`` -> ``(B, T, 3, H, W)``."""
    b, tc, h, w = batch_img.shape
    return batch_img.view(b, tc // 3, 3, h, w)


__all__ = ["VideoDatum", "segment_indices", "random_segment_indices", "eval_clip_transform",
           "training_clip_transform", "VideoFrameDataset", "make_video_loader", "clip_stack"]
