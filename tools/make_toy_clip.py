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


def toy_key_shapes(vision_width: int = VISION_WIDTH, text_width: int = TEXT_WIDTH,
                   layers: Tuple[int, int] = (VISION_LAYERS, TEXT_LAYERS)) -> Dict[str, Tuple[int, ...]]:
    """Every key of the toy model with its shape, visual tower first (OpenAI order).

    ``vision_width`` / ``text_width`` / ``layers`` (vision, text) let tests build towers of different sizes
    (e.g. to check that a method takes widths from the model); the defaults give the standard toy model.
    """
    grid = RESOLUTION // PATCH
    vw, tw = vision_width, text_width
    shapes = {
        "visual.class_embedding": (vw,),
        "visual.positional_embedding": (grid * grid + 1, vw),
        "visual.proj": (vw, EMBED_DIM),
        "visual.conv1.weight": (vw, 3, PATCH, PATCH),
        "visual.ln_pre.weight": (vw,), "visual.ln_pre.bias": (vw,),
    }
    for i in range(layers[0]):
        shapes.update(_block(f"visual.transformer.resblocks.{i}", vw))
    shapes.update({"visual.ln_post.weight": (vw,), "visual.ln_post.bias": (vw,)})
    shapes.update({"positional_embedding": (CONTEXT, tw), "text_projection": (tw, EMBED_DIM),
                   "logit_scale": (1,), "token_embedding.weight": (VOCAB, tw)})
    for i in range(layers[1]):
        shapes.update(_block(f"transformer.resblocks.{i}", tw))
    shapes.update({"ln_final.weight": (tw,), "ln_final.bias": (tw,)})
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


def make_toy_clip_state_dict(
    seed: int = 0, vision_width: int = VISION_WIDTH, text_width: int = TEXT_WIDTH,
    layers: Tuple[int, int] = (VISION_LAYERS, TEXT_LAYERS),
) -> "OrderedDict[str, torch.Tensor]":
    """The toy CLIP's weights: ``OrderedDict[key, fp16 tensor]``, deterministic in ``seed``.

    Widths and ``layers`` (vision, text) are optional (see :func:`toy_key_shapes`); a width must be divisible
    by ``max(1, width // 64)``, the head count CLIP infers.
    """
    gen = torch.Generator().manual_seed(seed)
    shapes = toy_key_shapes(vision_width, text_width, layers)
    return OrderedDict((key, _value(key, shape, gen).to(torch.float16)) for key, shape in shapes.items())


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
