"""OpenCLIP checkpoints -> our CLIP: names, the model config, downloads and the state_dict layout.

Names (after the ``openclip:`` prefix): ``ARCH/TAG`` (a model and pretrained tag of OpenCLIP's own table, e.g.
``ViT-B-16/laion2b_s34b_b88k``; needs ``open_clip_torch``), ``hf-hub:ORG/REPO`` (a Hub repository holding
``open_clip_config.json`` and the weights; needs only ``huggingface_hub``), or ``ARCH`` alone with a local weights
file. A trailing ``@REVISION`` pins a Hub commit, branch or tag. A local folder or file whose folder holds
``open_clip_config.json`` (the layout OpenCLIP pushes to the Hub) needs no name at all.

The architecture comes from the tensors (widths, depths, MLP width, layer scale) and from the model config
(activation: QuickGELU when the config or the pretrained tag says ``quick_gelu``, else exact GELU; attention
heads; LayerNorm epsilon). OpenCLIP's native towers are the ViT and ModifiedResNet we implement, with the same
key names; towers we cannot express are refused by :func:`check_supported` before any weight is read.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from .loading import Checkpoint, Preprocess, hub_download, read_state_dict
from .model import CheckpointError

logger = logging.getLogger(__name__)

PREFIX = "openclip:"
HUB = "hf-hub:"
CONFIG_FILE = "open_clip_config.json"
WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # preferred first
DEFAULT_HEAD_WIDTH = 64
CLIP_VOCAB_SIZE = 49408


def _open_clip():
    try:
        import open_clip
    except ImportError as err:
        raise ImportError("OpenCLIP model names are looked up in open_clip's table: pip install -r requirements.txt "
                          "(or name a Hub repository, openclip:hf-hub:ORG/REPO, which needs only huggingface_hub)"
                          ) from err
    return open_clip


def split_revision(spec: str) -> Tuple[str, Optional[str]]:
    """``"name@rev"`` -> ``("name", "rev")``; no ``@`` -> ``(name, None)``."""
    name, _, revision = spec.partition("@")
    return name, revision or None


def refusals(model_config: Dict[str, Any]) -> List[str]:
    """What in an OpenCLIP model config our CLIP cannot express (empty: it loads). One phrase per reason."""
    vision, text = model_config.get("vision_cfg", {}), model_config.get("text_cfg", {})
    found = []
    if vision.get("timm_model_name"):
        found.append(f"its image tower is timm's {vision['timm_model_name']!r} (our image towers are the ViT and "
                     f"OpenAI's ModifiedResNet)")
    if text.get("hf_model_name"):
        found.append(f"its text tower is the Hugging Face model {text['hf_model_name']!r}")
    if (text.get("hf_tokenizer_name") or text.get("tokenizer_mode") or text.get("tokenizer_kwargs")
            or text.get("vocab_size", CLIP_VOCAB_SIZE) != CLIP_VOCAB_SIZE):
        found.append(f"it reads the tokens of {text.get('hf_tokenizer_name') or 'another vocabulary'}, while every "
                     f"prompt learner here tokenises with CLIP's BPE")
    if model_config.get("init_logit_bias") is not None:
        found.append("it was trained with a sigmoid loss and a logit bias (SigLIP-style), not CLIP's softmax")
    if "multimodal_cfg" in model_config or text.get("embed_cls") or vision.get("attentional_pool"):
        found.append("it is a CoCa model (captioning decoder, attention pooling)")
    if text.get("no_causal_mask"):
        found.append("its text tower attends in both directions (the prompt span and EOT pooling assume causal "
                     "attention)")
    if text.get("pool_type", "argmax") not in ("argmax", "eos") or (
            text.get("pool_type") == "eos" and text.get("eos_id") != CLIP_VOCAB_SIZE - 1):
        found.append(f"its text features are pooled at {text.get('pool_type')!r}, not at the end-of-text token")
    if text.get("proj_type", "linear") != "linear" or text.get("proj_bias"):
        found.append("its text projection is not a plain matrix")
    if vision.get("pos_embed_type", "learnable") != "learnable":
        found.append(f"its image positions are {vision['pos_embed_type']!r}, not a learned embedding")
    if vision.get("pool_type", "tok") != "tok" or vision.get("no_ln_pre"):
        found.append("its image features are not the class token after ln_pre ... ln_post")
    for tower, settings in (("image", vision), ("text", text)):
        custom = [k for k in ("block_type", "qk_norm", "scaled_cosine_attn", "scale_heads", "scale_attn_inner",
                              "scale_attn", "scale_fc", "act_kwargs") if settings.get(k)]
        if custom:
            found.append(f"its {tower} blocks use {custom}")
        extra_norm = set(settings.get("norm_kwargs") or {}) - {"eps"}
        if extra_norm:
            found.append(f"its {tower} LayerNorms take {sorted(extra_norm)}")
    return found


def check_supported(model_config: Dict[str, Any], name: str) -> None:
    """Raise CheckpointError naming every reason ``model_config`` cannot be loaded into our CLIP."""
    reasons = refusals(model_config)
    if reasons:
        raise CheckpointError(f"OpenCLIP model {name} cannot be loaded into this CLIP: {'; '.join(reasons)}. "
                              f"Loadable OpenCLIP models are those with OpenAI-style ViT or ResNet image towers and "
                              f"CLIP's text tower (e.g. ViT-B-16, ViT-L-14, ViT-H-14, RN50)")


def choices(model_config: Dict[str, Any], quick_gelu: bool) -> Dict[str, Dict[str, Any]]:
    """``build_model``'s choices for an OpenCLIP config: activation, heads and LayerNorm epsilon per tower."""
    vision, text = model_config.get("vision_cfg", {}), model_config.get("text_cfg", {})
    activation = "quick_gelu" if quick_gelu else "gelu"
    head_width = vision.get("head_width", DEFAULT_HEAD_WIDTH)
    width = vision.get("width", 768)
    if isinstance(vision.get("layers"), (list, tuple)):  # ModifiedResNet: the attention pool sees 32 x width
        width *= 32
    return {"vision": {"heads": width // head_width, "activation": activation,
                       "norm_eps": (vision.get("norm_kwargs") or {}).get("eps", 1e-5)},
            "text": {"heads": text.get("heads", 8), "activation": activation,
                     "norm_eps": (text.get("norm_kwargs") or {}).get("eps", 1e-5)}}


