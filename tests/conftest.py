"""Session-wide fixtures: paths to ../shared, generated parity weights, a tiny random CLIP, data copies.

../shared is read-only: every fixture that may be written to is copied into a temp dir first.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PROMPT_CLIP_SHARED", REPO.parent / "shared")).resolve()
PARITY = SHARED / "parity"
BPE_PATH = SHARED / "clip" / "bpe_simple_vocab_16e6.txt.gz"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
# Tests never download the vocabulary: they use the shared copy.
os.environ.setdefault("CLIP_BPE_PATH", str(BPE_PATH))


def _make_test_clip(out_dir: Path, preset: str) -> Path:
    out = out_dir / f"{preset}.pt"
    cmd = [sys.executable, str(PARITY / "make_test_clip.py"), str(out), "--preset", preset, "--seed", "0"]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    """Read-only ../shared/parity."""
    assert PARITY.is_dir(), f"parity fixtures not found at {PARITY} (set PROMPT_CLIP_SHARED)"
    return PARITY


@pytest.fixture(scope="session")
def vit_b16_32px_path(tmp_path_factory) -> Path:
    """OpenAI-layout state_dict with ViT-B/16 widths at 32 px (make_test_clip.py --preset vitb16-32px --seed 0)."""
    return _make_test_clip(tmp_path_factory.mktemp("weights"), "vitb16-32px")


@pytest.fixture(scope="session")
def rn50_64px_path(tmp_path_factory) -> Path:
    """OpenAI-layout RN50 state_dict at 64 px (make_test_clip.py --preset rn50-64px --seed 0)."""
    return _make_test_clip(tmp_path_factory.mktemp("weights_rn50"), "rn50-64px")


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory) -> Path:
    """A tiny random ViT CLIP (2+2 layers, both widths 64, embed 32, 32 px) saved as a plain fp16 state_dict."""
    import torch

    from tools.make_toy_clip import make_toy_clip_state_dict

    out = tmp_path_factory.mktemp("tiny") / "tiny_clip.pt"
    torch.save(make_toy_clip_state_dict(seed=0), out)
    return out


@pytest.fixture(scope="session")
def _pristine_data(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("pristine") / "data"
    shutil.copytree(PARITY / "data", dst)
    return dst


@pytest.fixture()
def data_root(_pristine_data, tmp_path) -> Path:
    """A writable copy of ../shared/parity/data (a valid DATASET.ROOT holding caltech-101/)."""
    dst = tmp_path / "data"
    shutil.copytree(_pristine_data, dst)
    return dst
