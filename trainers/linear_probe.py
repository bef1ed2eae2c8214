"""Linear-probe CLIP: logistic regression on the frozen image features, with CoOp's search over its strength."""
from __future__ import annotations

import logging
from typing import Callable, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from engine import TRAINER_REGISTRY

from .frozen import FrozenCLIPTrainer

logger = logging.getLogger(__name__)


def fit_logistic(features: np.ndarray, labels: np.ndarray, c: float, max_iter: int):
    """scikit-learn's L2 logistic regression (lbfgs) with inverse strength ``c`` on ``features`` ``(N, E)``."""
    from sklearn.linear_model import LogisticRegression  # lazy: only this trainer needs scikit-learn

    # the penalty is L2, scikit-learn's default (naming it is deprecated since 1.8)
    return LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(features, labels)


def search_strength(score: Callable[[float], float], grid: Sequence[float], steps: int) -> Tuple[float, List[float]]:
    """CoOp's search of the inverse regularisation strength C: ``score(C)`` is the validation accuracy.

    The grid's best C (the first of equals) opens the interval [C/10, 10 C]; each step scores both ends, keeps the
    better (the left one on a tie) and halves the interval towards it in log space. Returns the C kept by the
    last step and the C kept by every step (the official arithmetic, so the values are the official ones).
    """
    scores = [score(c) for c in grid]
    peak = grid[int(np.argmax(scores))]
    low, high = 1e-1 * peak, 1e1 * peak
    kept: List[float] = []
    for _ in range(steps):
        mid = 0.5 * (np.log10(high) + np.log10(low))
        if score(low) < score(high):
            kept.append(high)
            low, high = mid, np.log10(high)
        else:
            kept.append(low)
            low, high = np.log10(low), mid
        low, high = np.power(10, low), np.power(10, high)
    return kept[-1], kept


class LinearHead(nn.Module):
    """Logits ``(B, C)`` = features ``(B, E)`` @ weight.T + bias, in float64 as scikit-learn's decision."""

    def __init__(self, dim: int, num_classes: int, normalize: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_classes, dim, dtype=torch.float64))
        self.bias = nn.Parameter(torch.zeros(num_classes, dtype=torch.float64))
        self.normalize = normalize

    def prepare(self, feats: torch.Tensor) -> torch.Tensor:
        return F.normalize(feats.double(), dim=-1) if self.normalize else feats.double()

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.prepare(feats) @ self.weight.t() + self.bias  # (B, C)

    @torch.no_grad()
    def set_from(self, clf) -> None:
        """Copy a fitted classifier; a two-class one has one row (its decision d picks class 1 when d > 0)."""
        coef, intercept = torch.from_numpy(clf.coef_), torch.from_numpy(clf.intercept_)
        if coef.shape[0] == 1:
            coef, intercept = torch.cat([torch.zeros_like(coef), coef]), torch.cat([torch.zeros(1), intercept])
        classes = torch.from_numpy(clf.classes_).long()
        self.weight.zero_()
        self.bias.fill_(-float("inf"))  # a class absent from the training set is never predicted
        self.weight[classes], self.bias[classes] = coef.double(), intercept.double()


@TRAINER_REGISTRY.register()
class LinearProbeCLIP(FrozenCLIPTrainer):
    """Linear-probe CLIP (Radford et al., ICML 2021), CoOp's few-shot protocol (Zhou et al., IJCV 2022, lpclip)."""

    REGISTERED_NAME = "linear_probe"

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.LPCLIP = CN()
        cfg.TRAINER.LPCLIP.C_GRID = [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]  # the first search's values of C
        cfg.TRAINER.LPCLIP.NUM_STEP = 8  # halvings of the interval around the grid's best C
        cfg.TRAINER.LPCLIP.MAX_ITER = 1000  # lbfgs iterations per fit
        # (ours) L2-normalise the features first; False = the official probe (raw image-tower output)
        cfg.TRAINER.LPCLIP.NORMALIZE = False

    def build_head(self) -> None:
        c = self.cfg.TRAINER.LPCLIP
        self.model = LinearHead(self.clip.embed_dim, self.num_classes, c.NORMALIZE).to(self.device)
        self.register_model(self.REGISTERED_NAME, self.model)

    def run_epoch(self) -> None:
        """The whole fit: search C on the validation split (the training split without one), fit, keep it."""
        c = self.cfg.TRAINER.LPCLIP
        x, y = (t.numpy() for t in self.split_features("train_x"))
        x = self.model.prepare(torch.from_numpy(x)).numpy()
        if self.dm.dataset.val:
            vx, vy = (t.numpy() for t in self.split_features("val"))
            vx = self.model.prepare(torch.from_numpy(vx)).numpy()
        else:
            logger.warning("No validation split: C is chosen on the training images")
            vx, vy = x, y

        def score(strength: float) -> float:
            return float((fit_logistic(x, y, strength, c.MAX_ITER).predict(vx) == vy).mean())

        best, kept = search_strength(score, list(c.C_GRID), c.NUM_STEP)
        logger.info("C kept by each search step: %s; fitting with C = %g", ", ".join(f"{v:g}" for v in kept), best)
        self.model.set_from(fit_logistic(x, y, best, c.MAX_ITER))
        self.loss_meter = None

    def model_inference(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model(feats)
