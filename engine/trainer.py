"""The training loop. A trainer subclass builds the model and says what one training step does; the rest is here.

Subclasses implement ``build_model`` (set ``self.model``, call ``register_model`` with its optimizer and LR
schedule) and ``forward_backward`` (one batch: forward, ``model_backward_and_update(loss)``, return
``{"loss": float, ...}``). Data, LR stepping, checkpoints, resuming, evaluation, logs and TensorBoard are here or
in engine/hooks.py, whose docstring gives the order of the epoch-level work. The LR moves once per epoch
(``LRStepHook``), never inside a step. Method and attribute names are Dassl's, so code written against Dassl's
``TrainerX`` reads the same.
"""
from __future__ import annotations

import datetime
import logging
import os
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from fileio import remove_stale_temps

from . import distributed
from .checkpoint import (BEST_FILE, POINTER_FILE, epoch_file, get_rng_state,
                         learnable_state_dict, load_checkpoint, load_learnable, save_checkpoint, set_rng_state)
from .evaluation import Classification, prediction_rows, write_results
from .hooks import HookBase, default_hooks
from .logging import AverageMeter, MetricMeter
from .precision import Precision
from .registry import TRAINER_REGISTRY

logger = logging.getLogger(__name__)


def _owners(directory: str, also_written_by: str = "") -> str:
    """A hint naming the trainers whose checkpoint folders ``directory`` holds (a checkpoint of another method?)."""
    found: Dict[str, List[str]] = {}
    for trainer, cls in TRAINER_REGISTRY:
        folder = getattr(cls, "REGISTERED_NAME", "")
        if folder and os.path.isdir(os.path.join(directory, folder)):
            found.setdefault(folder, []).append(trainer)
    if also_written_by:
        found = {folder: owners for folder, owners in found.items() if folder == also_written_by}
    if not found:
        return ""
    listed = "; ".join(f"{folder}/ is written by {' or '.join(owners)}" for folder, owners in sorted(found.items()))
    return f". {directory} holds checkpoints of other methods? {listed}: check --model-dir and --trainer"


