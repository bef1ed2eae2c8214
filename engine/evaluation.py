"""Evaluators (``EVALUATOR_REGISTRY``) and the metrics they need, without scikit-learn.

The classification evaluator prints the official result block (``=> result``, ``* total``, ``* correct``,
``* accuracy``, ``* error``, ``* macro_f1``) with TWO decimals, which ``tools/parse_test_res.py`` reads.
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict, defaultdict
from typing import Any, Dict, List, Optional, Sequence

import torch

from .checkpoint import atomic_write
from .registry import EVALUATOR_REGISTRY

logger = logging.getLogger(__name__)


def build_evaluator(cfg, **kwargs):
    """Build ``cfg.TEST.EVALUATOR`` from ``EVALUATOR_REGISTRY``, called as ``cls(cfg, **kwargs)``."""
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)


def _counts(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[int]) -> torch.Tensor:
    """Confusion counts ``(len(labels), len(labels))``: rows = true label, columns = predicted label."""
    index = {lab: i for i, lab in enumerate(labels)}
    cm = torch.zeros(len(labels), len(labels), dtype=torch.float64)
    for t, p in zip(y_true, y_pred):
        if t in index and p in index:
            cm[index[t], index[p]] += 1
    return cm


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int], labels: Optional[Sequence[int]] = None) -> float:
    """Unweighted mean over ``labels`` of the per-class F1 ``2 TP / (2 TP + FP + FN)`` (0 when undefined).

    Args:
        y_true, y_pred: label ids, same length N.
        labels: classes to average over. Default: the classes present in ``y_true`` -- what the official
            evaluator passes to ``sklearn.metrics.f1_score(average="macro", labels=np.unique(y_true))``.
            Pass ``sorted(set(y_true) | set(y_pred))`` for scikit-learn's own default.
    Returns:
        macro F1 in [0, 1].
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} items but y_pred has {len(y_pred)}")
    labels = sorted(set(y_true)) if labels is None else list(labels)
    if not labels:
        return 0.0
    scores = []
    for c in labels:
        tp = sum(1 for t, p in zip(y_true, y_pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(y_true, y_pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(y_true, y_pred) if t == c and p != c)
        scores.append(0.0 if tp == 0 else 2.0 * tp / (2.0 * tp + fp + fn))
    return sum(scores) / len(scores)


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], normalize: bool = True) -> torch.Tensor:
    """Confusion matrix ``(K, K)`` float64 over the sorted labels of ``y_true`` and ``y_pred``.

    Rows are true classes; with ``normalize`` each row is divided by its sum (empty rows stay 0), as
    ``sklearn.metrics.confusion_matrix(normalize="true")``.
    """
    labels = sorted(set(y_true) | set(y_pred))
    cm = _counts(y_true, y_pred, labels)
    if normalize:
        rows = cm.sum(dim=1, keepdim=True)
        cm = torch.where(rows > 0, cm / rows.clamp(min=1), torch.zeros_like(cm))
    return cm


