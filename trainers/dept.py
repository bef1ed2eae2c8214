"""DePT: a channel-adjusted linear head over the features of any prompt learner, trained with a higher LR.

DePT (decoupled prompt tuning) keeps the base method as it is and adds, over its raw (unnormalised) image and class
text features, a FiLM per tower (``x * scale + bias``, one scale and bias per channel) and a linear classifier
``linear_probe_proj`` over the base classes, trained on the FiLM-ed image features and on the FiLM-ed class text
features of the labels, both labelled by class. Loss = (1 - w) x the base method's cross-entropy + w x the head's
(w = ``TRAINER.LINEAR_PROBE.WEIGHT``, 0.7), plus the base method's own terms (KgCoOp's). Test on the classes the
head knows (the base classes; ImageNet and its variants after ImageNet training): (1 - w) x similarity + w x head
logits; on other classes (the new ones, other datasets): the similarity logits alone. The head learns at
``OPTIM.LR_EXP`` x the LR (two SGD parameter groups, ``PromptTrainer.param_groups``).

:class:`DePT` is a mixin over an existing trainer; :func:`with_dept` registers ``ExtrasLinearProbe<Base>`` under the
official names (over CoOp, CoCoOp, KgCoOp and MaPLe, as the official repository).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from yacs.config import CfgNode as CN

from clip.model import CLIP
from engine import TRAINER_REGISTRY

from .base import PromptedCLIP, PromptedOutput, PromptLearnerBase
from .cocoop import CoCoOp
from .coop import CoOp
from .kgcoop import KgCoOp
from .maple import MaPLe
from .prompts import round_to_fp16


class FiLM(nn.Module):
    """Channel-wise affine map ``x * scale + bias`` of features ``(..., D)``; starts as the identity."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale.to(x.dtype) * x + self.bias.to(x.dtype)


def add_dept_config(cfg) -> None:
    """DePT's keys and values (its train.py sets them for every run of its repository)."""
    cfg.OPTIM.STAGED_LR = True  # (DePT) two parameter groups: NEW_LAYERS at LR x LR_EXP, the rest at the LR
    cfg.OPTIM.LR_EXP = 6.5
    cfg.OPTIM.NEW_LAYERS = ["linear_probe", "film"]  # children of the model whose name holds one of these
    cfg.OPTIM.BASE_LR_MULT = 1.0  # the rest learns at LR x BASE_LR_MULT
    cfg.TRAINER.NAMES_TO_UPDATE = ["prompt_learner", "linear_probe", "film"]  # learnable tensors whose name holds one
    cfg.TRAINER.LINEAR_PROBE = CN()
    cfg.TRAINER.LINEAR_PROBE.TYPE = "linear"  # linear: a classifier; similarity: cosine of the FiLM-ed features
    cfg.TRAINER.LINEAR_PROBE.WEIGHT = 0.7  # share of the head in the loss and in the fused test logits
    cfg.TRAINER.LINEAR_PROBE.TEST_TIME_FUSION = True  # False: the head's logits alone on its classes
    cfg.TRAINER.FILM = CN()
    cfg.TRAINER.FILM.LINEAR_PROBE = True  # a FiLM per tower before the head


