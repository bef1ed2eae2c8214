#!/usr/bin/env python
"""Nearest vocabulary words of every learned text context vector of a checkpoint (CoOp's interpretation).

For each context vector, the ``topk`` tokens whose token embeddings are closest in Euclidean distance, with the
distances. Text prompts are found by their official key names (``_TEXT_PROMPT_KEYS``); vision prompts have no
vocabulary and are skipped.

    python tools/interpret_prompt.py output/.../prompt_learner/model.pth.tar-50 3     # official arguments
    python tools/interpret_prompt.py output/.../seed1 --topk 5 --clip ViT-B/16       # a run folder: last epoch
"""
from __future__ import annotations

import argparse
import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.checkpoint import load_checkpoint

# (key pattern, the layer its prompt enters): the shallow ``ctx`` ((n, D), or (C, n, D) per class), MaPLe's deep
# text prompts, IVLP's deep text prompts.
_TEXT_PROMPT_KEYS = [
    (re.compile(r"(?:^|\.)ctx$"), lambda m: 0),
    (re.compile(r"(?:^|\.)compound_prompts_text\.(\d+)$"), lambda m: int(m.group(1)) + 1),
    (re.compile(r"(?:^|\.)text_encoder\.transformer\.resblocks\.(\d+)\.VPT_shallow$"), lambda m: int(m.group(1))),
]
_EPOCH_SUFFIX = re.compile(r"model\.pth\.tar-(\d+)$")


@dataclass
class PromptWords:
    """Nearest words of one prompt tensor: ``indices``/``distances`` have the tensor's shape with D -> topk."""

    key: str
    layer: int
    shape: tuple[int, ...]
    indices: torch.Tensor  # (..., n, topk) long
    distances: torch.Tensor  # (..., n, topk) float


def nearest_tokens(vectors: torch.Tensor, embedding: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and Euclidean distances of the ``topk`` nearest rows of ``embedding`` (V, D) for every vector of
    ``vectors`` (..., D); both results are (..., topk), nearest first. Computed in float32."""
    if vectors.shape[-1] != embedding.shape[-1]:
        raise ValueError(f"prompt width {vectors.shape[-1]} != token embedding width {embedding.shape[-1]}: "
                         "is --clip the backbone the prompts were trained with?")
    flat = vectors.reshape(-1, vectors.shape[-1]).float()
    # The direct difference, not the |a|^2 + |b|^2 - 2ab shortcut cdist takes for large inputs: an exact token
    # embedding must come out at distance 0.
    dist = torch.cdist(flat, embedding.float(), compute_mode="donot_use_mm_for_euclid_dist")  # (N, V)
    values, indices = dist.topk(min(topk, dist.shape[1]), dim=1, largest=False)  # sorted, nearest first
    out_shape = (*vectors.shape[:-1], values.shape[1])
    return indices.reshape(out_shape), values.reshape(out_shape)


def text_prompt_keys(state_dict: dict[str, torch.Tensor]) -> list[tuple[str, int]]:
    """The text-prompt keys of a state_dict with the layer each enters, in layer order."""
    found = []
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or value.dim() not in (2, 3):
            continue
        for pattern, layer in _TEXT_PROMPT_KEYS:
            match = pattern.search(key)
            if match and "visual" not in key and "image_encoder" not in key:
                found.append((key, layer(match)))
                break
    return sorted(found, key=lambda item: (item[1], item[0]))


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the last-epoch model file under a run / model folder."""
    if path.is_file():
        return path
    files = sorted(path.rglob("model.pth.tar-*"), key=lambda p: int(_EPOCH_SUFFIX.search(p.name).group(1))
                   if _EPOCH_SUFFIX.search(p.name) else -1)
    files = files or sorted(path.rglob("model-best.pth.tar"))
    if not files:
        raise FileNotFoundError(f"no checkpoint (model.pth.tar-<epoch> or model-best.pth.tar) under {path}")
    return files[-1]


def interpret(state_dict: dict[str, torch.Tensor], embedding: torch.Tensor, topk: int) -> list[PromptWords]:
    """Nearest tokens of every text prompt of ``state_dict`` against ``embedding`` (V, D)."""
    selected = text_prompt_keys(state_dict)
    if not selected:
        raise ValueError(f"no text prompt in the checkpoint (keys: {sorted(state_dict)})")
    return [PromptWords(key, layer, tuple(state_dict[key].shape), *nearest_tokens(state_dict[key], embedding, topk))
            for key, layer in selected]


def format_report(report: list[PromptWords], decoder: dict[int, str]) -> str:
    """One line per context vector: ``<position>: [words] [distances]`` (the official script's lines)."""
    lines = []
    for prompt in report:
        lines.append(f"{prompt.key} {list(prompt.shape)}, layer {prompt.layer}")
        per_class = prompt.indices.dim() == 3
        for pos in itertools.product(*map(range, prompt.indices.shape[:-1])):  # (token,) or (class, token)
            idx, dist = prompt.indices[pos].tolist(), prompt.distances[pos].tolist()
            label = f"class {pos[0] + 1} token {pos[1] + 1}" if per_class else f"{pos[0] + 1}"
            lines.append(f"{label}: {[decoder[i] for i in idx]} {[f'{d:.4f}' for d in dist]}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Prints the report; returns 1 on a clear error (no checkpoint, no prompt, width mismatch)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fpath", type=Path, help="checkpoint file, or a run folder (its last-epoch model)")
    parser.add_argument("topk_pos", nargs="?", type=int, default=None, metavar="topk", help="as --topk")
    parser.add_argument("--topk", type=int, default=3, help="number of nearest words per vector (3)")
    parser.add_argument("--clip", default="ViT-B/16", help="CLIP name or checkpoint giving the token embedding")
    args = parser.parse_args(argv)
    topk = args.topk_pos if args.topk_pos is not None else args.topk
    from clip import clip  # imported here: --help needs no model code
    from clip.tokenizer import get_tokenizer

    try:
        path = resolve_checkpoint(args.fpath)
        state_dict = load_checkpoint(str(path))["state_dict"]
        model, _ = clip.load(args.clip, device="cpu")
        embedding = model.token_embedding.weight.detach()  # (V, D)
        report = interpret(state_dict, embedding, topk)
    except (FileNotFoundError, ValueError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    print(f"Checkpoint {path}; token embedding {tuple(embedding.shape)}; top-{topk} nearest words (Euclidean)")
    print(format_report(report, get_tokenizer().decoder))
    return 0


if __name__ == "__main__":
    sys.exit(main())
