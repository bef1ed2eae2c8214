"""Session-wide fixtures: the golden files in tests/fixtures, test weights built once, writable data copies.

Everything the suite needs is inside the repository: the golden numbers of the official implementations
(tests/fixtures, see its README), CLIP's BPE vocabulary (clip/) and the test-weight builder (tools/make_toy_clip.py).
tests/fixtures is never written to: fixtures that a test may modify are copied into a temp dir first.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _save_weights(out_dir: Path, preset: str) -> Path:
    import torch

    from tools.make_toy_clip import make_toy_clip_state_dict

    out = out_dir / f"{preset}.pt"
    torch.save(make_toy_clip_state_dict(seed=0, preset=preset), out)
    return out


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """tests/fixtures: the golden outputs of the official code (read-only by convention)."""
    return FIXTURES


@pytest.fixture(scope="session")
def vit_b16_32px_path(tmp_path_factory) -> Path:
    """The parity weights: ViT-B/16 widths at 32 px (``make_toy_clip.py --preset vitb16-32px --seed 0``)."""
    return _save_weights(tmp_path_factory.mktemp("weights"), "vitb16-32px")


@pytest.fixture(scope="session")
def rn50_64px_path(tmp_path_factory) -> Path:
    """The RN50 parity weights at 64 px (``make_toy_clip.py --preset rn50-64px --seed 0``)."""
    return _save_weights(tmp_path_factory.mktemp("weights_rn50"), "rn50-64px")


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    """A tiny random ViT CLIP (2+2 blocks, widths 64, embed 32, 32 px) saved as a plain fp16 state_dict."""
    return _save_weights(tmp_path_factory.mktemp("tiny"), "toy")


@pytest.fixture(scope="session")
def _pristine_data(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("pristine") / "data"
    shutil.copytree(FIXTURES / "data", dst)
    return dst


@pytest.fixture()
def data_root(_pristine_data, tmp_path) -> Path:
    """A writable copy of tests/fixtures/data (a valid DATASET.ROOT holding caltech-101/)."""
    dst = tmp_path / "data"
    shutil.copytree(_pristine_data, dst)
    return dst
