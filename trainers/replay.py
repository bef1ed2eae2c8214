"""Replaying the random draws of OpenAI's CLIP constructor, so that the prompts drawn after it are the official ones.

The official prompt-learning code builds CLIP with OpenAI's constructor, which initialises every weight at random
(then the checkpoint overwrites them all), and only afterwards initialises its prompts from the same global torch
generator. Our loader builds CLIP without random values, so to give a seed the same prompts as the official run
we repeat those draws: the same initialisers on throw-away tensors of the same shapes, in the same order. Some
official methods drew prompt tensors in the middle of that construction; ``hooks`` lets a caller draw at those
points, named after the place in the architecture:

    "visual.conv1"        after the patch convolution (ViT)
    "visual.embeddings"   after the class and positional embeddings (ViT)
    "visual.block{i}"     after the layers of vision block i (ViT)
    "visual.proj"         after the output projection (ViT; the last draw of the image tower)
    "text.block{i}"       after the layers of text block i

Costs about as many random numbers as the model has weights (1-2 s for ViT-B/16 on a CPU); nothing is kept.
Verified against OpenAI's constructor: the generator state after both is identical (ViT and ResNet towers).
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import nn

Hooks = Mapping[str, Callable[[], None]]


def _hook(hooks: Hooks, point: str) -> None:
    if point in hooks:
        hooks[point]()


def _block(width: int, point: str, hooks: Hooks) -> None:
    """A residual attention block: nn.MultiheadAttention (its out_proj Linear, then Xavier on in_proj; the head
    count changes no draw) and the two MLP Linears; LayerNorms draw nothing."""
    nn.MultiheadAttention(width, 1)
    nn.Linear(width, 4 * width)
    nn.Linear(4 * width, width)
    _hook(hooks, point)


def _vit(resolution: int, patch: int, width: int, layers: int, hooks: Hooks) -> None:
    nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
    _hook(hooks, "visual.conv1")
    scale = width ** -0.5
    scale * torch.randn(width)  # class embedding
    scale * torch.randn((resolution // patch) ** 2 + 1, width)  # positional embedding
    _hook(hooks, "visual.embeddings")
    for i in range(layers):
        _block(width, f"visual.block{i}", hooks)


def _resnet(layers: Sequence[int], width: int, resolution: int, embed_dim: int) -> int:
    """The ModifiedResNet's convolutions and attention pool; returns the pool's input width."""
    for c_in, c_out in ((3, width // 2), (width // 2, width // 2), (width // 2, width)):
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    channels = width
    for stage, depth in enumerate(layers):
        planes = width * 2 ** stage
        for b in range(depth):
            nn.Conv2d(channels, planes, 1, bias=False)
            nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            nn.Conv2d(planes, planes * 4, 1, bias=False)
            if b == 0 and (stage > 0 or channels != planes * 4):
                nn.Conv2d(channels, planes * 4, 1, bias=False)  # the downsample branch
            channels = planes * 4
    torch.randn((resolution // 32) ** 2 + 1, channels) / channels ** 0.5  # attention-pool positions
    for out in (channels, channels, channels, embed_dim):  # k, q, v, c projections
        nn.Linear(channels, out)
    return channels


def replay_openai_init(embed_dim: int, image_resolution: int, vision_layers: Union[int, Sequence[int]],
                       vision_width: int, vision_patch_size: Optional[int], context_length: int, vocab_size: int,
                       transformer_width: int, transformer_heads: int, transformer_layers: int,
                       hooks: Optional[Hooks] = None) -> None:
    """Draw from the global torch generator exactly what OpenAI's ``CLIP(...)`` constructor draws.

    Takes the constructor's arguments (``clip.model.infer_config`` gives them for a checkpoint) and ``hooks``
    (see the module docstring). Runs in float32, as the constructor does before any weight conversion.
    """
    hooks = hooks or {}
    with torch.no_grad():
        if isinstance(vision_layers, (tuple, list)):
            pool_width = _resnet(vision_layers, vision_width, image_resolution, embed_dim)
        else:
            _vit(image_resolution, vision_patch_size, vision_width, vision_layers, hooks)
            torch.randn(vision_width, embed_dim)  # proj
            _hook(hooks, "visual.proj")
        for i in range(transformer_layers):
            _block(transformer_width, f"text.block{i}", hooks)
        nn.Embedding(vocab_size, transformer_width)
        # CLIP.initialize_parameters
        torch.empty(vocab_size, transformer_width).normal_(std=0.02)
        torch.empty(context_length, transformer_width).normal_(std=0.01)
        if isinstance(vision_layers, (tuple, list)):
            for out in (pool_width, pool_width, pool_width, embed_dim):  # q, k, v, c weights
                torch.empty(out, pool_width).normal_(std=pool_width ** -0.5)
        width, layers = transformer_width, transformer_layers
        proj_std, attn_std, fc_std = width ** -0.5 * (2 * layers) ** -0.5, width ** -0.5, (2 * width) ** -0.5
        for _ in range(layers):
            torch.empty(3 * width, width).normal_(std=attn_std)
            torch.empty(width, width).normal_(std=proj_std)
            torch.empty(4 * width, width).normal_(std=fc_std)
            torch.empty(width, 4 * width).normal_(std=proj_std)
        torch.empty(width, embed_dim).normal_(std=width ** -0.5)
