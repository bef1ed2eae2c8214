"""Training-loop hooks: what happens around the epochs, in a fixed, documented order.

:meth:`engine.trainer.TrainerBase.train` calls, for every hook in the order of ``trainer.build_hooks()``::

    before_train()
    for each epoch:  before_epoch();  after_step() after every batch;  after_epoch()
    after_train()            (only when every epoch finished)
    close()                  (always, also after an exception: releases files / writers)

Default order (``default_hooks``), which matters inside ``after_epoch``:

1. :class:`LRStepHook`      -- steps every scheduler once (the LR of the NEXT epoch is in place)
   (:class:`EpochAverageHook`, when a trainer adds it: the per-epoch average of the learnable tensors, which
   replaces them after the last epoch, before the final checkpoint and test)
2. :class:`BestValHook`     -- ``TEST.FINAL_MODEL best_val``: test on val, save ``model-best.pth.tar``
3. :class:`CheckpointHook`  -- after every epoch (older ones removed unless ``TRAIN.CHECKPOINT_FREQ`` keeps them)
4. :class:`MetricsHook`     -- per-batch log line + TensorBoard scalars (``<output>/tensorboard``)
5. :class:`FinalEvalHook`   -- after training: ``Finished training``, deploy the final model, test

Checkpoints are written after the LR step, so a resumed run continues with exactly the schedule an
uninterrupted run would have used. A hook whose :meth:`HookBase.state_dict` is not empty has that state saved in
every checkpoint and restored on resume (``TrainerBase.save_model`` / ``resume_model_if_exist``).
"""
from __future__ import annotations

import datetime
import logging
import math
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


class HookBase:
    """A hook sees the trainer (``self.trainer``, an ``engine.trainer.TrainerBase`` set by its ``register_hooks``;
    not imported here, so the two modules do not import each other); override what you need."""

    trainer: Any

    def before_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def close(self) -> None:
        pass

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs to continue this hook (tensors and plain types; empty = nothing)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class LRStepHook(HookBase):
    """Steps the LR schedulers once per epoch, after the epoch's last batch."""

    def after_epoch(self) -> None:
        self.trainer.update_lr()


def gaussian_epoch_weights(n_epochs: int, mean: float, std: float) -> List[float]:
    """Normal-density weights of the 1-based epochs ``1..n_epochs`` (mean and std in epochs), normalised to sum
    to 1. Computed in float64 with numpy, in the order PromptSRC's code computes them, so the weights are its."""
    density = [(1 / (std * np.sqrt(2 * np.pi))) * np.exp(-0.5 * ((e - mean) / std) ** 2)
               for e in range(1, n_epochs + 1)]
    total = sum(density)
    return [float(d / total) for d in density]


class EpochAverageHook(HookBase):
    """A weighted average over epochs of every registered model's learnable tensors, which becomes the final
    model (PromptSRC's Gaussian prompt aggregation; any trainer may use it).

    After each epoch ``e`` (0-based) the tensors are added with ``weights[e]`` to a running sum; after the last
    epoch the sum replaces them, so the last checkpoint and the final test hold the average. The running sum is
    in every checkpoint (:meth:`state_dict`), so a run killed and resumed ends with the same average, bitwise.

    Args:
        weights: one weight per epoch (``len(weights)`` epochs; normally summing to 1).
    """

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = [float(w) for w in weights]
        self.sums: Dict[str, Dict[str, torch.Tensor]] = {}

    def _learnable(self):
        for name, model in self.trainer._models.items():
            for key, param in model.named_parameters():
                if param.requires_grad:
                    yield name, key, param

    def after_epoch(self) -> None:
        t = self.trainer
        if t.epoch >= len(self.weights):
            raise ValueError(f"epoch {t.epoch + 1} has no averaging weight (weights for {len(self.weights)} epochs)")
        weight = self.weights[t.epoch]
        with torch.no_grad():
            for name, key, param in self._learnable():
                term = param.detach() * weight
                sums = self.sums.setdefault(name, {})
                sums[key] = sums[key].to(term.device) + term if key in sums else term
            if t.epoch + 1 == len(self.weights):
                logger.info("The final model is the weighted average of the %d epochs", len(self.weights))
                for name, key, param in self._learnable():
                    param.copy_(self.sums[name][key])

    def state_dict(self) -> Dict[str, Any]:
        return {"weights": list(self.weights), "sums": self.sums}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if list(state["weights"]) != self.weights:
            raise ValueError(f"the checkpoint's epoch weights {state['weights']} differ from this run's "
                             f"{self.weights}: it was trained with another schedule")
        self.sums = {name: dict(sums) for name, sums in state["sums"].items()}


