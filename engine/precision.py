"""Numerical precision in one place: fp32 | fp16 | bf16 | amp.

=====  ==================  ==========================================  ===================================
mode   frozen modules      autocast                                    backward / step
=====  ==================  ==========================================  ===================================
fp32   float32             none                                        plain
fp16   float16             none (the model casts prompts itself)       plain
bf16   bfloat16            bfloat16 (CPU and CUDA)                     plain
amp    float32             float16 on CUDA + GradScaler;               scaled on CUDA, plain on CPU
                           CPU: bfloat16 autocast (logged warning)
=====  ==================  ==========================================  ===================================

Learnable tensors always stay float32 (the optimizer updates fp32 master weights). The frozen model is cast to
``frozen_dtype`` by its owner (CLIP: ``clip.model.cast_model``, the one place its dtypes change); CLIP's
LayerNorm computes in fp32 whatever the weights.
"""
from __future__ import annotations

import contextlib
import logging
from typing import ContextManager, Iterable, Optional, Union

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "amp")
_FROZEN_DTYPE = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "amp": torch.float32}


class Precision:
    """Precision policy for one trainer.

    Args:
        mode: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"amp"``.
        device: where the model runs; ``amp`` needs CUDA for fp16 autocast + loss scaling.

    Attributes:
        frozen_dtype: dtype of the frozen (non-learnable) weights.
        autocast_dtype: dtype of the autocast region, or None when no autocast is used.
        scaler: a ``torch.amp.GradScaler`` (``amp`` on CUDA) or None.
    """

    def __init__(self, mode: str, device: Union[str, torch.device] = "cpu") -> None:
        if mode not in PRECISIONS:
            raise ValueError(f"Unknown precision {mode!r}; choose one of {list(PRECISIONS)}")
        self.mode = mode
        self.device = torch.device(device)
        self.frozen_dtype: torch.dtype = _FROZEN_DTYPE[mode]
        self.autocast_dtype: Optional[torch.dtype] = None
        self.scaler: Optional[torch.amp.GradScaler] = None
        if mode == "bf16":
            self.autocast_dtype = torch.bfloat16
        elif mode == "amp":
            if self.device.type == "cuda":
                self.autocast_dtype = torch.float16
                self.scaler = torch.amp.GradScaler("cuda")
            else:
                # fp16 autocast + loss scaling is a CUDA feature; bf16 autocast needs no scaler.
                logger.warning("Precision 'amp' on %s: fp16 autocast with loss scaling needs CUDA; "
                               "falling back to bfloat16 autocast without a GradScaler", self.device.type)
                self.autocast_dtype = torch.bfloat16

    def __repr__(self) -> str:
        return (f"Precision(mode={self.mode!r}, device={self.device.type}, frozen_dtype={self.frozen_dtype}, "
                f"autocast_dtype={self.autocast_dtype}, scaler={self.scaler is not None})")

    def autocast(self) -> ContextManager:
        """Context for forward passes: ``torch.autocast`` for bf16/amp, a no-op otherwise."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()``, scaled when a GradScaler is active. ``loss``: scalar tensor."""
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
        else:
            loss.backward()

    def step(self, optimizers: Iterable[torch.optim.Optimizer]) -> None:
        """Step every optimizer (unscaling first and skipping inf/NaN steps under a GradScaler)."""
        optimizers = [opt for opt in optimizers if opt is not None]
        if self.scaler is None:
            for opt in optimizers:
                opt.step()
            return
        for opt in optimizers:
            self.scaler.step(opt)
        self.scaler.update()

    def state_dict(self) -> dict:
        """GradScaler state (empty without a scaler), so resumed amp runs keep their loss scale."""
        return {} if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