class EvaluatorBase:
    """Interface: ``reset()``, ``process(logits, labels)`` per batch, ``evaluate() -> OrderedDict``."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg

    def reset(self) -> None:
        raise NotImplementedError

    def process(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        raise NotImplementedError

    def evaluate(self) -> Dict[str, float]:
        raise NotImplementedError


@EVALUATOR_REGISTRY.register()
class Classification(EvaluatorBase):
    """Top-1 accuracy, error, macro-F1; optional per-class accuracy and confusion matrix (``cmat.pt``).

    Args:
        cfg: uses ``TEST.PER_CLASS_RESULT``, ``TEST.COMPUTE_CMAT`` and ``OUTPUT_DIR``.
        lab2cname: ``{label: class name}``, required for per-class results.
    """

    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs) -> None:
        super().__init__(cfg)
        if cfg.TEST.PER_CLASS_RESULT and lab2cname is None:
            raise ValueError("TEST.PER_CLASS_RESULT needs lab2cname (label -> class name)")
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
        """Accumulate one batch. ``logits``: (B, C) scores; ``labels``: (B,) int class ids."""
        if logits.dim() != 2 or logits.shape[0] != labels.shape[0]:
            raise ValueError(f"expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and "
                             f"{tuple(labels.shape)}")
        pred = logits.argmax(dim=1)
        self.y_pred.extend(pred.cpu().tolist())
        self.y_true.extend(labels.cpu().tolist())

    def _per_class(self) -> float:
        hits: Dict[int, List[int]] = defaultdict(list)
        for t, p in zip(self.y_true, self.y_pred):
            hits[t].append(int(t == p))
        logger.info("=> per-class result")
        accs = []
        for label in sorted(hits):
            res = hits[label]
            acc = 100.0 * sum(res) / len(res)
            accs.append(acc)
            logger.info("* class: %d (%s)\ttotal: %s\tcorrect: %s\tacc: %.2f%%", label, self._lab2cname[label],
                        f"{len(res):,}", f"{sum(res):,}", acc)
        mean_acc = sum(accs) / len(accs)
        logger.info("* average: %.2f%%", mean_acc)
        return mean_acc

    def evaluate(self) -> Dict[str, float]:
        """Log the result block and return ``OrderedDict(accuracy, error_rate, macro_f1[, perclass_accuracy])``
        in percent (accuracy first: it is what model selection uses)."""
        if self.total == 0:
            raise RuntimeError("Classification.evaluate(): no sample was processed (empty data loader?)")
        acc = 100.0 * self.correct / self.total
        err = 100.0 - acc
        f1 = 100.0 * macro_f1(self.y_true, self.y_pred)
        results: Dict[str, float] = OrderedDict(accuracy=acc, error_rate=err, macro_f1=f1)
        logger.info("=> result\n* total: %s\n* correct: %s\n* accuracy: %.2f%%\n* error: %.2f%%\n* macro_f1: %.2f%%",
                    f"{self.total:,}", f"{self.correct:,}", acc, err, f1)
        if self.cfg.TEST.PER_CLASS_RESULT:
            results["perclass_accuracy"] = self._per_class()
        if self.cfg.TEST.COMPUTE_CMAT:
            path = os.path.join(self.cfg.OUTPUT_DIR, "cmat.pt")
            os.makedirs(self.cfg.OUTPUT_DIR, exist_ok=True)
            torch.save(confusion_matrix(self.y_true, self.y_pred, normalize=True), path)
            logger.info("Confusion matrix is saved to %s", path)
        return results


def prediction_rows(impaths: Optional[Sequence[str]], labels: torch.Tensor,
                    logits: torch.Tensor) -> List[Dict[str, Any]]:
    """``[{"impath", "label", "pred", "logits"}]`` for one batch; ``labels`` (B,), ``logits`` (B, C)."""
    impaths = list(impaths) if impaths is not None else [None] * len(labels)
    logits = logits.float().cpu()
    return [{"impath": p, "label": int(y), "pred": int(row.argmax()), "logits": row.tolist()}
            for p, y, row in zip(impaths, labels.cpu().tolist(), logits)]


def write_results(output_dir: str, split: str, results: Dict[str, float], evaluator: Classification,
                  predictions: Optional[List[Dict[str, Any]]] = None) -> None:
    """Write ``<output_dir>/results.json`` (metrics in percent + split, num_images, correct, total) and, if
    given, ``predictions.json`` (rows of :func:`prediction_rows` in loader order). Atomic writes."""
    os.makedirs(output_dir, exist_ok=True)
    payload = dict(results, split=split, num_images=evaluator.total, correct=evaluator.correct,
                   total=evaluator.total)
    files: Dict[str, Any] = {"results.json": payload}
    if predictions is not None:
        files["predictions.json"] = predictions
    for fname, obj in files.items():
        def write(tmp: str, obj=obj) -> None:
            with open(tmp, "w") as f:
                json.dump(obj, f, indent=1)

        atomic_write(write, os.path.join(output_dir, fname))
