"""Checkpoints in the official Dassl layout, holding only learnable tensors.

Layout: ``<output>/<model name>/model.pth.tar-<epoch>`` (1-based epoch), ``model-best.pth.tar`` and a
``checkpoint`` text file naming the latest file. Each file is a dict
``{state_dict, epoch, optimizer, scheduler, val_result}`` (+ ``rng_state``, ours, used only to resume).
``state_dict`` holds the parameters with ``requires_grad`` only: the frozen CLIP is never written.

Loading accepts files that carry more than the learnable tensors (official files of methods that saved their
whole model): keys of frozen tensors of our module and keys the caller declares frozen (the trainer knows its
method's names) are ignored; a missing or mis-shaped learnable key is an error, any other key a warning.
"""
from __future__ import annotations

import logging
import os
import pickle
import random
import re
import shutil
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn

from fileio import atomic_write

logger = logging.getLogger(__name__)

POINTER_FILE = "checkpoint"
BEST_FILE = "model-best.pth.tar"


def epoch_file(epoch: int) -> str:
    """File name of the checkpoint saved after the 1-based ``epoch``."""
    return f"model.pth.tar-{epoch}"


def learnable_state_dict(module: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """The entries of ``module.state_dict()`` that are parameters with ``requires_grad`` (detached)."""
    state = module.state_dict(keep_vars=True)
    return OrderedDict((k, v.detach()) for k, v in state.items()
                       if isinstance(v, nn.Parameter) and v.requires_grad)


def save_checkpoint(state: Dict[str, Any], save_dir: str, is_best: bool = False, model_name: str = "",
                    update_pointer: bool = True) -> str:
    """Save ``state`` (a Dassl dict with ``epoch``) into ``save_dir``; returns the file path.

    ``model_name`` defaults to ``model.pth.tar-<state["epoch"]>``. With ``update_pointer`` the ``checkpoint``
    pointer file (what resuming reads) names the new file. ``is_best`` also copies it to
    ``model-best.pth.tar``. Keys starting with ``module.`` lose that prefix.
    """
    os.makedirs(save_dir, exist_ok=True)
    state = dict(state)
    state["state_dict"] = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v)
                                      for k, v in state["state_dict"].items())
    fpath = os.path.join(save_dir, model_name or epoch_file(state["epoch"]))
    atomic_write(fpath, lambda tmp: torch.save(state, tmp))
    logger.info("Saved %s", fpath)

    def write_pointer(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(os.path.basename(fpath) + "\n")

    if update_pointer:
        atomic_write(os.path.join(save_dir, POINTER_FILE), write_pointer)
    if is_best:
        best = os.path.join(save_dir, BEST_FILE)
        atomic_write(best, lambda tmp: shutil.copyfile(fpath, tmp))
        logger.info("Copied it to %s", best)
    return fpath


class PickledObject:
    """An inert stand-in for a torch optimizer or LR-scheduler object pickled in an official file: it keeps the
    object's attributes as data and runs none of its code; ``state_dict()`` gives them back as torch would."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})

    def state_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "optimizer"}


class _OfficialFileUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers, and torch's optimizer/scheduler classes as :class:`PickledObject`
    (what official Dassl files hold besides tensors); refuses every other global, so no code can run."""

    SAFE = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
            ("collections", "OrderedDict"), ("collections", "defaultdict"), ("builtins", "dict"),
            ("__builtin__", "dict"), ("torch", "Size")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.SAFE:
            return super().find_class(module, name)
        if module.startswith(("torch.optim.", "dassl.optim.")):
            return PickledObject
        raise pickle.UnpicklingError(f"Unsupported global: GLOBAL {module}.{name}")


class _OfficialFilePickle:
    """The ``pickle_module`` torch.load uses for official files (only its Unpickler is read)."""

    Unpickler = _OfficialFileUnpickler
    load = staticmethod(lambda f, **kw: _OfficialFileUnpickler(f, **kw).load())


def _read(fpath: str) -> Any:
    """``torch.load(weights_only=True)``; for official files whose scheduler/optimizer objects it cannot rebuild,
    the restricted unpickler above. Either way no global outside an allow-list is ever called."""
    try:
        return torch.load(fpath, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        return torch.load(fpath, map_location="cpu", weights_only=False, pickle_module=_OfficialFilePickle)


def load_checkpoint(fpath: str) -> Dict[str, Any]:
    """Read a checkpoint file on the CPU, never running code from it. Returns a dict with at least ``state_dict``.

    Files are read with ``torch.load(weights_only=True)``, and official files whose optimizer/scheduler objects
    that cannot rebuild through an allow-list (:class:`_OfficialFileUnpickler`). A file that asks for any other
    Python object could run code when unpickled: it is refused, with the command to convert it if it is trusted.
    A plain ``{name: tensor}`` file is wrapped as ``{"state_dict": ...}``.
    Raises FileNotFoundError (missing file) or ValueError naming the file (unreadable, refused, not a checkpoint).
    """
    if not os.path.isfile(fpath):
        raise FileNotFoundError(f"No checkpoint file at {fpath}")
    try:
        ckpt = _read(fpath)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if found is None:
            raise ValueError(f"Cannot read checkpoint {fpath}: {str(err).splitlines()[0]}") from None
        raise ValueError(
            f"Refused {fpath}: it asks to rebuild the Python object {found.group(1)}, and unpickling it could run "
            f"code. If you trust the file, keep only its weights once: python -c \"import torch, sys; c = "
            f"torch.load(sys.argv[1], weights_only=False); torch.save({{'state_dict': c['state_dict'], 'epoch': "
            f"c.get('epoch')}}, sys.argv[1])\" {fpath}") from None
    except Exception as err:  # truncated file, not a torch file: say which file
        raise ValueError(f"Cannot read checkpoint {fpath}: {type(err).__name__}: {err}") from err
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt:
        return dict(ckpt)
    if isinstance(ckpt, Mapping) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return {"state_dict": dict(ckpt), "epoch": None, "optimizer": None, "scheduler": None,
                "val_result": None}
    raise ValueError(f"{fpath} is not a checkpoint: expected a dict with a 'state_dict' entry, "
                     f"got {type(ckpt).__name__}")


@dataclass
class LoadReport:
    """What :func:`load_learnable` did with each key of the file."""

    loaded: List[str] = field(default_factory=list)
    ignored_frozen: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)


def load_learnable(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str = "<state_dict>",
                   ignore_prefixes: Sequence[str] = ()) -> LoadReport:
    """Copy the learnable tensors of ``state_dict`` into ``module`` (in place, keeping dtype/device).

    Args:
        module: the registered module; its learnable entries are the parameters with ``requires_grad``.
        state_dict: ``{key: tensor}`` from a file (``module.`` prefixes are stripped).
        source: the file name, used in messages.
        ignore_prefixes: keys starting with one of these are frozen parts of the file's model (e.g. an official
            file's copy of CLIP, its token buffers): skipped without a warning. The trainer knows the names.
    Raises:
        KeyError: learnable keys of ``module`` absent from the file (names the file and the keys).
        ValueError: a learnable key whose shape differs (names the key and both shapes).
    Returns:
        a :class:`LoadReport`; unexpected keys are also logged as a warning.
    """
    own = module.state_dict(keep_vars=True)
    learnable = {k: v for k, v in own.items() if isinstance(v, nn.Parameter) and v.requires_grad}
    frozen_keys = set(own) - set(learnable)
    incoming = OrderedDict((k[len("module."):] if k.startswith("module.") else k, v) for k, v in state_dict.items())
    missing = [k for k in learnable if k not in incoming]
    if missing:
        raise KeyError(f"{source} lacks learnable tensors of the model: {missing} (the file holds: "
                       f"{sorted(incoming)[:20]}{' ...' if len(incoming) > 20 else ''})")
    for k, param in learnable.items():
        value = incoming[k]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(f"{source}: shape mismatch for {k!r}: checkpoint {tuple(value.shape)} vs model "
                             f"{tuple(param.shape)}")
    report = LoadReport()
    with torch.no_grad():
        for k, param in learnable.items():
            param.copy_(incoming[k])
            report.loaded.append(k)
    for k in incoming:
        if k in learnable:
            continue
        if k in frozen_keys or k.startswith(tuple(ignore_prefixes)):
            report.ignored_frozen.append(k)
        else:
            report.unexpected.append(k)
    if report.unexpected:
        logger.warning("%s: ignored %d unexpected key(s): %s", source, len(report.unexpected), report.unexpected)
    return report


def get_rng_state() -> Dict[str, Any]:
    """The states of every random generator a run draws from (python, numpy, torch CPU, CUDA), as tensors and
    plain types, so a checkpoint holding them still loads with ``weights_only=True``. Saved at every epoch end, so
    a resumed run draws the same batch orders and augmentations as an uninterrupted one."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (missing entries are left alone)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        name, keys, position, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
