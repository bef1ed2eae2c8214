"""The optimizer and the learning-rate schedule of ``cfg.OPTIM``, giving the official runs' LR epoch by epoch.

The schedule moves once per epoch, after its last batch (``engine.hooks.LRStepHook``), never inside a training
step. With the settings of the official MaPLe/CoOp configs (cosine, one constant warm-up epoch at
``WARMUP_CONS_LR``) the 0-based epoch ``e`` runs at::

    e == 0:  WARMUP_CONS_LR
    e >= 1:  0.5 * (1 + cos(pi * (e - 1) / MAX_EPOCH)) * LR        # main schedule restarted after warm-up

(the parity log of MaPLe shows 1e-5 then 3.5e-3, 3.1658e-3, 2.2908e-3, 1.2092e-3 for 5 epochs).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Union

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import CosineAnnealingLR, StepLR

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("single_step", "cosine")
WARMUP_TYPES = ("constant", "linear")


ParamGroups = List[Dict[str, Any]]


def build_optimizer(model: Union[nn.Module, Iterable[nn.Parameter], ParamGroups], optim_cfg) -> torch.optim.Optimizer:
    """The optimizer ``OPTIM.NAME`` over the parameters of ``model`` that require a gradient.

    Args:
        model: a module, an iterable of parameters, or parameter groups (``[{"params": [...], "lr": ...}, ...]``,
            torch's format: a group without ``"lr"`` runs at ``OPTIM.LR``; what the group says is kept). Frozen
            parameters are left out: they never get a gradient, so the updates equal those of the official
            optimizer built over every parameter. Groups left empty are dropped.
        optim_cfg: the ``cfg.OPTIM`` node (NAME, LR, WEIGHT_DECAY, MOMENTUM, SGD_DAMPNING, SGD_NESTEROV,
            ADAM_BETA1/2, ADAM_EPS).
    """
    name, lr, wd = optim_cfg.NAME, optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if name not in OPTIMIZERS:
        raise ValueError(f"OPTIM.NAME must be one of {list(OPTIMIZERS)}, got {name!r}")
    items = list(model.parameters() if isinstance(model, nn.Module) else model)
    groups = items if items and isinstance(items[0], dict) else [{"params": items}]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    groups = [g for g in groups if g["params"]]
    if not groups:
        raise ValueError("build_optimizer: the model has no parameter with requires_grad=True")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    adam = torch.optim.AdamW if name == "adamw" else torch.optim.Adam  # AdamW: decoupled weight decay
    return adam(groups, lr=lr, weight_decay=wd, betas=(optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2),
                eps=optim_cfg.ADAM_EPS)


class WarmupScheduler:
    """Warm-up for ``warmup_epoch`` epochs, then hand over to ``successor`` (a torch scheduler).

    Stepping semantics are those of Dassl's warm-up schedulers, so runs match the official ones epoch by
    epoch: construction counts as step 0 (warm-up LR in place); while ``last_epoch < warmup_epoch`` each
    step advances the warm-up; the step that reaches ``warmup_epoch`` installs the successor's current LR
    (the base LR); every later step steps the successor.

    Args:
        optimizer: the optimizer whose ``param_groups[i]["lr"]`` is driven.
        successor: the main schedule, already built on ``optimizer``.
        warmup_epoch: number of warm-up epochs (> 0).
        warmup_type: ``"constant"`` (LR = ``warmup_lr``) or ``"linear"`` (``warmup_lr`` at epoch 0, then
            ``base_lr * epoch / warmup_epoch``).
        warmup_lr: ``WARMUP_CONS_LR`` or ``WARMUP_MIN_LR``.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, successor, warmup_epoch: int, warmup_type: str,
                 warmup_lr: float) -> None:
        if warmup_type not in WARMUP_TYPES:
            raise ValueError(f"OPTIM.WARMUP_TYPE must be one of {list(WARMUP_TYPES)}, got {warmup_type!r}")
        self.optimizer = optimizer
        self.successor = successor
        self.warmup_epoch = int(warmup_epoch)
        self.warmup_type = warmup_type
        self.warmup_lr = float(warmup_lr)
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._last_lr: List[float] = []
        self.step()

    def _warmup_lrs(self) -> List[float]:
        if self.warmup_type == "constant" or self.last_epoch == 0:
            return [self.warmup_lr for _ in self.base_lrs]
        return [base * self.last_epoch / self.warmup_epoch for base in self.base_lrs]

    def step(self) -> None:
        """Advance one epoch."""
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step()
            self._last_lr = list(self.successor.get_last_lr())
            return
        self.last_epoch += 1
        if self.last_epoch >= self.warmup_epoch:
            lrs = list(self.successor.get_last_lr())
        else:
            lrs = self._warmup_lrs()
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs

    def get_last_lr(self) -> List[float]:
        """The LR of each param group for the coming epoch."""
        return list(self._last_lr)

    def state_dict(self) -> Dict[str, Any]:
        """Plain-data state; ``successor`` is the successor's own ``state_dict()`` (as in the parity files)."""
        return {"warmup_epoch": self.warmup_epoch, "warmup_type": self.warmup_type,
                "cons_lr" if self.warmup_type == "constant" else "min_lr": self.warmup_lr,
                "base_lrs": list(self.base_lrs), "last_epoch": self.last_epoch, "_last_lr": list(self._last_lr),
                "successor": self.successor.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` or an official Dassl warm-up scheduler dict (successor as a dict)."""
        succ = state["successor"]
        if not isinstance(succ, dict):  # an official file pickles the successor object itself
            succ = succ.state_dict()
        self.successor.load_state_dict(succ)
        self.warmup_epoch = int(state["warmup_epoch"])
        self.warmup_lr = float(state.get("cons_lr", state.get("min_lr", self.warmup_lr)))
        self.base_lrs = list(state["base_lrs"])
        self.last_epoch = int(state["last_epoch"])
        self._last_lr = list(state["_last_lr"])
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg):
    """The per-epoch LR schedule of ``cfg.OPTIM`` (LR_SCHEDULER, STEPSIZE, GAMMA, MAX_EPOCH, WARMUP_*).

    Returns the torch scheduler, wrapped in a :class:`WarmupScheduler` when ``WARMUP_EPOCH > 0`` (the main
    schedule then starts from its own epoch 0 after the warm-up, as in the official configs). Every returned
    object has ``step()``, ``get_last_lr()``, ``state_dict()`` and ``load_state_dict()``.
    """
    kind = optim_cfg.LR_SCHEDULER
    if kind not in SCHEDULERS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {list(SCHEDULERS)}, got {kind!r}")
    if kind == "cosine":
        scheduler = CosineAnnealingLR(optimizer, T_max=float(optim_cfg.MAX_EPOCH))
    else:
        step = optim_cfg.STEPSIZE
        step = step[-1] if isinstance(step, (list, tuple)) else step
        if not isinstance(step, int):
            raise TypeError(f"OPTIM.STEPSIZE for single_step must be an int, got {step!r}")
        scheduler = StepLR(optimizer, step_size=step if step > 0 else optim_cfg.MAX_EPOCH, gamma=optim_cfg.GAMMA)
    if optim_cfg.WARMUP_EPOCH <= 0:
        return scheduler
    warmup_lr = optim_cfg.WARMUP_CONS_LR if optim_cfg.WARMUP_TYPE == "constant" else optim_cfg.WARMUP_MIN_LR
    return WarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_TYPE, warmup_lr)
