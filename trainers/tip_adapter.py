"""Tip-Adapter and Tip-Adapter-F: a key-value cache of the few-shot training features added to zero-shot CLIP."""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from engine import TRAINER_REGISTRY
from engine.hooks import HookBase, LRStepHook

from .base import template_text_features
from .frozen import FrozenCLIPTrainer
from .templates import template_for

logger = logging.getLogger(__name__)

# The official per-dataset configs (configs/<dataset>.yaml): (search scale of beta, of alpha), initial alpha.
OFFICIAL_SEARCH = {
    "Caltech101": ((12, 5), 3.0), "DescribableTextures": ((13, 13), 2.0), "EuroSAT": ((12, 10), 2.0),
    "FGVCAircraft": ((30, 30), 5.0), "Food101": ((10, 10), 1.17), "ImageNet": ((7, 3), 1.17),
    "OxfordFlowers": ((50, 50), 10.0), "OxfordPets": ((7, 3), 1.17), "StanfordCars": ((20, 10), 3.0),
    "SUN397": ((12, 10), 1.17), "UCF101": ((7, 3), 3.0),
}


class TipCache(nn.Module):
    """Logits ``(B, C)`` = 100 f W + alpha exp(-beta (1 - f K^T)) V for normalised image features f ``(B, E)``.

    ``keys`` ``(N, E)``: the cache keys (learned by Tip-Adapter-F); ``values`` ``(N, C)`` one-hot labels;
    ``text`` ``(E, C)`` zero-shot class weights; ``alpha``/``beta`` are kept in checkpoints, never optimised.
    """

    def __init__(self, text: torch.Tensor, num_keys: int) -> None:
        super().__init__()
        dim, classes = text.shape
        self.register_buffer("text", text, persistent=False)
        self.keys = nn.Parameter(torch.zeros(num_keys, dim))
        self.register_buffer("values", torch.zeros(num_keys, classes), persistent=False)
        self.alpha = nn.Parameter(torch.ones(()))
        self.beta = nn.Parameter(torch.ones(()))

    def forward(self, feats: torch.Tensor, alpha=None, beta=None) -> torch.Tensor:
        alpha = self.alpha.detach() if alpha is None else alpha
        beta = self.beta.detach() if beta is None else beta
        affinity = feats @ self.keys.t()  # (B, N)
        cache_logits = (-1 * (beta - beta * affinity)).exp() @ self.values  # (B, C)
        return 100.0 * feats @ self.text + cache_logits * alpha


def search_alpha_beta(logits_for, labels: torch.Tensor, scale: Tuple[float, float],
                      steps: Tuple[int, int]) -> Tuple[float, float]:
    """The official grid: beta_i = i (scale_b - 0.1) / steps_b + 0.1, alpha_j likewise (i, j from 0), beta outer,
    alpha inner; the first setting that beats every earlier one on ``labels`` wins (none: (0, 0)).
    ``logits_for(alpha, beta)`` gives the validation logits ``(N, C)``."""
    betas = [i * (scale[0] - 0.1) / steps[0] + 0.1 for i in range(steps[0])]
    alphas = [j * (scale[1] - 0.1) / steps[1] + 0.1 for j in range(steps[1])]
    best, best_correct = (0.0, 0.0), 0
    for beta in betas:
        for alpha in alphas:
            correct = int((logits_for(alpha, beta).argmax(dim=1) == labels).sum())
            if correct > best_correct:
                best, best_correct = (beta, alpha), correct
    logger.info("Search on val: beta %.4f, alpha %.4f (accuracy %.2f%%)", *best, 100.0 * best_correct / len(labels))
    return best


class BatchLRHook(HookBase):
    """Steps the LR schedulers after every batch (Tip-Adapter-F's cosine runs over all steps)."""

    def after_step(self) -> None:
        self.trainer.update_lr()


