"""Optimizer and learning-rate schedule builders (``cfg.OPTIM``), reproducing the official Dassl schedule.

The schedule is stepped ONCE PER EPOCH, after the epoch, by ``engine.hooks.LRStepHook`` (never inside
``forward_backward``). With the official MaPLe/CoOp settings (cosine, 1 constant warm-up epoch at
``WARMUP_CONS_LR``, ``WARMUP_RECOUNT True``) the 0-based epoch ``e`` runs at::

    e == 0:  WARMUP_CONS_LR
    e >= 1:  0.5 * (1 + cos(pi * (e - 1) / MAX_EPOCH)) * LR        # main schedule restarted after warm-up

(the parity log of MaPLe shows 1e-5 then 3.5e-3, 3.1658e-3, 2.2908e-3, 1.2092e-3 for 5 epochs).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR, StepLR

logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "amsgrad", "adamw", "rmsprop", "radam")
SCHEDULERS = ("single_step", "multi_step", "cosine")
WARMUP_TYPES = ("constant", "linear")


def _trainable(params: Iterable[nn.Parameter]) -> List[nn.Parameter]:
    return [p for p in params if p.requires_grad]


def _staged_groups(model: nn.Module, optim_cfg, lr: float) -> List[Dict[str, Any]]:
    """Two groups: children named in ``NEW_LAYERS`` at ``LR``, the others at ``LR * BASE_LR_MULT``."""
    new_layers = optim_cfg.NEW_LAYERS
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
    if not new_layers:
        logger.warning("OPTIM.STAGED_LR is on but OPTIM.NEW_LAYERS is empty: every layer gets the reduced LR")
    children = dict(model.named_children())
    unknown = [name for name in new_layers if name not in children]
    if unknown:
        raise ValueError(f"OPTIM.NEW_LAYERS names {unknown}, which are not children of the model "
                         f"(children: {sorted(children)})")
    base, new = [], []
    for name, child in children.items():
        (new if name in new_layers else base).extend(_trainable(child.parameters()))
    return [{"params": base, "lr": lr * optim_cfg.BASE_LR_MULT}, {"params": new}]


def build_optimizer(model: Union[nn.Module, Iterable], optim_cfg,
                    param_groups: Optional[Sequence[Dict[str, Any]]] = None) -> torch.optim.Optimizer:
    """Build the optimizer named by ``OPTIM.NAME`` over the TRAINABLE parameters of ``model``.

    Args:
        model: a module (its parameters with ``requires_grad`` are optimized; frozen ones would get no
            gradient anyway, so the update is the same as the official optimizer over all parameters) or an
            iterable of parameters.
        optim_cfg: the ``cfg.OPTIM`` node (NAME, LR, WEIGHT_DECAY, MOMENTUM, SGD_DAMPNING, SGD_NESTEROV,
            RMSPROP_ALPHA, ADAM_BETA1/2, STAGED_LR, NEW_LAYERS, BASE_LR_MULT).
        param_groups: explicit parameter groups (then ``STAGED_LR`` is ignored).
    Returns:
        a ``torch.optim.Optimizer``.
    """
    name, lr, wd = optim_cfg.NAME, optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if name not in OPTIMIZERS:
        raise ValueError(f"OPTIM.NAME must be one of {list(OPTIMIZERS)}, got {name!r}")
    if param_groups is not None:
        if optim_cfg.STAGED_LR:
            logger.warning("OPTIM.STAGED_LR is ignored because explicit param_groups were given")
        groups: Any = list(param_groups)
    elif optim_cfg.STAGED_LR:
        if not isinstance(model, nn.Module):
            raise TypeError("OPTIM.STAGED_LR needs an nn.Module (its children are split by OPTIM.NEW_LAYERS)")
        groups = _staged_groups(model, optim_cfg, lr)
    else:
        params = model.parameters() if isinstance(model, nn.Module) else model
        groups = _trainable(params)
        if not groups:
            raise ValueError("build_optimizer: the model has no parameter with requires_grad=True")
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                               dampening=optim_cfg.SGD_DAMPNING, nesterov=optim_cfg.SGD_NESTEROV)
    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad")
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd,
                                   alpha=optim_cfg.RMSPROP_ALPHA)
    # torch's RAdam (Dassl ships its own variant; the two differ in the first few steps)
    return torch.optim.RAdam(groups, lr=lr, weight_decay=wd, betas=betas)


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


def _main_scheduler(optimizer: torch.optim.Optimizer, optim_cfg):
    kind, stepsize, gamma = optim_cfg.LR_SCHEDULER, optim_cfg.STEPSIZE, optim_cfg.GAMMA
    if kind not in SCHEDULERS:
        raise ValueError(f"OPTIM.LR_SCHEDULER must be one of {list(SCHEDULERS)}, got {kind!r}")
    if kind == "single_step":
        step = stepsize[-1] if isinstance(stepsize, (list, tuple)) else stepsize
        if not isinstance(step, int):
            raise TypeError(f"OPTIM.STEPSIZE for single_step must be an int, got {step!r}")
        return StepLR(optimizer, step_size=step if step > 0 else optim_cfg.MAX_EPOCH, gamma=gamma)
    if kind == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"OPTIM.STEPSIZE for multi_step must be a list of epochs, got {stepsize!r}")
        return MultiStepLR(optimizer, milestones=list(stepsize), gamma=gamma)
    return CosineAnnealingLR(optimizer, T_max=float(optim_cfg.MAX_EPOCH))


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg):
    """Build the per-epoch LR schedule of ``cfg.OPTIM`` (LR_SCHEDULER, STEPSIZE, GAMMA, MAX_EPOCH, WARMUP_*).

    Returns an object with ``step()``, ``get_last_lr()``, ``state_dict()``, ``load_state_dict()``: the torch
    scheduler itself, or a :class:`WarmupScheduler` around it when ``WARMUP_EPOCH > 0``.
    ``WARMUP_RECOUNT False`` starts the main schedule at epoch ``WARMUP_EPOCH`` instead of 0 (as Dassl: the
    successor's epoch counter is moved forward, so e.g. a step milestone comes ``WARMUP_EPOCH`` epochs earlier).
    """
    scheduler = _main_scheduler(optimizer, optim_cfg)
    if optim_cfg.WARMUP_EPOCH <= 0:
        return scheduler
    if not optim_cfg.WARMUP_RECOUNT:
        scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
    warmup_lr = optim_cfg.WARMUP_CONS_LR if optim_cfg.WARMUP_TYPE == "constant" else optim_cfg.WARMUP_MIN_LR
    return WarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_TYPE, warmup_lr)
