"""A tiny trainer on in-memory data, for the engine tests (no CLIP, no dataset files, a few ms per epoch)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from yacs.config import CfgNode as CN

from engine.config import get_cfg_default
from engine.optim import build_lr_scheduler, build_optimizer
from engine.trainer import TrainerBase

NUM_CLASSES, DIM = 3, 6


class DictDataset(Dataset):
    """Items ``{"img": (DIM,), "label": int, "impath": str, "index": int}`` from fixed random features."""

    def __init__(self, n: int, seed: int, prefix: str) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % NUM_CLASSES
        centers = torch.randn(NUM_CLASSES, DIM, generator=g)
        self.x = centers[self.labels] + 0.5 * torch.randn(n, DIM, generator=g)
        self.prefix = prefix

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Dict[str, Any]:
        return {"img": self.x[i], "label": int(self.labels[i]), "impath": f"{self.prefix}/{i:03d}.jpg", "index": i}


class ToyNet(nn.Module):
    """A frozen encoder (param + buffer, like a frozen CLIP) and a learnable ``head`` and ``ctx``."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(DIM, DIM)
        self.encoder.requires_grad_(False)
        self.register_buffer("token_prefix", torch.ones(2, DIM))
        self.ctx = nn.Parameter(torch.zeros(DIM))
        self.head = nn.Linear(DIM, NUM_CLASSES)
        self.seen_training_flags: List[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_training_flags.append(self.training)
        return self.head(torch.tanh(self.encoder(x)) + self.ctx)  # (B, C)


class ToyTrainer(TrainerBase):
    """Softmax regression with the engine's optimizer / schedule / precision; registers ``toy``.

    ``nan_at = (epoch, batch)`` (0-based) makes that batch's loss NaN.
    """

    nan_at: Optional[Tuple[int, int]] = None

    @classmethod
    def add_config(cls, cfg) -> None:
        cfg.TRAINER.TOYENGINE = CN()
        cfg.TRAINER.TOYENGINE.PREC = "fp32"

    def build_data_loader(self) -> None:
        bs = self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE
        self.train_loader_x = DataLoader(DictDataset(24, 0, "train"), batch_size=bs, shuffle=True)
        self.val_loader = DataLoader(DictDataset(9, 1, "val"), batch_size=4)
        self.test_loader = DataLoader(DictDataset(10, 2, "test"), batch_size=4)
        self.num_classes = NUM_CLASSES
        self.lab2cname = {i: f"class{i}" for i in range(NUM_CLASSES)}
        self.classnames = list(self.lab2cname.values())

    def build_model(self) -> None:
        torch.manual_seed(0)
        self.model = ToyNet().to(self.device)
        prec = self.cfg.TRAINER.TOYENGINE.PREC if "TOYENGINE" in self.cfg.TRAINER else "fp32"
        self.precision = self.build_precision(prec)
        optim = build_optimizer(self.model, self.cfg.OPTIM)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model("toy", self.model, optim, sched)

    def forward_backward(self, batch: Dict[str, Any]) -> Dict[str, float]:
        x, y = self.parse_batch_train(batch)
        with self.precision.autocast():
            loss = F.cross_entropy(self.model(x).float(), y)
        if self.nan_at == (self.epoch, self.batch_idx):
            loss = loss * float("nan")
        self.model_backward_and_update(loss)
        return {"loss": loss.item()}


def toy_cfg(output_dir, **opts: Any):
    """Defaults + the toy trainer node; SGD cosine with 1 constant warm-up epoch, 2 epochs, 6 batches each."""
    cfg = get_cfg_default()
    ToyTrainer.add_config(cfg)
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.USE_CUDA = False
    cfg.OPTIM.NAME = "sgd"
    cfg.OPTIM.LR = 0.1
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.MAX_EPOCH = 2
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.OPTIM.WARMUP_CONS_LR = 1e-2
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.TRAIN.PRINT_FREQ = 5
    flat: List[Any] = []
    for k, v in opts.items():
        flat += [k.replace("__", "."), v]
    cfg.merge_from_list(flat)
    return cfg