@TRAINER_REGISTRY.register()
class TipAdapter(FrozenCLIPTrainer):
    """Tip-Adapter: Training-free Adaption of CLIP for Few-shot Classification (Zhang et al., ECCV 2022)."""

    REGISTERED_NAME = "tip_adapter"
    AUGMENTED_TRAIN = True
    DROP_LAST = False  # the official loaders keep the last incomplete batch

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.TIP_ADAPTER = CN()
        cfg.TRAINER.TIP_ADAPTER.AUGMENT_EPOCH = 10  # augmented views of each training image averaged into its key
        cfg.TRAINER.TIP_ADAPTER.INIT_BETA = 1.0
        cfg.TRAINER.TIP_ADAPTER.INIT_ALPHA = -1.0  # < 0: the official value for DATASET.NAME
        cfg.TRAINER.TIP_ADAPTER.SEARCH_SCALE = ()  # (beta, alpha) search ranges; (): the official ones per dataset
        cfg.TRAINER.TIP_ADAPTER.SEARCH_STEP = (200, 20)
        cfg.TRAINER.TIP_ADAPTER.SEARCH = True  # search alpha, beta on the validation split

    @classmethod
    def resolve_config(cls, cfg) -> None:
        c = cfg.TRAINER.TIP_ADAPTER
        scale, alpha = OFFICIAL_SEARCH.get(cfg.DATASET.NAME, ((7, 3), 1.17))  # elsewhere: ImageNet's values
        if not c.SEARCH_SCALE:
            c.SEARCH_SCALE = scale
        if c.INIT_ALPHA < 0:
            c.INIT_ALPHA = alpha

    def build_head(self) -> None:
        names = list(self.dm.dataset.classnames)
        text = template_text_features(self.clip, names, [template_for(self.cfg.DATASET.NAME)]).t()  # (E, C)
        labels = torch.tensor([item.label for item in self.dm.dataset.train_x])
        self.model = TipCache(text, len(labels)).to(self.device)
        self.model.values.copy_(F.one_hot(labels, self.num_classes))  # (N, C) in training-set order
        self.register_model(self.REGISTERED_NAME, self.model, *self.build_optim())

    def build_optim(self) -> Tuple[Any, Any]:
        return None, None

    def build_cache(self) -> None:
        """Keys = the mean over ``AUGMENT_EPOCH`` augmented views of each training image's raw features, then
        normalised; alpha, beta = their initial values."""
        c = self.cfg.TRAINER.TIP_ADAPTER
        views = [self.split_features("train_x", aug_epoch=-1 - v)[0] for v in range(c.AUGMENT_EPOCH)]
        with torch.no_grad():
            self.model.keys.copy_(F.normalize(torch.stack(views).mean(dim=0), dim=-1))
            self.model.alpha.fill_(c.INIT_ALPHA)
            self.model.beta.fill_(c.INIT_BETA)

    @torch.no_grad()
    def search(self) -> None:
        c = self.cfg.TRAINER.TIP_ADAPTER
        if not c.SEARCH or self.val_loader is None:
            return
        feats, labels = self.split_features("val")
        feats = F.normalize(feats, dim=-1).to(self.device)
        beta, alpha = search_alpha_beta(lambda a, b: self.model(feats, a, b), labels.to(self.device),
                                        tuple(c.SEARCH_SCALE), tuple(c.SEARCH_STEP))
        self.model.alpha.fill_(alpha)
        self.model.beta.fill_(beta)

    def before_train(self) -> None:
        super().before_train()
        if self.start_epoch == 0:
            self.build_cache()

    def run_epoch(self) -> None:
        """Training-free: the cache and the search are the whole fit."""
        self.search()

    def model_inference(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model(F.normalize(feats, dim=-1))


@TRAINER_REGISTRY.register()
class TipAdapterF(TipAdapter):
    """Tip-Adapter-F: the cache keys fine-tuned with AdamW, then alpha and beta searched (Zhang et al., ECCV 2022)."""

    def build_optim(self) -> Tuple[Any, Any]:
        steps = self.max_epoch * len(self.train_loader_x)
        optim = torch.optim.AdamW([self.model.keys], lr=self.cfg.OPTIM.LR, eps=1e-4,
                                  weight_decay=self.cfg.OPTIM.WEIGHT_DECAY)
        return optim, torch.optim.lr_scheduler.CosineAnnealingLR(optim, steps)

    def build_hooks(self) -> List[HookBase]:
        return [BatchLRHook() if isinstance(h, LRStepHook) else h for h in super().build_hooks()]

    def run_epoch(self) -> None:
        FrozenCLIPTrainer.run_epoch(self)
        if self.epoch == self.max_epoch - 1:
            self.search()

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        feats, labels = self.parse_batch_train(batch)
        c = self.cfg.TRAINER.TIP_ADAPTER
        logits = self.model(F.normalize(feats, dim=-1), c.INIT_ALPHA, c.INIT_BETA)
        loss = F.cross_entropy(logits, labels)
        self.model_backward_and_update(loss)
        return {"loss": loss.item(), "acc": (logits.argmax(1) == labels).float().mean().item() * 100.0}
