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


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for the module: the models of the family tests are tiny, and on a busy machine a second
    thread waiting for its share costs up to 100x the work itself."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


# Tiny random models of the other checkpoint families, built by the libraries themselves (no download). They use
# the choices OpenAI's checkpoints do not have: exact GELU, two heads of width 32, MLP ratios 3 and 2, layer scale
# (OpenCLIP); per-tower activations, 4 vision heads, MLP width 96 (Hugging Face).
TINY_OPENCLIP = {"embed_dim": 32,
                 "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32,
                                "mlp_ratio": 3.0, "ls_init_value": 0.5},
                 "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                              "mlp_ratio": 2.0, "ls_init_value": 0.5}}
TINY_HF = {"projection_dim": 32,
           "text_config": {"hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "hidden_act": "gelu"},
           "vision_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                             "num_attention_heads": 4, "image_size": 32, "patch_size": 16, "hidden_act": "quick_gelu"}}


def save_openclip(folder: Path, model_cfg: dict, seed: int = 0, preprocess_cfg: dict = None):
    """A random ``open_clip.model.CLIP(**model_cfg)`` saved as OpenCLIP pushes models to the Hub (folder with
    ``open_clip_config.json`` and ``open_clip_model.safetensors``); returns the library's model (eval mode)."""
    import json

    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(**model_cfg).eval()
    with torch.no_grad():  # layer scales away from their constant init, so that a wrong reading shows
        for name, param in model.named_parameters():
            if name.endswith(".gamma"):
                param.uniform_(0.5, 1.5)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    config = {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg or {}}
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return model


def save_hf(folder: Path, config: dict, seed: int = 0):
    """A random transformers ``CLIPModel`` saved with ``save_pretrained``; returns the library's model (eval)."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**config)).eval()
    model.save_pretrained(str(folder))
    return model


@pytest.fixture(scope="session")
def openclip_tiny_dir(tmp_path_factory) -> Path:
    """A tiny random OpenCLIP ViT model (``TINY_OPENCLIP``) in OpenCLIP's Hub layout."""
    folder = tmp_path_factory.mktemp("openclip_tiny")
    save_openclip(folder, TINY_OPENCLIP)
    return folder


@pytest.fixture(scope="session")
def hf_tiny_dir(tmp_path_factory) -> Path:
    """A tiny random transformers CLIPModel (``TINY_HF``) as ``save_pretrained`` writes it."""
    folder = tmp_path_factory.mktemp("hf_tiny")
    save_hf(folder, TINY_HF)
    return folder


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
