"""Classification metrics and the result files of an evaluation.

The logged result block (``=> result``, ``* total``, ``* correct``, ``* accuracy``, ``* error``, ``* macro_f1``,
two decimals) is the official log format, which tools/parse_test_res.py and the official parsers read.
``results.json`` holds the same numbers at full precision.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import torch

from fileio import write_json

logger = logging.getLogger(__name__)


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], labels: Optional[Sequence[int]] = None) -> float:
    """Unweighted mean over ``labels`` of each class's F1 ``2 TP / (2 TP + FP + FN)`` (0 where TP is 0).

    Args:
        y_true, y_pred: class ids, same length N.
        labels: the classes to average over; default: those present in ``y_true``, which is what the official
            evaluator asks scikit-learn for (``labels=np.unique(y_true)``). scikit-learn's own default would be
            ``sorted(set(y_true) | set(y_pred))``.
    Returns:
        macro F1 in [0, 1]. Counting is vectorised (bincount), so ImageNet-size evaluations take milliseconds.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    true, pred = torch.as_tensor(y_true, dtype=torch.long), torch.as_tensor(y_pred, dtype=torch.long)
    classes = torch.unique(true) if labels is None else torch.as_tensor(labels, dtype=torch.long)
    if classes.numel() == 0:
        return 0.0
    size = int(torch.cat([true, pred, classes]).max()) + 1
    hits = torch.bincount(true[true == pred], minlength=size).double()  # TP per class
    # TP + FN = occurrences in y_true, TP + FP = occurrences in y_pred
    both = torch.bincount(true, minlength=size).double() + torch.bincount(pred, minlength=size).double()
    f1 = torch.where(hits > 0, 2 * hits / both.clamp(min=1), torch.zeros_like(hits))
    return float(f1[classes].mean())


class Classification:
    """Top-1 accuracy, error and macro-F1 of the batches given to :meth:`process`; optionally per class.

    Args:
        cfg: reads ``TEST.PER_CLASS_RESULT``.
        lab2cname: ``{label: class name}``, needed for per-class results.
    """

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None) -> None:
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname (label -> class name)")
        self.per_class = bool(cfg.TEST.PER_CLASS_RESULT)
        self._lab2cname = lab2cname
        self.reset()

    def reset(self) -> None:
        self.y_true: List[int] = []
        self.y_pred: List[int] = []

    @property
    def total(self) -> int:
        return len(self.y_true)

    @property
    def correct(self) -> int:
        return sum(1 for t, p in zip(self.y_true, self.y_pred) if t == p)

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one batch: ``logits`` (B, C) scores, ``labels`` (B,) class ids."""
        if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and "
                             f"{tuple(labels.shape)}")
        self.y_pred.extend(logits.argmax(dim=1).cpu().tolist())
        self.y_true.extend(labels.cpu().tolist())

    def _per_class_accuracy(self) -> float:
        true, pred = torch.tensor(self.y_true), torch.tensor(self.y_pred)
        logger.info("=> per-class result")
        accuracies = []
        for label in torch.unique(true).tolist():
            mask = true == label
            total, correct = int(mask.sum()), int((pred[mask] == label).sum())
            accuracies.append(100.0 * correct / total)
            logger.info("* class: %d (%s)\ttotal: %s\tcorrect: %s\tacc: %.2f%%", label, self._lab2cname[label],
                        f"{total:,}", f"{correct:,}", accuracies[-1])
        mean = sum(accuracies) / len(accuracies)
        logger.info("* average: %.2f%%", mean)
        return mean

    def evaluate(self) -> Dict[str, float]:
        """Log the result block; return ``OrderedDict(accuracy, error_rate, macro_f1[, perclass_accuracy])`` in
        percent (accuracy first: model selection reads the first value)."""
        if self.total == 0:
            raise RuntimeError("Classification.evaluate(): no sample was processed (empty data loader?)")
        acc = 100.0 * self.correct / self.total
        results: Dict[str, float] = OrderedDict(accuracy=acc, error_rate=100.0 - acc,
                                                macro_f1=100.0 * macro_f1(self.y_true, self.y_pred))
        logger.info("=> result\n* total: %s\n* correct: %s\n* accuracy: %.2f%%\n* error: %.2f%%\n* macro_f1: %.2f%%",
                    f"{self.total:,}", f"{self.correct:,}", acc, results["error_rate"], results["macro_f1"])
        if self.per_class:
            results["perclass_accuracy"] = self._per_class_accuracy()
        return results


def prediction_rows(impaths: Optional[Sequence[str]], labels: torch.Tensor,
                    logits: torch.Tensor) -> List[Dict[str, Any]]:
    """``[{"impath", "label", "pred", "logits"}]`` for one batch; ``labels`` (B,), ``logits`` (B, C)."""
    impaths = list(impaths) if impaths is not None else [None] * len(labels)
    logits = logits.float().cpu()
    return [{"impath": p, "label": int(y), "pred": int(row.argmax()), "logits": row.tolist()}
            for p, y, row in zip(impaths, labels.cpu().tolist(), logits)]


def write_results(output_dir: str, split: str, results: Dict[str, float], evaluator: Classification,
                  predictions: Optional[List[Dict[str, Any]]] = None, world_size: int = 1) -> None:
    """``<output_dir>/results.json`` (the metrics in percent, the split, num_images, correct, total, and the
    number of processes that ran it) and, when given, ``predictions.json`` (rows of :func:`prediction_rows` in
    loader order)."""
    payload = dict(results, split=split, num_images=evaluator.total, correct=evaluator.correct,
                   total=evaluator.total, world_size=world_size)
    write_json(os.path.join(output_dir, "results.json"), payload, indent=1)
    if predictions is not None:
        write_json(os.path.join(output_dir, "predictions.json"), predictions, indent=1)