class TrainerBase:
    """Base of every trainer.

    Construction: ``cfg`` -> device, output dir, ``build_data_loader()``, ``build_model()``, evaluator, hooks.

    Attributes set here: ``cfg``, ``device``, ``output_dir``, ``start_epoch``, ``epoch``, ``max_epoch``,
    ``precision`` (fp32 until the subclass calls ``build_precision``), ``dm``, ``train_loader_x``,
    ``val_loader``, ``test_loader``, ``num_classes``, ``lab2cname``, ``classnames``, ``evaluator``.
    """

    #: keys of a checkpoint that are frozen parts of the model that saved it (e.g. an official file's copy of
    #: CLIP), skipped without a warning when loading; the method's trainer knows its names
    checkpoint_ignore_prefixes: Sequence[str] = ()

    def __init__(self, cfg) -> None:
        self._models: "OrderedDict[str, nn.Module]" = OrderedDict()
        self._optims: "OrderedDict[str, Any]" = OrderedDict()
        self._scheds: "OrderedDict[str, Any]" = OrderedDict()
        self._writer = None
        self._hooks: List[HookBase] = []
        self.cfg = cfg
        use_cuda = cfg.USE_CUDA and torch.cuda.is_available()
        self.device = torch.device("cuda", distributed.local_rank()) if use_cuda else torch.device("cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.batch_idx = self.num_batches = 0
        self.best_result = -float("inf")
        self.precision = Precision("fp32", self.device)
        self.build_data_loader()
        self.build_model()
        self.evaluator = Classification(cfg, lab2cname=self.lab2cname)
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ construction
    #: ``--eval-only`` without weights is meaningful (nothing is learned, e.g. zero-shot CLIP)
    EVALUATES_WITHOUT_WEIGHTS = False

    @classmethod
    def add_config(cls, cfg) -> None:
        """Add this trainer's config node (e.g. ``cfg.TRAINER.COOP``); called by ``train.setup_cfg``."""

    @classmethod
    def dataset_config(cls, cfg) -> List[Any]:
        """``[KEY, VALUE, ...]`` this method sets for the dataset ``cfg.DATASET.NAME`` (e.g. a per-dataset loss
        weight), merged after the config files and before the command line's ``KEY VALUE`` pairs, which still
        win (default: none)."""
        return []

    @classmethod
    def resolve_config(cls, cfg) -> None:
        """Set the values this method derives from other keys, before the config is frozen and saved, so that
        config.yaml records what runs (default: nothing)."""

    def build_data_loader(self) -> None:
        """``self.dm = DataManager(cfg)`` and copy its loaders / label maps onto the trainer."""
        from .data import DataManager  # lazy: data pipelines are only needed when a trainer is built

        dm = DataManager(self.cfg)
        self.dm = dm
        self.train_loader_x = dm.train_loader_x
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.lab2cname = dm.lab2cname
        self.classnames = dm.classnames

    def build_model(self) -> None:
        """Build ``self.model`` (holding every learnable tensor) and ``register_model`` it with optim/sched."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model()")

    def build_precision(self, prec: str) -> Precision:
        """The precision policy for ``prec`` (fp32 | fp16 | bf16 | amp) on this trainer's device."""
        return Precision(prec, self.device)

    def build_hooks(self) -> List[HookBase]:
        """Hooks in execution order (see engine/hooks.py); override to add or replace some."""
        return default_hooks()

    def register_hooks(self, hooks: Sequence[HookBase]) -> None:
        for h in hooks:
            h.trainer = self
            self._hooks.append(h)

    def register_model(self, name: str = "model", model: Optional[nn.Module] = None, optim=None,
                       sched=None) -> None:
        """Register ``model`` (saved / loaded / mode-toggled under ``name``) with its optimizer and scheduler."""
        if name in self._models:
            raise KeyError(f"A model named {name!r} is already registered")
        if model is None:
            raise ValueError(f"register_model({name!r}): model is None")
        self._models[name], self._optims[name], self._scheds[name] = model, optim, sched

    def get_model_names(self) -> List[str]:
        """The registered names, in registration order (the checkpoint sub-folders)."""
        return list(self._models)

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, epoch: int, directory: str, is_best: bool = False, val_result: Optional[float] = None,
                   model_name: str = "") -> None:
        """Save every registered model to ``<directory>/<name>/model.pth.tar-<epoch + 1>`` (or ``model_name``).

        Only learnable tensors are written; optimizer/scheduler states and RNG states come along for resuming.
        Under torchrun only the first process writes (every process holds the same tensors).
        """
        if not distributed.is_main():
            return
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            state = {"state_dict": self.export_state_dict(name, learnable_state_dict(self._models[name])),
                     "epoch": epoch + 1,
                     "optimizer": None if optim is None else optim.state_dict(),
                     "scheduler": None if sched is None else sched.state_dict(),
                     "val_result": val_result, "rng_state": get_rng_state(),
                     "precision": self.precision.state_dict()}
            hook_states = self.hook_states()
            if hook_states:
                state["hooks"] = hook_states
            save_checkpoint(state, os.path.join(directory, name), is_best=is_best, model_name=model_name,
                            update_pointer=not model_name)

    def hook_states(self) -> Dict[str, Dict[str, Any]]:
        """``{hook class name: state}`` of the hooks that have a state to resume (see ``HookBase.state_dict``)."""
        return {type(h).__name__: h.state_dict() for h in self._hooks if h.state_dict()}

    def load_hook_states(self, states: Dict[str, Dict[str, Any]], path: str) -> None:
        """Give each hook its state from a checkpoint; a hook with a state the file lacks cannot resume."""
        for h in self._hooks:
            name = type(h).__name__
            if name in states:
                h.load_state_dict(states[name])
            elif h.state_dict():
                raise ValueError(f"{path} holds no state of {name}, which this run needs to continue")

    def remove_epoch_files(self, epoch: int, directory: str) -> None:
        """Delete ``model.pth.tar-<epoch>`` of every registered model (the pointer names a later file)."""
        for name in self.get_model_names() if distributed.is_main() else ():
            path = os.path.join(directory, name, epoch_file(epoch))
            if os.path.isfile(path):
                os.remove(path)

    def export_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Hook: rename our learnable keys of model ``name`` to the names its checkpoints carry (default: same).

        Methods whose official checkpoints name tensors differently from our modules override this and
        :meth:`import_state_dict`, so our files read like the official ones and official files load here.
        """
        return state

    def import_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Hook: inverse of :meth:`export_state_dict`, applied to every loaded checkpoint state_dict."""
        return state

    def resume_model_if_exist(self, directory: str, required: bool = False) -> int:
        """Restore model, optimizer, scheduler and RNG states from ``<directory>/<name>/checkpoint``.

        Returns the epoch to start from (0 when nothing is found). ``required`` (an explicit ``--resume``):
        a missing checkpoint raises FileNotFoundError instead of training from scratch.
        """
        names = self.get_model_names()
        pointers = [os.path.join(directory, n, POINTER_FILE) for n in names]
        missing = [p for p in pointers if not os.path.isfile(p)]
        if not names or missing:
            if required and missing:
                raise FileNotFoundError(f"Cannot resume from {directory}: no checkpoint pointer at {missing}")
            logger.info("Starting from the initial weights: %s holds no checkpoint to continue from", directory)
            return 0
        logger.info("Continuing the run saved in %s", directory)
        start_epoch = 0
        for name, pointer in zip(names, pointers):
            with open(pointer) as f:
                path = os.path.join(directory, name, f.readline().strip())
            ckpt = load_checkpoint(path)
            self._load_weights(name, ckpt, path)
            self._restore_optim_sched(name, ckpt, path)
            self.precision.load_state_dict(ckpt.get("precision") or {})
            if ckpt.get("rng_state"):
                set_rng_state(ckpt["rng_state"])
            self.load_hook_states(ckpt.get("hooks") or {}, path)
            start_epoch = int(ckpt["epoch"])
            logger.info("Restored %s: %d epoch(s) done", path, start_epoch)
        return start_epoch

    def _restore_optim_sched(self, name: str, ckpt: Dict[str, Any], path: str) -> None:
        for key, obj in (("optimizer", self._optims[name]), ("scheduler", self._scheds[name])):
            if obj is None or ckpt.get(key) is None:
                continue
            try:
                obj.load_state_dict(ckpt[key])
            except (ValueError, KeyError) as e:
                raise ValueError(f"{path}: the saved {key} state does not fit {name!r} ({e}); files that "
                                 f"optimised the whole CLIP can be evaluated (load_model) but not resumed") from e

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """Load learnable weights from ``<directory>/<name>/model.pth.tar-<epoch>`` (``model-best.pth.tar`` if
        ``epoch`` is None), ours or official (whole-CLIP files: frozen keys are ignored)."""
        if not directory:
            logger.info("No model folder given: evaluating the initial weights")
            return
        fname = BEST_FILE if epoch is None else epoch_file(epoch)
        for name in self.get_model_names():
            path = os.path.join(directory, name, fname)
            if not os.path.isfile(path):
                folder = os.path.dirname(path)
                have = sorted(os.listdir(folder)) if os.path.isdir(folder) else "folder missing"
                raise FileNotFoundError(f"No model at {path} (found in {folder}: {have}){_owners(directory)}")
            ckpt = load_checkpoint(path)
            try:
                self._load_weights(name, ckpt, path)
            except (KeyError, ValueError) as err:
                hint = _owners(directory, also_written_by=name)
                raise type(err)(f"{err.args[0] if err.args else err}{hint}") from None
            logger.info("Weights of %s read from %s (epoch %s, val_result %s)", name, path, ckpt.get("epoch"),
                        ckpt.get("val_result"))

    def _load_weights(self, name: str, ckpt: Dict[str, Any], path: str) -> None:
        load_learnable(self._models[name], self.import_state_dict(name, ckpt["state_dict"]), source=path,
                       ignore_prefixes=self.checkpoint_ignore_prefixes)

    # ------------------------------------------------------------------ modes, LR, backward
    def set_model_mode(self, mode: str = "train") -> None:
        """``train()`` or ``eval()`` the registered models only (frozen parts outside them are untouched)."""
        if mode not in ("train", "eval", "test"):
            raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}")
        for model in self._models.values():
            model.train(mode == "train")

    def update_lr(self) -> None:
        for sched in self._scheds.values():
            if sched is not None:
                sched.step()

    def get_current_lr(self) -> float:
        """LR of the first param group of the first registered optimizer (0.0 without one)."""
        return next((opt.param_groups[0]["lr"] for opt in self._optims.values() if opt is not None), 0.0)

    def _non_finite_message(self, what: str) -> str:
        prec = f"PREC fp32 instead of {self.precision.mode}, " if self.precision.mode != "fp32" else ""
        return (f"{what} is NaN or infinite at epoch {self.epoch + 1}/{self.max_epoch}, batch "
                f"{self.batch_idx + 1}/{self.num_batches}. Training stopped; checkpoints already in "
                f"{self.output_dir} are left untouched. Try: a lower OPTIM.LR (now {self.get_current_lr():.4e}), "
                f"{prec}a longer warm-up (OPTIM.WARMUP_EPOCH), or check the inputs for NaN.")

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        """Raise FloatingPointError (naming epoch / batch and what to try) if ``loss`` is not finite."""
        if not torch.isfinite(loss).all():
            raise FloatingPointError(self._non_finite_message("Loss"))

    def model_zero_grad(self) -> None:
        for opt in self._optims.values():
            if opt is not None:
                opt.zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        """Check ``loss`` is finite, backward (through ``self.precision``); under torchrun the learnable gradients
        are then averaged over the processes, so each backward gives the gradient of the global batch."""
        self.detect_anomaly(loss)
        self.precision.backward(loss)
        distributed.average_gradients(p for model in self._models.values() for p in model.parameters()
                                      if p.requires_grad)

    def model_update(self) -> None:
        self.precision.step(self._optims.values())

    def model_backward_and_update(self, loss: torch.Tensor) -> None:
        """Zero grads, check ``loss`` is finite, backward (through ``self.precision``), optimizer step."""
        self.model_zero_grad()
        self.model_backward(loss)
        self.model_update()

    # ------------------------------------------------------------------ tensorboard
    def init_writer(self, log_dir: str, purge_step: Optional[int] = None) -> None:
        if self._writer is None and distributed.is_main():
            from torch.utils.tensorboard import SummaryWriter  # lazy: imports tensorboard

            os.makedirs(log_dir, exist_ok=True)
            logger.info("TensorBoard events go to %s", log_dir)
            self._writer = SummaryWriter(log_dir=log_dir, purge_step=purge_step or None)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def write_scalar(self, tag: str, value: float, global_step: Optional[int] = None) -> None:
        if self._writer is not None:  # only training opens a writer
            self._writer.add_scalar(tag, value, global_step)

    # ------------------------------------------------------------------ loop
    def train(self, start_epoch: Optional[int] = None, max_epoch: Optional[int] = None) -> None:
        """Run epochs ``[start_epoch, max_epoch)``; by default resume from the output dir / ``cfg.RESUME``."""
        if max_epoch is not None:
            self.max_epoch = max_epoch
        try:
            self.before_train()
            if start_epoch is not None:
                self.start_epoch = start_epoch
            for self.epoch in range(self.start_epoch, self.max_epoch):
                self.before_epoch()
                self.run_epoch()
                self.after_epoch()
            self.after_train()
        finally:
            for h in self._hooks:
                h.close()

    def before_train(self) -> None:
        resume = self.cfg.RESUME
        for name in self.get_model_names():  # what a save killed half-way left behind
            for path in remove_stale_temps(os.path.join(self.output_dir, name)):
                logger.info("Removed %s, left by an interrupted save", path)
        self.start_epoch = self.resume_model_if_exist(resume or self.output_dir, required=bool(resume))
        self.time_start = time.time()
        for h in self._hooks:
            h.before_train()

    def before_epoch(self) -> None:
        for h in self._hooks:
            h.before_epoch()

    def after_epoch(self) -> None:
        for h in self._hooks:
            h.after_epoch()

    def after_train(self) -> None:
        for h in self._hooks:
            h.after_train()
        elapsed = datetime.timedelta(seconds=round(time.time() - self.time_start))
        logger.info("Time taken: %s", elapsed)

    def run_epoch(self) -> None:
        """One pass over ``train_loader_x``: ``forward_backward`` per batch, meters, ``after_step`` hooks."""
        self.set_model_mode("train")
        self.loss_meter, self.batch_time, self.data_time = MetricMeter(), AverageMeter(), AverageMeter()
        self.num_batches = len(self.train_loader_x)
        end = time.time()
        for self.batch_idx, batch in enumerate(self.train_loader_x):
            self.data_time.update(time.time() - end)
            summary = self.forward_backward(batch)
            self.loss_meter.update(summary)
            bad = [k for k, v in summary.items() if not torch.isfinite(torch.as_tensor(v)).all()]
            if bad:  # a trainer that steps its optimizer itself: still stop before anything is saved
                raise FloatingPointError(self._non_finite_message(f"{bad[0]!r}"))
            self.batch_time.update(time.time() - end)
            for h in self._hooks:
                h.after_step()
            end = time.time()

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        """One training step on ``batch``; returns ``{"loss": float, ...}``. Must NOT step the LR."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward_backward()")

    def parse_batch_train(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(img (B,3,H,W), label (B,))`` on ``self.device``."""
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, C)`` for a test batch."""
        return self.model(input)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> Dict[str, float]:
        """Evaluate on ``split`` ("test" or "val"; default ``TEST.SPLIT``; val falls back to test if absent).

        Logs the result block, writes ``<output>/results.json`` (and ``predictions.json`` with
        ``TEST.SAVE_PREDICTIONS``), and returns the evaluator's dict (accuracy, error_rate, macro_f1, ...).
        """
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            loader = self.val_loader
        else:
            split, loader = "test", self.test_loader
        logger.info("Evaluating on the %s split", split)
        preds: List[Dict[str, Any]] = []
        for batch in loader:
            images, labels = self.parse_batch_test(batch)
            logits = self.model_inference(images)  # (B, C)
            self.evaluator.process(logits, labels)
            if self.cfg.TEST.SAVE_PREDICTIONS:
                preds.extend(prediction_rows(batch.get("impath"), labels, logits))
        # under torchrun each process evaluated one contiguous part: put the parts back in order, everywhere
        self.evaluator.y_true, self.evaluator.y_pred = (distributed.gather(self.evaluator.y_true),
                                                        distributed.gather(self.evaluator.y_pred))
        preds = distributed.gather(preds)
        results = self.evaluator.evaluate()
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        if distributed.is_main():
            write_results(self.output_dir, split, results, self.evaluator,
                          preds if self.cfg.TEST.SAVE_PREDICTIONS else None, world_size=distributed.world_size())
        return dict(results)
