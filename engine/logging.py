"""Run logging: ``log.txt`` + stdout, the resolved ``config.yaml``, system info, and loss meters.

Library code logs through ``logging.getLogger(__name__)``; :func:`setup_logger` routes every record to the
console and to ``<output>/log.txt`` as bare messages, so the file reads like the official Dassl log.

An existing ``log.txt`` (a resumed or repeated run) is ROTATED to ``log.txt-<its mtime, %Y-%m-%d-%H-%M-%S>``
and the new run writes a fresh ``log.txt``. Dassl instead leaves ``log.txt`` alone and writes the new run to
``log.txt-<now>``; we rotate so that ``log.txt`` always holds the latest run, which is the file result
parsers (tools/parse_test_res.py) read.
"""
from __future__ import annotations

import logging
import logging.handlers
import os
import platform
import sys
import time
from collections import OrderedDict
from typing import Dict, Optional

import torch

from fileio import atomic_write

_HANDLER_TAG = "_engine_run_handler"


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stdout`` is at emit time (it may be replaced, e.g. by test capture)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always wins
        pass


def _rotate(fpath: str) -> Optional[str]:
    if not os.path.exists(fpath):
        return None
    stamp = time.strftime("%Y-%m-%d-%H-%M-%S", time.localtime(os.path.getmtime(fpath)))
    target, n = f"{fpath}-{stamp}", 1
    while os.path.exists(target):
        target, n = f"{fpath}-{stamp}.{n}", n + 1
    os.replace(fpath, target)
    return target


def setup_logger(output: Optional[str] = None, level: int = logging.INFO) -> Optional[str]:
    """Send log records to stdout, and to ``<output>/log.txt`` (``output`` itself if it ends with .txt/.log).

    Without ``output`` the records are also kept in memory until :func:`log_to_file` gives them a file, so that a
    run writes its log only once it really starts (a bad input then leaves the run folder untouched).
    Idempotent: handlers installed by an earlier call are closed and replaced. Returns the log file path.
    """
    close_logger()
    root = logging.getLogger()
    root.setLevel(level)
    handlers: list = [_StdoutHandler()]
    if not output:
        handlers.append(logging.handlers.MemoryHandler(capacity=10 ** 6, flushLevel=logging.CRITICAL + 1))
    for h in handlers:
        h.setFormatter(logging.Formatter("%(message)s"))
        setattr(h, _HANDLER_TAG, True)
        root.addHandler(h)
    return log_to_file(output) if output else None


def log_to_file(output: str) -> str:
    """Write the log to ``<output>/log.txt`` from now on, first the records kept since :func:`setup_logger`.

    An earlier ``log.txt`` (a resumed or repeated run) is renamed first (see the module docstring).
    """
    fpath = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
    os.makedirs(os.path.dirname(os.path.abspath(fpath)), exist_ok=True)
    rotated = _rotate(fpath)
    file_handler = logging.FileHandler(fpath, mode="w", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(message)s"))
    setattr(file_handler, _HANDLER_TAG, True)
    root = logging.getLogger()
    for kept in [h for h in root.handlers if isinstance(h, logging.handlers.MemoryHandler)]:
        for record in kept.buffer:
            file_handler.handle(record)
        root.removeHandler(kept)
        kept.buffer.clear()
    root.addHandler(file_handler)
    if rotated:
        logging.getLogger(__name__).info("Previous log moved to %s", rotated)
    return fpath


def close_logger() -> None:
    """Remove and close the handlers installed by :func:`setup_logger`."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if getattr(h, _HANDLER_TAG, False)]:
        root.removeHandler(h)
        h.close()


def write_config(cfg, output_dir: str, name: str = "config.yaml") -> str:
    """Write the resolved config (``cfg.dump()``) to ``<output_dir>/config.yaml``; returns the path."""
    path = os.path.join(output_dir, name)

    def dump(temp: str) -> None:
        with open(temp, "w") as f:
            f.write(cfg.dump())

    atomic_write(path, dump)
    return path


def collect_env_info() -> str:
    """A short, fast system summary (versions, threads, devices) for the log header."""
    lines = [f"Python: {sys.version.split()[0]} ({platform.platform()})", f"PyTorch: {torch.__version__}"]
    for mod in ("torchvision", "numpy", "PIL"):
        try:
            lines.append(f"{mod}: {__import__(mod).__version__}")
        except ImportError:
            lines.append(f"{mod}: not installed")
    lines.append(f"CPU threads used by torch: {torch.get_num_threads()}")
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"CUDA {torch.version.cuda}: {', '.join(names)}")
    else:
        lines.append("CUDA: not available")
    return "\n".join(lines)


class AverageMeter:
    """Running value and mean of a scalar (``val``, ``avg``)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.val, self.sum, self.count, self.avg = 0.0, 0.0, 0, 0.0

    def update(self, val: float, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = float(val)
        self.sum += self.val * n
        self.count += n
        self.avg = self.sum / self.count


class MetricMeter:
    """Named :class:`AverageMeter` s; ``str()`` gives ``"loss 1.7620 (1.8017) acc 50.0000 (40.0000)"``."""

    def __init__(self) -> None:
        self.meters: Dict[str, AverageMeter] = OrderedDict()

    def update(self, values: Dict[str, float]) -> None:
        if not isinstance(values, dict):
            raise TypeError(f"forward_backward must return a dict of floats, got {type(values).__name__}")
        for name, val in values.items():
            self.meters.setdefault(name, AverageMeter()).update(val)

    def __str__(self) -> str:
        return " ".join(f"{name} {m.val:.4f} ({m.avg:.4f})" for name, m in self.meters.items())