class DePT:
    """DePT's head over the trainer it is mixed into (``class T(DePT, CoOp)``; see :func:`with_dept`)."""

    REGISTER_WHOLE_MODEL = True  # official files hold prompt_learner.*, film_lp_*.*, linear_probe_proj.*
    REGISTERED_NAME = "PromptLearner"
    LOG_ACCURACY = False  # the official DePT lines show the loss only (also over CoOp)

    @classmethod
    def add_config(cls, cfg) -> None:
        add_dept_config(cfg)  # the base method's node comes from its own (registered) trainer

    @property
    def head_cfg(self):
        return self.cfg.TRAINER.LINEAR_PROBE

    def head_knows_classes(self) -> bool:
        """The official rule for whether these classes have the head: the base classes, or all classes of an
        ImageNet dataset (the cross-dataset source and its variants); otherwise the similarity logits alone."""
        sub = self.cfg.DATASET.SUBSAMPLE_CLASSES
        return sub == "base" or (sub == "all" and "ImageNet" in self.cfg.DATASET.NAME)

    def build_wrapper(self, clip_model: CLIP, learner: PromptLearnerBase) -> PromptedCLIP:
        if self.head_cfg.TYPE not in ("linear", "similarity"):
            raise ValueError(f"TRAINER.LINEAR_PROBE.TYPE is {self.head_cfg.TYPE!r}; choose linear or similarity")
        model = super().build_wrapper(clip_model, learner)
        model.keep_raw = True  # the head reads the features before normalisation
        dim = clip_model.embed_dim
        if self.cfg.TRAINER.FILM.LINEAR_PROBE:
            model.film_lp_img, model.film_lp_text = FiLM(dim), FiLM(dim)
        if self.head_knows_classes() and self.head_cfg.TYPE == "linear":
            head = nn.Linear(dim, self.dm.num_classes)  # drawn after the learner, as officially
            model.linear_probe_proj = round_to_fp16(head) if self.draw_dtype == torch.float16 else head
        names = self.cfg.TRAINER.NAMES_TO_UPDATE
        for name, param in model.named_parameters():
            if param.requires_grad and not any(part in name for part in names):
                param.requires_grad_(False)
        return model

    def head_logits(self, output: PromptedOutput, labels: Optional[torch.Tensor] = None
                    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The head's logits ``(B, C)`` for the images; given ``labels`` (training), the class text features of
        the labels join as samples: ``(2B, C)`` and the labels ``(2B,)`` (text first)."""
        model, img, txt = self.model, output.image_features_raw, output.text_features_raw  # (B, E), (C|B,C, E)
        if hasattr(model, "film_lp_img"):
            img, txt = model.film_lp_img(img), model.film_lp_text(txt)
        if self.head_cfg.TYPE == "similarity":
            img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
            product = img @ txt.t() if txt.dim() == 2 else torch.einsum("be,bce->bc", img, txt)
            return output.logit_scale * product, labels
        if labels is None:
            return model.linear_probe_proj(img), None
        picked = txt[labels] if txt.dim() == 2 else txt[torch.arange(len(labels)), labels]  # (B, E)
        return model.linear_probe_proj(torch.cat([picked, img])), torch.cat([labels, labels])

    def classification_loss(self, output: PromptedOutput, labels: torch.Tensor) -> torch.Tensor:
        w = self.head_cfg.WEIGHT
        logits, targets = self.head_logits(output, labels)
        return (1 - w) * super().classification_loss(output, labels) + w * F.cross_entropy(logits, targets)

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with self.precision.autocast():
            out = self.model.outputs(image)
            if not self.head_knows_classes():
                return out.logits.float()
            head, _ = self.head_logits(out)
            w = self.head_cfg.WEIGHT
            return (head if not self.head_cfg.TEST_TIME_FUSION else (1 - w) * out.logits + w * head).float()

    def before_train(self) -> None:
        if not self.head_knows_classes():
            raise ValueError(f"DePT trains its head on the base classes (DATASET.SUBSAMPLE_CLASSES base) or on all "
                             f"classes of ImageNet; {self.cfg.DATASET.NAME} with SUBSAMPLE_CLASSES "
                             f"{self.cfg.DATASET.SUBSAMPLE_CLASSES} has no head to train (the official code fails "
                             f"here too)")
        super().before_train()

    def param_groups(self, registered: nn.Module) -> List[Dict[str, Any]]:
        o = self.cfg.OPTIM
        if not o.STAGED_LR:
            return super().param_groups(registered)
        new_layers = [o.NEW_LAYERS] if isinstance(o.NEW_LAYERS, str) else list(o.NEW_LAYERS)
        groups: Dict[bool, List[nn.Parameter]] = {False: [], True: []}
        for name, child in registered.named_children():
            groups[any(layer in name for layer in new_layers)] += [p for p in child.parameters() if p.requires_grad]
        lr = o.LR * o.LR_EXP  # the official arithmetic, so that the rates are the same floats
        return [{"params": groups[False], "lr": lr * (o.BASE_LR_MULT / o.LR_EXP)}, {"params": groups[True], "lr": lr}]

    @property
    def checkpoint_ignore_prefixes(self) -> Tuple[str, ...]:
        # a model over classes the head does not know has no head: a trained file's head is skipped
        return super().checkpoint_ignore_prefixes + (() if self.head_knows_classes() else ("linear_probe_proj.",))

    def import_state_dict(self, name: str, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        state = super().import_state_dict(name, state)
        weight, n = state.get("linear_probe_proj.weight"), self.dm.num_classes
        rows = getattr(self.dm.dataset, "imagenet_labels", None)
        if weight is not None and weight.shape[0] > n and rows is not None and self.head_knows_classes():
            # ImageNet-A/-R: the rows of their 200 classes in the 1,000-class head trained on ImageNet
            state = {**state, "linear_probe_proj.weight": weight[rows], "linear_probe_proj.bias":
                     state["linear_probe_proj.bias"][rows]}
        return state


def with_dept(base: type, registered_name: str = "PromptLearner") -> type:
    """Register ``ExtrasLinearProbe<Base>`` (the official trainer name): DePT's head over the trainer ``base``,
    saved under the official model folder ``registered_name``."""
    name = f"ExtrasLinearProbe{base.__name__}"
    doc = f"{base.__name__} with DePT: Decoupled Prompt Tuning (Zhang et al., CVPR 2024, arXiv 2309.07439)."
    cls = type(name, (DePT, base), {"__doc__": doc, "__module__": __name__, "REGISTERED_NAME": registered_name})
    return TRAINER_REGISTRY.register()(cls)


ExtrasLinearProbeCoOp = with_dept(CoOp)
ExtrasLinearProbeCoCoOp = with_dept(CoCoOp)
ExtrasLinearProbeKgCoOp = with_dept(KgCoOp)
ExtrasLinearProbeMaPLe = with_dept(MaPLe, "MultiModalPromptLearner")