class BestValHook(HookBase):
    """With ``TEST.FINAL_MODEL best_val``: evaluate on val after each epoch and keep the best model."""

    def __init__(self) -> None:
        self.best: float = -math.inf

    def after_epoch(self) -> None:
        cfg = self.trainer.cfg
        if cfg.TEST.NO_TEST or cfg.TEST.FINAL_MODEL != "best_val":
            return
        result = self.trainer.test(split="val")["accuracy"]
        if result > self.best:
            self.best = result
            self.trainer.best_result = result
            self.trainer.save_model(self.trainer.epoch, self.trainer.output_dir, val_result=result,
                                    model_name="model-best.pth.tar")


class CheckpointHook(HookBase):
    """Saves ``model.pth.tar-<epoch>`` after every epoch, so a killed run loses at most one epoch, and removes the
    previous epoch's file unless ``TRAIN.CHECKPOINT_FREQ`` (> 0) asks to keep every N-th epoch."""

    def after_epoch(self) -> None:
        t = self.trainer
        t.save_model(t.epoch, t.output_dir)
        freq, previous = t.cfg.TRAIN.CHECKPOINT_FREQ, t.epoch  # the 1-based epoch saved before this one
        if previous >= 1 and not (freq > 0 and previous % freq == 0):
            t.remove_epoch_files(previous, t.output_dir)


class MetricsHook(HookBase):
    """The official per-batch line (every ``TRAIN.PRINT_FREQ`` batches, or every batch when an epoch has fewer)
    and TensorBoard scalars ``train/<loss name>`` (running mean) and ``train/lr`` per iteration."""

    def before_train(self) -> None:
        # a resumed run rewrites the steps of its interrupted epoch: TensorBoard drops the old ones
        t = self.trainer
        t.init_writer(os.path.join(t.output_dir, "tensorboard"), purge_step=t.start_epoch * len(t.train_loader_x))

    def after_step(self) -> None:
        t = self.trainer
        freq = t.cfg.TRAIN.PRINT_FREQ
        lr = t.get_current_lr()
        if (t.batch_idx + 1) % freq == 0 or t.num_batches < freq:
            remaining = t.num_batches - t.batch_idx - 1 + (t.max_epoch - t.epoch - 1) * t.num_batches
            eta = datetime.timedelta(seconds=int(t.batch_time.avg * remaining))
            logger.info("epoch [%d/%d] batch [%d/%d] time %.3f (%.3f) data %.3f (%.3f) %s lr %.4e eta %s",
                        t.epoch + 1, t.max_epoch, t.batch_idx + 1, t.num_batches, t.batch_time.val,
                        t.batch_time.avg, t.data_time.val, t.data_time.avg, t.loss_meter, lr, eta)
        n_iter = t.epoch * t.num_batches + t.batch_idx
        for name, meter in t.loss_meter.meters.items():
            t.write_scalar(f"train/{name}", meter.avg, n_iter)
        t.write_scalar("train/lr", lr, n_iter)

    def close(self) -> None:
        self.trainer.close_writer()


class FinalEvalHook(HookBase):
    """After the last epoch: log ``Finished training``, deploy the final model and test it (unless NO_TEST)."""

    def after_train(self) -> None:
        t = self.trainer
        logger.info("Finished training")
        if t.cfg.TEST.NO_TEST:
            return
        if t.cfg.TEST.FINAL_MODEL == "best_val":
            logger.info("Testing the weights that did best on the validation split")
            t.load_model(t.output_dir)
        else:
            logger.info("Testing the weights of the last epoch")
        t.test()


def default_hooks() -> List[HookBase]:
    """The hooks every trainer gets, in the documented order (see the module docstring)."""
    return [LRStepHook(), BestValHook(), CheckpointHook(), MetricsHook(), FinalEvalHook()]


def find_hook(hooks: List[HookBase], kind: type) -> Optional[HookBase]:
    """The first hook of type ``kind`` (None if absent)."""
    return next((h for h in hooks if isinstance(h, kind)), None)
