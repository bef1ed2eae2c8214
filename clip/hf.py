"""Hugging Face ``transformers`` CLIPModel checkpoints -> our CLIP: names, config, downloads, the key layout.

Names (after the ``hf:`` prefix): a Hub repository, ``ORG/REPO`` (e.g. ``openai/clip-vit-base-patch16``), with an
optional ``@REVISION`` (commit SHA, branch or tag) that pins it; downloads need ``huggingface_hub``. A local folder
as ``save_pretrained`` writes it (``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``), or a weights
file with ``config.json`` beside it, needs no name. ``transformers`` itself is not needed to load.

The conversion: ``text_model.*`` / ``vision_model.*`` keys are renamed to OpenAI's layout, the separate q/k/v
projections are stacked into one ``in_proj`` matrix (q, k, v order, as ``nn.MultiheadAttention``), the projection
``nn.Linear`` weights ``(E, D)`` are transposed to OpenAI's ``(D, E)`` matrices, and the ``position_ids`` buffers
that older files saved are dropped (after checking they are ``0 .. L-1``). From ``config.json``: the attention
heads, ``hidden_act`` (``quick_gelu`` or ``gelu``) and ``layer_norm_eps`` of each tower; the text features are
read at the end-of-text token, as transformers does for CLIP's vocabulary.
"""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch

from .loading import Checkpoint, Preprocess, hub_download, read_state_dict
from .model import CheckpointError

logger = logging.getLogger(__name__)

PREFIX = "hf:"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # preferred first
ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu"}  # transformers' hidden_act -> ours
EOT_ID = 49407  # CLIP's end-of-text id, the largest of its vocabulary
LEGACY_EOS_ID = 2  # what early CLIP configs stored; transformers then pools at the largest id (EOT)
# PIL's resampling codes in preprocessor_config.json
RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}

