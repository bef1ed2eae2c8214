"""Public API, compatible with OpenAI's ``clip`` package: ``available_models``, ``load``, ``tokenize``.

``load`` also takes checkpoints of two other families, converted into the same CLIP: OpenCLIP
(``openclip:ARCH/TAG``, ``openclip:hf-hub:ORG/REPO``; clip/openclip.py) and Hugging Face ``transformers``
(``hf:ORG/REPO``; clip/hf.py). One function per family turns a name or file into a ``loading.Checkpoint``.
"""
from __future__ import annotations

import logging
import os
from typing import Callable, List, Optional, Tuple, Union

import torch
from PIL import Image

from .hf import PREFIX as HF_PREFIX
from .hf import is_local_checkpoint as is_hf_checkpoint
from .hf import load_checkpoint as load_hf_checkpoint
from .loading import MODEL_URLS, Checkpoint, Preprocess, openai_checkpoint
from .model import CLIP, build_model
from .openclip import PREFIX as OPENCLIP_PREFIX
from .openclip import is_local_checkpoint as is_openclip_checkpoint
from .openclip import load_checkpoint as load_openclip_checkpoint
from .tokenizer import get_tokenizer

__all__ = ["available_models", "load", "tokenize"]

logger = logging.getLogger(__name__)

# name prefix -> (its loader: (spec, path, download_root) -> Checkpoint, "is this local path in its layout?")
FAMILIES = {OPENCLIP_PREFIX: (load_openclip_checkpoint, is_openclip_checkpoint),
            HF_PREFIX: (load_hf_checkpoint, is_hf_checkpoint)}


def available_models() -> List[str]:
    """OpenAI's released names; ``load`` also takes ``openclip:...`` / ``hf:...`` names and file paths."""
    return list(MODEL_URLS)


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def image_transform(resolution: int, preprocess: Preprocess = Preprocess()) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> ``(3, resolution, resolution)`` tensor: resize (the shorter side then a centre crop, or both
    sides for ``squash``), RGB, [0, 1] scaling, mean/std normalisation; by default OpenAI's (bicubic, CLIP's
    statistics), else the checkpoint's own ``preprocess``."""
    # imported here: torchvision takes seconds to import and only this function needs it
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    mode = InterpolationMode(preprocess.interpolation)
    if preprocess.resize_mode == "squash":
        resize = [Resize((resolution, resolution), interpolation=mode)]
    else:
        resize = [Resize(resolution, interpolation=mode), CenterCrop(resolution)]
    return Compose([*resize, _rgb, ToTensor(), Normalize(preprocess.mean, preprocess.std)])


def load_checkpoint(name: Union[str, os.PathLike], path: Optional[Union[str, os.PathLike]] = None,
                    download_root: Optional[str] = None) -> Checkpoint:
    """The checkpoint that ``name`` and/or ``path`` stand for, converted to OpenAI's layout (see :func:`load`)."""
    name = os.fspath(name or "")
    path = os.fspath(path) if path else None
    for prefix, (load_family, _) in FAMILIES.items():
        if name.startswith(prefix):
            return load_family(name[len(prefix):], path, download_root)
    for load_family, in_layout in FAMILIES.values():  # a local folder or file in a family's own layout needs no name
        if path and in_layout(path):
            return load_family("", path, download_root)
    return openai_checkpoint(path or name, download_root)


def load(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu", jit: bool = False,
         download_root: Optional[str] = None,
         path: Optional[Union[str, os.PathLike]] = None) -> Tuple[CLIP, Callable[[Image.Image], torch.Tensor]]:
    """Load a CLIP model and its image preprocessing.

    Args:
        name_or_path: one of ``available_models()`` (downloaded into the cache), ``openclip:ARCH/TAG`` or
            ``openclip:hf-hub:ORG/REPO`` (OpenCLIP), ``hf:ORG/REPO`` (a transformers CLIPModel; ``@REVISION`` pins
            a Hub name), or a file / folder: an OpenAI TorchScript archive or OpenAI-layout state_dict, or a
            folder (or a file beside it) holding OpenCLIP's ``open_clip_config.json`` or a transformers
            ``config.json``.
        device: where the model goes. On CPU the model is fp32 (as OpenAI's ``load``); elsewhere it keeps
            OpenAI's mixed fp16 (compute weights fp16, norms/embeddings fp32).
        jit: accepted for compatibility; the TorchScript graph cannot take prompts, so the eager model is
            returned (with a warning).
        download_root: cache directory override (OpenAI files: else ``$CLIP_CACHE_DIR`` or ``~/.cache/clip``;
            Hub files: else huggingface_hub's cache).
        path: a local weights file or folder used instead of downloading ``name_or_path``, which then only says
            how to read it (e.g. ``openclip:ViT-B-16`` for a bare OpenCLIP state_dict).
    Returns:
        ``(model in eval mode, preprocess: PIL image -> (3, R, R) tensor)``; the preprocessing is the checkpoint's
        own (mean/std, interpolation, resize mode).
    """
    if jit:
        logger.warning("clip.load(jit=True): returning the eager model instead, since the TorchScript graph "
                       "cannot take prompt tokens")
    # as OpenAI: fp32 on CPU (fp16 kernels are slow or missing there), mixed fp16 on accelerators
    dtype = torch.float32 if torch.device(device).type == "cpu" else torch.float16
    model = model_from_checkpoint(load_checkpoint(name_or_path, path, download_root), dtype).to(device)
    return model, image_transform(model.visual.input_resolution, model.preprocess)


def model_from_checkpoint(ckpt: Checkpoint, dtype: torch.dtype = torch.float32) -> CLIP:
    """Our CLIP (eval mode, on the CPU) from a converted checkpoint, with its family and preprocessing recorded."""
    model = build_model(ckpt.state_dict, source=ckpt.source, dtype=dtype, choices=ckpt.choices, family=ckpt.family)
    model.preprocess = ckpt.preprocess
    return model


def tokenize(texts: Union[str, List[str]], context_length: int = 77, truncate: bool = False) -> torch.IntTensor:
    """Token ids ``(N, context_length)`` int32: SOT, BPE ids, EOT, zero padding.

    Args:
        texts: one string or a list of strings.
        context_length: sequence length (77 for every CLIP model).
        truncate: keep the first ``context_length`` ids and make the last one EOT; otherwise a text that is
            too long raises RuntimeError.
    """
    if isinstance(texts, str):
        texts = [texts]
    tokenizer = get_tokenizer()
    result = torch.zeros(len(texts), context_length, dtype=torch.int32)
    for row, text in enumerate(texts):
        ids = [tokenizer.sot_id, *tokenizer.encode(text), tokenizer.eot_id]
        if len(ids) > context_length:
            if not truncate:
                raise RuntimeError(f"{text!r} is {len(ids)} tokens with start and end markers, more than the "
                                   f"context length {context_length}; shorten it or pass truncate=True")
            ids = ids[:context_length - 1] + [tokenizer.eot_id]
        result[row, :len(ids)] = torch.tensor(ids, dtype=torch.int32)
    return result
