"""Public API, compatible with OpenAI's ``clip`` package: ``available_models``, ``load``, ``tokenize``."""
from __future__ import annotations

import logging
import os
from typing import Callable, List, Optional, Tuple, Union

import torch
from PIL import Image

from .loading import MODEL_URLS, read_state_dict, resolve_model_path
from .model import CLIP, build_model
from .tokenizer import get_tokenizer

__all__ = ["available_models", "load", "tokenize"]

logger = logging.getLogger(__name__)

# Per-channel statistics of CLIP's training images.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def available_models() -> List[str]:
    """Names accepted by ``load`` besides file paths."""
    return list(MODEL_URLS)


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def image_transform(resolution: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> ``(3, resolution, resolution)`` tensor: bicubic resize of the shorter side, center crop,
    RGB, [0, 1] scaling, CLIP mean/std normalisation."""
    # imported here: torchvision takes seconds to import and only this function needs it
    from torchvision.transforms import CenterCrop, Compose, InterpolationMode, Normalize, Resize, ToTensor

    return Compose([
        Resize(resolution, interpolation=InterpolationMode.BICUBIC),
        CenterCrop(resolution),
        _rgb,
        ToTensor(),
        Normalize(CLIP_MEAN, CLIP_STD),
    ])


def load(name_or_path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu", jit: bool = False,
         download_root: Optional[str] = None) -> Tuple[CLIP, Callable[[Image.Image], torch.Tensor]]:
    """Load a CLIP model and its image preprocessing.

    Args:
        name_or_path: one of ``available_models()`` (downloaded into the cache) or a file: an OpenAI TorchScript
            archive or a ``torch.save``'d OpenAI-layout state_dict.
        device: where the model goes. On CPU the model is fp32 (as OpenAI's ``load``); elsewhere it keeps
            OpenAI's mixed fp16 (compute weights fp16, norms/embeddings fp32).
        jit: accepted for compatibility; the TorchScript graph cannot take prompts, so the eager model is
            returned (with a warning).
        download_root: cache directory override (else ``$CLIP_CACHE_DIR`` or ``~/.cache/clip``).
    Returns:
        ``(model in eval mode, preprocess: PIL image -> (3, R, R) tensor)``.
    """
    if jit:
        logger.warning("clip.load(jit=True): returning the eager model instead, since the TorchScript graph "
                       "cannot take prompt tokens")
    path = resolve_model_path(name_or_path, download_root)
    # as OpenAI: fp32 on CPU (fp16 kernels are slow or missing there), mixed fp16 on accelerators
    dtype = torch.float32 if torch.device(device).type == "cpu" else torch.float16
    model = build_model(read_state_dict(path), source=str(path), dtype=dtype).to(device)
    return model, image_transform(model.visual.input_resolution)


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