# (pattern, replacement) applied to the key after the tower prefix
_BLOCK_KEYS = [
    (r"encoder\.layers\.(\d+)\.layer_norm1\.", r"transformer.resblocks.\1.ln_1."),
    (r"encoder\.layers\.(\d+)\.layer_norm2\.", r"transformer.resblocks.\1.ln_2."),
    (r"encoder\.layers\.(\d+)\.mlp\.fc1\.", r"transformer.resblocks.\1.mlp.c_fc."),
    (r"encoder\.layers\.(\d+)\.mlp\.fc2\.", r"transformer.resblocks.\1.mlp.c_proj."),
    (r"encoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"transformer.resblocks.\1.attn.out_proj."),
    (r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", r"transformer.resblocks.\1.attn.\2.\3"),
]
_TEXT_KEYS = [
    (r"embeddings\.token_embedding\.weight", "token_embedding.weight"),
    (r"embeddings\.position_embedding\.weight", "positional_embedding"),
    (r"final_layer_norm\.", "ln_final."),
] + _BLOCK_KEYS
_VISION_KEYS = [
    (r"embeddings\.class_embedding", "class_embedding"),
    (r"embeddings\.patch_embedding\.weight", "conv1.weight"),
    (r"embeddings\.position_embedding\.weight", "positional_embedding"),
    (r"pre_layrnorm\.", "ln_pre."),  # (sic) transformers' spelling
    (r"post_layernorm\.", "ln_post."),
] + _BLOCK_KEYS
_TOWERS = (("text_model.", "", _TEXT_KEYS), ("vision_model.", "visual.", _VISION_KEYS))


def _rename(key: str) -> Optional[str]:
    """Our name for a transformers CLIPModel key (q/k/v keys get a temporary ``attn.q.weight`` form)."""
    if key in ("logit_scale",):
        return key
    if key == "text_projection.weight":
        return "text_projection"
    if key == "visual_projection.weight":
        return "visual.proj"
    for prefix, ours, table in _TOWERS:
        if key.startswith(prefix):
            rest = key[len(prefix):]
            for pattern, replacement in table:
                if re.match(pattern, rest):
                    return ours + re.sub(pattern, replacement, rest, count=1)
    return None


def convert_state_dict(hf_state: Dict[str, torch.Tensor], source: str = "state_dict") -> Dict[str, torch.Tensor]:
    """A transformers ``CLIPModel`` state_dict in OpenAI's layout (see the module docstring).

    Raises:
        CheckpointError: keys this conversion does not know (e.g. a classification head, another model type),
            or ``position_ids`` that are not ``0 .. L-1``.
    """
    ours: Dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in hf_state.items():
        if key.endswith("embeddings.position_ids"):  # a buffer older files saved; the layout assumes 0..L-1
            if not torch.equal(value.reshape(-1), torch.arange(value.numel(), dtype=value.dtype)):
                raise CheckpointError(f"{source}: {key} is not 0 .. {value.numel() - 1}; positions are reordered")
            continue
        name = _rename(key)
        if name is None:
            unknown.append(key)
        elif name in ("text_projection", "visual.proj"):
            ours[name] = value.t()  # nn.Linear (E, D) -> OpenAI's x @ (D, E)
        else:
            ours[name] = value
    if unknown:
        raise CheckpointError(f"{source}: {len(unknown)} keys are not those of a transformers CLIPModel: "
                              f"{unknown[:5]}")
    for key in [k for k in ours if re.search(r"\.attn\.q\.(weight|bias)$", k)]:
        stem, kind = key.rsplit(".q.", 1)
        parts = [ours.pop(f"{stem}.{p}.{kind}", None) for p in "qkv"]
        if any(p is None for p in parts):
            raise CheckpointError(f"{source}: {stem} lacks one of its q/k/v {kind}s")
        ours[f"{stem}.in_proj_{kind}"] = torch.cat(parts, dim=0)  # (3D, D) / (3D,), q then k then v
    return ours


def _tower_config(config: Dict[str, Any], tower: str) -> Dict[str, Any]:
    # early configs nest the towers as *_config_dict
    return config.get(f"{tower}_config") or config.get(f"{tower}_config_dict") or {}


def choices(config: Dict[str, Any], source: str) -> Dict[str, Dict[str, Any]]:
    """``build_model``'s choices from a CLIPModel ``config.json`` (transformers' defaults where a key is absent).

    Raises:
        CheckpointError: not a CLIP model, or a choice our CLIP cannot express (activation, pooling, vocabulary).
    """
    if config.get("model_type", "clip") != "clip":
        raise CheckpointError(f"{source}: model_type {config.get('model_type')!r}, not a transformers CLIPModel "
                              f"('clip'); other model types (SigLIP, Chinese-CLIP, ...) are not loadable here")
    text, vision = _tower_config(config, "text"), _tower_config(config, "vision")
    out = {}
    for name, tower, heads in (("text", text, 8), ("vision", vision, 12)):
        act = tower.get("hidden_act", "quick_gelu")
        if act not in ACTIVATIONS:
            raise CheckpointError(f"{source}: the {name} tower's hidden_act is {act!r}; this CLIP has "
                                  f"{sorted(ACTIVATIONS)}")
        out[name] = {"heads": tower.get("num_attention_heads", heads), "activation": ACTIVATIONS[act],
                     "norm_eps": tower.get("layer_norm_eps", 1e-5)}
    vocab = text.get("vocab_size", EOT_ID + 1)
    eos = text.get("eos_token_id", EOT_ID)
    if vocab != EOT_ID + 1 or eos not in (EOT_ID, LEGACY_EOS_ID):
        raise CheckpointError(f"{source}: vocabulary of {vocab} ids with end token {eos}: every prompt learner here "
                              f"tokenises with CLIP's BPE ({EOT_ID + 1} ids, end token {EOT_ID})")
    return out


def preprocess_of(config: Dict[str, Any]) -> Preprocess:
    """The preprocessing of a ``preprocessor_config.json`` (absent fields: OpenAI's)."""
    size = config.get("size")
    squash = isinstance(size, dict) and "height" in size and not config.get("do_center_crop", True)
    known: Dict[str, Any] = {"resize_mode": "squash" if squash else "shortest"}
    for ours, theirs in (("mean", "image_mean"), ("std", "image_std")):
        if config.get(theirs) is not None:
            known[ours] = tuple(config[theirs])
    if config.get("resample") is not None:
        if config["resample"] not in RESAMPLE:
            raise CheckpointError(f"preprocessor resample {config['resample']} is not one of {RESAMPLE}")
        known["interpolation"] = RESAMPLE[config["resample"]]
    return Preprocess(**known)


def _local_files(path: Path) -> Tuple[Optional[Path], Optional[Path], Optional[Path]]:
    """``(config, preprocessor config, weights)`` of a local folder or file (None where absent)."""
    folder = path if path.is_dir() else path.parent
    weights = path if path.is_file() else next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    found = [folder / f if (folder / f).is_file() else None for f in (CONFIG_FILE, PREPROCESSOR_FILE)]
    return found[0], found[1], weights


def is_local_checkpoint(path: str) -> bool:
    """True when ``path`` (a folder, or a file beside its ``config.json``) is a transformers CLIP checkpoint."""
    config, _, _ = _local_files(Path(path))
    if config is None:
        return False
    try:
        found = _read_json(config)
    except (OSError, ValueError):  # some other config.json beside the weights
        return False
    return isinstance(found, dict) and found.get("model_type") == "clip"


def _read_json(path: Optional[Path]) -> Dict[str, Any]:
    if path is None:
        return {}
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def load_checkpoint(spec: str, path: Optional[str] = None, download_root: Optional[str] = None) -> Checkpoint:
    """A transformers CLIPModel checkpoint as a :class:`Checkpoint` (see the module docstring).

    Args:
        spec: ``ORG/REPO[@REVISION]`` after ``hf:`` (may be empty when ``path`` is given).
        path: a local folder or weights file used instead of downloading.
        download_root: the Hub cache folder (default: huggingface_hub's).
    """
    repo, _, revision = spec.partition("@")
    if path:
        config_path, preprocessor_path, weights = _local_files(Path(path))
        if config_path is None or weights is None:
            raise FileNotFoundError(f"{path}: a transformers CLIP checkpoint needs {CONFIG_FILE} and one of "
                                    f"{WEIGHT_FILES} (a folder as save_pretrained writes it)")
    elif repo:
        fetch = dict(revision=revision or None, cache_dir=download_root)
        config_path = Path(hub_download(repo, (CONFIG_FILE,), **fetch))
        found = hub_download(repo, (PREPROCESSOR_FILE,), required=False, **fetch)
        preprocessor_path = Path(found) if found else None
        weights = Path(hub_download(repo, WEIGHT_FILES, **fetch))
    else:
        raise ValueError("hf: needs a repository name (hf:ORG/REPO) or MODEL.BACKBONE.PATH")
    source = f"Hugging Face {spec} ({weights})" if spec else f"Hugging Face {weights}"
    config = _read_json(config_path)
    choices(config, source)  # refuse before reading weights that cannot load
    state_dict = read_state_dict(str(weights), torchscript=False)
    return checkpoint_from(state_dict, config, _read_json(preprocessor_path), source)


def checkpoint_from(state_dict: Dict[str, torch.Tensor], config: Dict[str, Any],
                    preprocessor_config: Optional[Dict[str, Any]] = None,
                    source: str = "Hugging Face state_dict") -> Checkpoint:
    """The :class:`Checkpoint` of a transformers ``CLIPModel.state_dict()``, its ``config.json`` (as a dict) and
    its ``preprocessor_config.json`` (None: OpenAI's preprocessing).

    Raises:
        CheckpointError: keys or config choices this CLIP cannot express.
    """
    arch = choices(config, source)
    preprocess = preprocess_of(preprocessor_config or {})
    logger.info("%s: activations %s / %s, preprocessing %s", source, arch["vision"]["activation"],
                arch["text"]["activation"], preprocess)
    return Checkpoint(convert_state_dict(state_dict, source), source=source, family="hf", choices=arch,
                      preprocess=preprocess)
