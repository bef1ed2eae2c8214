"""Shared helpers for trainer tests: build a trainer from official-style arguments, compare gradients."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import torch

REPO = Path(__file__).resolve().parents[2]


def build(argv: Sequence[str]):
    """``train.setup_cfg`` + ``engine.build_trainer`` from a train.py command line (flags, then KEY VALUE)."""
    import train
    from engine import build_trainer

    args = train.build_parser().parse_args(list(argv))
    return build_trainer(train.setup_cfg(args))


def caltech_argv(root: Path, out: Path, weights: Path, trainer: str, config: str, size: int,
                 extra: Sequence[str] = ()) -> List[str]:
    """The fixture's command line (README of ../shared/parity) pointed at our paths."""
    return ["--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers" / config), "--output-dir", str(out),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "INPUT.SIZE", f"({size}, {size})",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.BACKBONE.PATH", str(weights), *extra]


def expand_sampled(ref, actual: torch.Tensor):
    """Fixture tensors > 65,536 elements are stored as samples: return (expected, actual) at those indices."""
    if isinstance(ref, dict) and ref.get("__sampled__"):
        idx = torch.as_tensor(ref["flat_index"])
        return torch.as_tensor(ref["values"]), actual.reshape(-1)[idx]
    return ref, actual


def assert_grad_close(ref, actual: torch.Tensor, rel: float, name: str) -> None:
    """|actual - ref| <= rel * max|ref| elementwise (the fixture README's gradient tolerance)."""
    expected, got = expand_sampled(ref, actual)
    scale = expected.abs().max().item()
    err = (got.detach().float() - expected.float()).abs().max().item()
    assert err <= rel * scale, f"grad {name}: max err {err:.3e} > {rel} * absmax {scale:.3e}"