def preprocess_of(settings: Dict[str, Any]) -> Preprocess:
    """The preprocessing of an OpenCLIP pretrained tag or ``preprocess_cfg`` (missing fields: OpenAI's)."""
    known = {k: tuple(settings[k]) if k in ("mean", "std") else settings[k]
             for k in ("mean", "std", "interpolation", "resize_mode") if settings.get(k) is not None}
    return Preprocess(**known)


def unwrap(raw: Any) -> Any:
    """An OpenCLIP file's state_dict: a training checkpoint's ``state_dict`` entry, without DDP's ``module.``,
    and a custom-text model's ``text.`` keys in the plain layout."""
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        return raw
    if raw and all(k.startswith("module.") for k in raw):
        raw = {k[len("module."):]: v for k, v in raw.items()}
    return {k[len("text."):] if k.startswith("text.") else k: v for k, v in raw.items()}


def _sidecar(path: Path) -> Tuple[Optional[Path], Optional[Path]]:
    """``(config file, weights file)`` of a local folder or file in OpenCLIP's Hub layout (None where absent)."""
    folder = path if path.is_dir() else path.parent
    config = folder / CONFIG_FILE
    weights = path if path.is_file() else next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
    return (config if config.is_file() else None), weights


def is_local_checkpoint(path: str) -> bool:
    """True when ``path`` (a folder, or a file beside one) is in OpenCLIP's Hub layout."""
    config, _ = _sidecar(Path(path))
    return config is not None


def _config_file(config_path: str) -> Tuple[Dict[str, Any], Preprocess]:
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    if "model_cfg" not in config:
        raise CheckpointError(f"{config_path} has no model_config: not an OpenCLIP config")
    return config["model_cfg"], preprocess_of(config.get("preprocess_cfg", {}))


