#!/usr/bin/env python
"""Random-weight CLIP checkpoints in OpenAI's state_dict layout, for tests, the quickstart and the benchmark.

A preset's architecture is our own ``clip.model.CLIP`` built on the meta device, so keys and shapes are by
construction what ``clip.load`` expects; only the values are made here. Presets:
    toy           tiny ViT (vision width 64, 2 blocks, patch 16, 32 px; text width 64, 2 blocks; embed 32), for
                  fast end-to-end tests; widths and block counts can be overridden
    vitb16-32px   ViT-B/16 widths (vision 768 x 12, text 512 x 12, embed 512) at 32 px: the parity test weights
    vitb16-224px  the same at 224 px (the benchmark's model)
    rn50-64px     the RN50 ModifiedResNet (stem 64, blocks 3-4-6-3) with the 512 x 12 text tower, at 64 px

Value rule (frozen: it defines the golden fixtures' weights): one ``numpy.random.RandomState(seed)`` draws
``standard_normal(shape)`` for every key in ``sorted()`` key order, except ``logit_scale`` (log(1/0.07), stored
with shape [1]) and BatchNorm ``num_batches_tracked`` (int64 0), which draw nothing. A draw ``z`` becomes
    biases                                      0.02 z
    LayerNorm / BatchNorm scales                1 + 0.1 z
    BatchNorm running mean / variance           0.1 z  /  1 + 0.1 |z|
    ResNet convolutions (out, in, kh, kw)       (z - mean of z over each output channel) * sqrt(2 / fan_in)
    the ViT patch convolution                   z / sqrt(fan_in)
    visual.proj, text_projection (in, out)      z / sqrt(in)
    token / positional / class embeddings       z / sqrt(width)
    every other matrix (out, in)                z / sqrt(in)
computed in float64 and rounded to float16 (numpy, round to nearest even), as OpenAI's released files are fp16.
The scales keep the residual stream O(1) through 12 pre-LN blocks; centring the ResNet filters keeps image
features of different images apart (plain 1/sqrt(fan_in) filters made them identical to 4 decimals).
``content_sha256`` fingerprints a state_dict; the fixture README lists the fingerprint of each parity preset.

Usage: python tools/make_toy_clip.py OUT.pt [--preset toy|vitb16-32px|vitb16-224px|rn50-64px] [--seed S]
"""
from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import nn

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clip.model import CLIP, LayerNorm, ModifiedResNet  # noqa: E402

_VITB16 = dict(embed_dim=512, image_resolution=32, vision_layers=12, vision_width=768, vision_patch_size=16,
               transformer_width=512, transformer_heads=8, transformer_layers=12, context_length=77, vocab_size=49408)
PRESETS: Dict[str, Dict[str, Any]] = {
    "toy": dict(_VITB16, embed_dim=32, vision_layers=2, vision_width=64, transformer_width=64, transformer_heads=1,
                transformer_layers=2),
    "vitb16-32px": _VITB16,
    "vitb16-224px": dict(_VITB16, image_resolution=224),
    "rn50-64px": dict(_VITB16, embed_dim=1024, image_resolution=64, vision_layers=(3, 4, 6, 3), vision_width=64,
                      vision_patch_size=None),
}
EMBEDDING_LEAVES = ("positional_embedding", "class_embedding")


def preset_config(preset: str, vision_width: Optional[int] = None, text_width: Optional[int] = None,
                  layers: Optional[Tuple[int, int]] = None) -> Dict[str, Any]:
    """``CLIP`` constructor arguments of ``preset``; widths and ``layers`` (vision, text) override a ViT preset
    (tests use this to check that methods take widths from the model)."""
    if preset not in PRESETS:
        raise KeyError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    config = dict(PRESETS[preset])
    if vision_width is not None:
        config["vision_width"] = vision_width
    if text_width is not None:
        config.update(transformer_width=text_width, transformer_heads=max(1, text_width // 64))
    if layers is not None:
        config.update(vision_layers=layers[0], transformer_layers=layers[1])
    return config


def _value(key: str, shape: Tuple[int, ...], owner: nn.Module, resnet: bool,
           rng: np.random.RandomState) -> np.ndarray:
    """The float64 value of one tensor (the rule in the module docstring); draws from ``rng``."""
    z = rng.standard_normal(shape)
    leaf = key.rsplit(".", 1)[-1]
    if leaf.endswith("bias"):
        return 0.02 * z
    if isinstance(owner, (LayerNorm, nn.BatchNorm2d)) and leaf == "weight":
        return 1.0 + 0.1 * z
    if leaf == "running_mean":
        return 0.1 * z
    if leaf == "running_var":
        return 1.0 + 0.1 * np.abs(z)
    if isinstance(owner, nn.Conv2d):
        fan_in = float(np.prod(shape[1:]))
        if resnet:
            return (z - z.mean(axis=(1, 2, 3), keepdims=True)) * math.sqrt(2.0 / fan_in)
        return z / math.sqrt(fan_in)
    if key in ("visual.proj", "text_projection"):  # used as x @ W, W is (in, out)
        return z / math.sqrt(shape[0])
    if isinstance(owner, nn.Embedding) or leaf in EMBEDDING_LEAVES:
        return z / math.sqrt(shape[-1])
    if len(shape) != 2:
        raise ValueError(f"no value rule for {key} of shape {shape}")
    return z / math.sqrt(shape[1])  # (out, in) matrices: linear layers, attention projections


def make_clip_state_dict(config: Mapping[str, Any], seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """Random weights for ``CLIP(**config)`` by the value rule: ``{key: fp16 tensor}`` in the model's key order."""
    with torch.device("meta"):
        model = CLIP(**config)
    modules = dict(model.named_modules())
    shapes = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    resnet = isinstance(model.visual, ModifiedResNet)
    rng = np.random.RandomState(seed)
    values: Dict[str, torch.Tensor] = {}
    for key in sorted(shapes):
        if key == "logit_scale":
            values[key] = torch.full((1,), math.log(1 / 0.07), dtype=torch.float16)
        elif key.endswith("num_batches_tracked"):
            values[key] = torch.tensor(0, dtype=torch.int64)
        else:
            owner = modules[key.rsplit(".", 1)[0]] if "." in key else model
            value = _value(key, shapes[key], owner, resnet, rng)
            values[key] = torch.from_numpy(np.ascontiguousarray(value.astype(np.float16)))
    return OrderedDict((key, values[key]) for key in shapes)


def make_toy_clip_state_dict(seed: int = 0, vision_width: Optional[int] = None, text_width: Optional[int] = None,
                             layers: Optional[Tuple[int, int]] = None,
                             preset: str = "toy") -> "OrderedDict[str, torch.Tensor]":
    """Weights of ``preset`` (default: the tiny toy model), optionally with other widths / block counts."""
    return make_clip_state_dict(preset_config(preset, vision_width, text_width, layers), seed)


def content_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA256 over each key's UTF-8 bytes then its tensor's raw bytes, in sorted key order."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode("utf-8"))
        digest.update(state_dict[key].contiguous().numpy().tobytes())
    return digest.hexdigest()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the .pt file to write (a plain state_dict)")
    parser.add_argument("--preset", default="toy", choices=sorted(PRESETS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    state_dict = make_toy_clip_state_dict(args.seed, preset=args.preset)
    torch.save(state_dict, args.out)
    count = sum(t.numel() for t in state_dict.values())
    print(f"wrote {args.out}: preset {args.preset}, seed {args.seed}, {len(state_dict)} tensors, {count:,} values, "
          f"content sha256 {content_sha256(state_dict)}")


if __name__ == "__main__":
    main()
