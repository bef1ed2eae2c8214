#!/usr/bin/env python
"""A tiny random ViT CLIP in OpenAI's state_dict layout, for fast behavioural tests.

Vision: width 64, 2 layers, patch 16, 32 px input (2x2 grid). Text: width 64, 2 layers, context 77, vocab 49408.
Embed dim 32. Floating tensors are fp16 like the official checkpoints; ``logit_scale`` has shape [1] like the
parity test weights. Values keep the residual stream O(1): weights ~ N(0, 1/fan_in), LayerNorm scales ~ 1.

Usage: python tools/make_toy_clip.py OUT.pt [--seed S]
"""
from __future__ import annotations

import argparse
import math
from collections import OrderedDict
from typing import Dict, Tuple

import torch

VISION_WIDTH, VISION_LAYERS, PATCH, RESOLUTION = 64, 2, 16, 32
TEXT_WIDTH, TEXT_LAYERS, CONTEXT, VOCAB = 64, 2, 77, 49408
EMBED_DIM = 32


def _block(prefix: str, width: int) -> Dict[str, Tuple[int, ...]]:
    shapes = {"attn.in_proj_weight": (3 * width, width), "attn.in_proj_bias": (3 * width,),
              "attn.out_proj.weight": (width, width), "attn.out_proj.bias": (width,),
              "ln_1.weight": (width,), "ln_1.bias": (width,),
              "mlp.c_fc.weight": (4 * width, width), "mlp.c_fc.bias": (4 * width,),
              "mlp.c_proj.weight": (width, 4 * width), "mlp.c_proj.bias": (width,),
              "ln_2.weight": (width,), "ln_2.bias": (width,)}
    return {f"{prefix}.{name}": shape for name, shape in shapes.items()}


def toy_key_shapes() -> Dict[str, Tuple[int, ...]]:
    """Every key of the toy model with its shape, visual tower first (OpenAI order)."""
    grid = RESOLUTION // PATCH
    shapes = {
        "visual.class_embedding": (VISION_WIDTH,),
        "visual.positional_embedding": (grid * grid + 1, VISION_WIDTH),
        "visual.proj": (VISION_WIDTH, EMBED_DIM),
        "visual.conv1.weight": (VISION_WIDTH, 3, PATCH, PATCH),
        "visual.ln_pre.weight": (VISION_WIDTH,), "visual.ln_pre.bias": (VISION_WIDTH,),
    }
    for i in range(VISION_LAYERS):
        shapes.update(_block(f"visual.transformer.resblocks.{i}", VISION_WIDTH))
    shapes.update({"visual.ln_post.weight": (VISION_WIDTH,), "visual.ln_post.bias": (VISION_WIDTH,)})
    shapes.update({"positional_embedding": (CONTEXT, TEXT_WIDTH), "text_projection": (TEXT_WIDTH, EMBED_DIM),
                   "logit_scale": (1,), "token_embedding.weight": (VOCAB, TEXT_WIDTH)})
    for i in range(TEXT_LAYERS):
        shapes.update(_block(f"transformer.resblocks.{i}", TEXT_WIDTH))
    shapes.update({"ln_final.weight": (TEXT_WIDTH,), "ln_final.bias": (TEXT_WIDTH,)})
    return shapes


def _value(key: str, shape: Tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if key == "logit_scale":
        return torch.full(shape, math.log(1 / 0.07), dtype=torch.float64)
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    leaf = key.rsplit(".", 1)[-1]
    if leaf.endswith("bias"):
        return 0.02 * z
    if ".ln_" in f".{key}" and leaf == "weight":  # LayerNorm scales
        return 1.0 + 0.1 * z
    if key in ("visual.proj", "text_projection"):  # used as x @ W with W (in, out)
        return z * shape[0] ** -0.5
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]  # (out, in, ...) weights, (rows, width) tables
    return z * fan_in ** -0.5


def make_toy_clip_state_dict(seed: int = 0) -> "OrderedDict[str, torch.Tensor]":
    """The toy CLIP's weights: ``OrderedDict[key, fp16 tensor]``, deterministic in ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return OrderedDict((key, _value(key, shape, gen).to(torch.float16)) for key, shape in toy_key_shapes().items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output .pt file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    state_dict = make_toy_clip_state_dict(args.seed)
    torch.save(state_dict, args.out)
    count = sum(t.numel() for t in state_dict.values())
    print(f"wrote {args.out}: {len(state_dict)} tensors, {count:,} values, seed {args.seed}")


if __name__ == "__main__":
    main()