def _from_table(arch: str, tag: Optional[str], revision: Optional[str], download_root: Optional[str],
                with_weights: bool) -> Tuple[Dict[str, Any], Preprocess, bool, Optional[str]]:
    """Config, preprocessing, quick_gelu and (``with_weights``) the weights file of ``arch``/``tag``."""
    open_clip = _open_clip()
    model_config = open_clip.get_model_config(arch)
    if model_config is None:
        raise CheckpointError(f"{arch!r} is not an OpenCLIP architecture; known: {', '.join(open_clip.list_models())}")
    check_supported(model_config, arch)
    quick_gelu = bool(model_config.get("quick_gelu"))
    if tag is None:
        if with_weights:
            raise CheckpointError(f"openclip:{arch} names no weights: add a pretrained tag (openclip:{arch}/TAG, "
                                  f"tags: {open_clip.list_pretrained_tags_by_model(arch)}) or set MODEL.BACKBONE.PATH")
        return model_config, Preprocess(), quick_gelu, None
    pretrained = open_clip.get_pretrained_cfg(arch, tag)
    if not pretrained:
        raise CheckpointError(f"OpenCLIP has no pretrained tag {tag!r} for {arch}; its tags: "
                              f"{open_clip.list_pretrained_tags_by_model(arch)}")
    if pretrained.get("quick_gelu") and not quick_gelu:
        # OpenCLIP would build exact GELU here (and warn); the weights were trained with QuickGELU, so use it
        logger.warning("%s/%s was trained with QuickGELU: building QuickGELU (as %s-quickgelu)", arch, tag, arch)
        quick_gelu = True
    weights = None
    if with_weights:
        repo, _, filename = pretrained["hf_hub"].rpartition("/")  # "org/repo/" or "org/repo/file"
        candidates = WEIGHT_FILES if filename in ("", WEIGHT_FILES[1]) else (filename,)
        weights = hub_download(repo, candidates, revision, download_root)
    return model_config, preprocess_of(pretrained), quick_gelu, weights


def load_checkpoint(spec: str, path: Optional[str] = None, download_root: Optional[str] = None) -> Checkpoint:
    """An OpenCLIP checkpoint as a :class:`Checkpoint` (see the module docstring for ``spec``).

    Args:
        spec: the name after ``openclip:`` (may be empty when ``path`` is in OpenCLIP's Hub layout).
        path: a local weights file or folder used instead of downloading.
        download_root: the Hub cache folder (default: huggingface_hub's).
    """
    spec, revision = split_revision(spec)
    config_path = weights = None
    if path:
        config_path, weights = _sidecar(Path(path))
        if weights is None:
            raise FileNotFoundError(f"{path}: no OpenCLIP weights there (expected a file, or one of {WEIGHT_FILES})")
    if spec.startswith(HUB):
        repo = spec[len(HUB):]
        config_path = config_path or hub_download(repo, (CONFIG_FILE,), revision, download_root)
        weights = weights or hub_download(repo, WEIGHT_FILES, revision, download_root)
    if config_path is not None:
        model_config, preprocess = _config_file(str(config_path))
        check_supported(model_config, spec or str(config_path))  # before reading weights that cannot load
        quick_gelu = bool(model_config.get("quick_gelu"))
    elif spec:
        arch, _, tag = spec.partition("/")
        model_config, preprocess, quick_gelu, downloaded = _from_table(arch, tag or None, revision, download_root,
                                                                    with_weights=weights is None)
        weights = weights or downloaded
    else:
        raise CheckpointError(f"{path}: an OpenCLIP weights file without {CONFIG_FILE} beside it: name its "
                              f"architecture, MODEL.BACKBONE.NAME openclip:ARCH (e.g. openclip:ViT-B-16)")
    label = f"OpenCLIP {spec} ({weights})" if spec else f"OpenCLIP {weights}"
    state_dict = read_state_dict(str(weights), unwrap, torchscript=False)
    return checkpoint_from(state_dict, model_config, quick_gelu, preprocess, label)


def checkpoint_from(state_dict: Dict[str, Any], model_config: Dict[str, Any], quick_gelu: bool,
                    preprocess: Preprocess = Preprocess(), source: str = "OpenCLIP state_dict") -> Checkpoint:
    """The :class:`Checkpoint` of an OpenCLIP ``CLIP.state_dict()`` and its model config.

    Args:
        state_dict: OpenCLIP's keys (for its native towers, the names of OpenAI's layout).
        model_config: OpenCLIP's model config (``open_clip.get_model_config(name)`` / ``model_cfg`` of
            ``open_clip_config.json``).
        quick_gelu: the activation the weights were trained with (QuickGELU, else exact GELU).
    Raises:
        CheckpointError: the config or the tensors hold a part this CLIP cannot express.
    """
    check_supported(model_config, source)
    if "logit_bias" in state_dict:
        raise CheckpointError(f"{source} has a logit_bias: a sigmoid-loss (SigLIP-style) model, which this CLIP "
                              f"does not express")
    logger.info("%s: %s, preprocessing %s", source, "QuickGELU" if quick_gelu else "exact GELU", preprocess)
    return Checkpoint(dict(state_dict), source=source, family="openclip", choices=choices(model_config, quick_gelu),
                      preprocess=preprocess)
