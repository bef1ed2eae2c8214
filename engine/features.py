"""Frozen image features, computed once and kept on disk, for trainers that learn nothing inside the towers.

A linear probe or an adapter over a frozen image tower needs each image's features once (once per augmentation
epoch when it trains on augmented views). :class:`FeatureTrainer` declares that need: its loaders yield feature
batches instead of images, and the features come from a :class:`FeatureCache`, a folder of safetensors files
named by the SHA256 of everything that determines them (the encoder's identity, the split's images and labels,
the transform, the augmentation epoch and its seed). Any change of these gives another name, so stale features
are never read. Each file also records the SHA256 of its tensors: a partial or damaged file is detected, logged,
deleted and recomputed, never trusted. Files are written through ``fileio.atomic_write``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from fileio import atomic_write

from . import distributed
from .trainer import TrainerBase

logger = logging.getLogger(__name__)

Tensors = Dict[str, torch.Tensor]


def tensors_digest(tensors: Tensors) -> str:
    """SHA256 of named tensors: names, dtypes, shapes and raw bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


class FeatureCache:
    """A folder of ``<key>.safetensors`` files; ``key`` = SHA256 of the JSON of what determines the tensors.

    Args:
        directory: where the files live (created on the first write).
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory

    @staticmethod
    def key(parts: Dict[str, Any]) -> str:
        """The file key of ``parts`` (JSON-serialisable; order of the dict does not matter)."""
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def path(self, key: str) -> str:
        return os.path.join(self.directory, f"{key}.safetensors")

    def load(self, key: str) -> Optional[Tensors]:
        """The tensors stored under ``key``, or None when there are none or the file fails its checks (then the
        file is removed so that it is recomputed)."""
        path = self.path(key)
        if not os.path.isfile(path):
            return None
        try:
            with safe_open(path, framework="pt") as handle:  # one read: the tensors and their metadata
                meta = handle.metadata() or {}
                tensors = {name: handle.get_tensor(name) for name in handle.keys()}
            problem = None
            if meta.get("key") != key:
                problem = f"it was written for key {meta.get('key')!r}"
            elif meta.get("sha256") != tensors_digest(tensors):
                problem = "its tensors do not match the checksum written with them"
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            problem = f"it cannot be read ({err})"
        if problem:
            logger.warning("Feature cache %s is damaged (%s): removing it and computing the features again",
                           path, problem)
            os.remove(path)
            return None
        return tensors

    def save(self, key: str, tensors: Tensors, about: Dict[str, Any]) -> None:
        """Store ``tensors`` under ``key`` atomically; ``about`` (what they are) is kept in the file's metadata."""
        tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
        meta = {"key": key, "sha256": tensors_digest(tensors), "about": json.dumps(about, default=str)}
        atomic_write(self.path(key), lambda temp: save_file(tensors, temp, metadata=meta))

    def get(self, parts: Dict[str, Any], compute: Callable[[], Tensors]) -> Tensors:
        """The cached tensors for ``parts``, computed with ``compute()`` and stored if absent or damaged."""
        key = self.key(parts)
        tensors = self.load(key)
        if tensors is None:
            tensors = compute()
            self.save(key, tensors, parts)
            logger.info("Features computed and cached in %s", self.path(key))
        return tensors


def split_identity(items: Sequence[Any]) -> str:
    """SHA256 of a split's ``(impath, label)`` list, in order (a different few-shot draw = another file)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.impath}\t{item.label}\n".encode())
    return digest.hexdigest()


class FeatureBatches:
    """Batches ``{"feat" (B, E), "label" (B,), "impath", "index"}`` over a split's features, built on first use.

    ``shuffle``: a new order each pass from the global generator, the last incomplete batch dropped (as the image
    loaders do); else in order. ``features(epoch)`` returns ``(feats (N, E), labels (N,))`` for a pass.
    """

    def __init__(self, features: Callable[[int], Tuple[torch.Tensor, torch.Tensor]], items: Sequence[Any],
                 batch_size: int, shuffle: bool, drop_last: bool = True) -> None:
        self.features, self.items, self.batch_size, self.shuffle = features, list(items), batch_size, shuffle
        self.drop_last = drop_last
        self.epoch = 0

    def __len__(self) -> int:
        n, b = len(self.items), self.batch_size
        return n // b if self.shuffle and self.drop_last and n >= b else -(-n // b)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        feats, labels = self.features(self.epoch)
        order = torch.randperm(len(self.items)) if self.shuffle else torch.arange(len(self.items))
        for i in range(len(self)):
            idx = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield {"feat": feats[idx], "label": labels[idx], "index": idx,
                   "impath": [self.items[j].impath for j in idx.tolist()]}


class FeatureTrainer(TrainerBase):
    """A trainer that needs only frozen image features: its loaders yield ``"feat"`` batches from the cache.

    Subclasses implement :meth:`encode_images` (images ``(B, 3, H, W)`` -> features ``(B, E)``, no gradient) and
    :meth:`encoder_identity` (a string that changes whenever the encoder's output would, e.g. its weights'
    SHA256 and precision), and their ``model_inference`` / ``forward_backward`` receive features. Training
    features are those of the test transform, unless ``AUGMENTED_TRAIN``: then each epoch gets the features of
    its own augmented views (seeded by ``SEED`` and the epoch, so they are cached too).
    """

    AUGMENTED_TRAIN = False
    DROP_LAST = True  # training passes drop the last incomplete batch, as the image loaders do

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encoder_identity(self) -> str:
        raise NotImplementedError

    def build_data_loader(self) -> None:
        if distributed.world_size() > 1:
            raise RuntimeError(f"{type(self).__name__} trains on cached image features in one process (a fit takes "
                               f"seconds): run it with python train.py, not torchrun")
        super().build_data_loader()
        from .data import make_loader
        from .transforms import build_transform

        cfg, ds = self.cfg, self.dm.dataset
        self.feature_cache = FeatureCache(os.path.expanduser(cfg.DATALOADER.FEATURE_CACHE_DIR))
        self._transforms = {False: build_transform(cfg, is_train=False), True: build_transform(cfg, is_train=True)}
        self._make_loader = make_loader
        self.train_loader_x = FeatureBatches(lambda e: self.split_features("train_x", e), ds.train_x,
                                             cfg.DATALOADER.TRAIN_X.BATCH_SIZE, shuffle=True,
                                             drop_last=self.DROP_LAST)
        bs = cfg.DATALOADER.TEST.BATCH_SIZE
        self.val_loader = (FeatureBatches(lambda e: self.split_features("val"), ds.val, bs, False)
                           if ds.val else None)
        self.test_loader = FeatureBatches(lambda e: self.split_features("test"), ds.test, bs, False)

    def before_epoch(self) -> None:
        self.train_loader_x.epoch = self.epoch
        super().before_epoch()

    def split_features(self, split: str, aug_epoch: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(features (N, E) fp32, labels (N,))`` of ``split`` (train_x | val | test) from the cache.

        ``aug_epoch`` (train_x with ``AUGMENTED_TRAIN``): the augmented views of that epoch; else the test
        transform's single view."""
        items: List[Any] = getattr(self.dm.dataset, split)
        augmented = self.AUGMENTED_TRAIN and split == "train_x" and aug_epoch is not None
        transform = self._transforms[augmented]
        parts = {"encoder": self.encoder_identity(), "split": split_identity(items), "transform": repr(transform),
                 "aug_epoch": aug_epoch if augmented else None, "seed": self.cfg.SEED if augmented else None}
        if augmented:  # the views depend on the loader workers' seeds too
            parts["workers"] = int(self.cfg.DATALOADER.NUM_WORKERS)
        key = FeatureCache.key(parts)
        memo = self.__dict__.setdefault("_feature_memo", {})  # every plain split, the last augmented epoch
        if key not in memo:
            tensors = self.feature_cache.get(parts, lambda: self._extract(items, transform, augmented, aug_epoch))
            memo.pop(memo.get("augmented"), None)
            if augmented:
                memo["augmented"] = key
            memo[key] = tensors["features"].float(), tensors["labels"].long()
        return memo[key]

    @torch.no_grad()
    def _extract(self, items: Sequence[Any], transform: Callable, augmented: bool,
                 aug_epoch: Optional[int]) -> Dict[str, torch.Tensor]:
        loader = self._make_loader(self.cfg, items, self.cfg.DATALOADER.TEST.BATCH_SIZE, transform, False)
        with torch.random.fork_rng(devices=[]):
            if augmented:  # the views of an epoch depend only on (SEED, epoch), not on what ran before
                torch.manual_seed((max(self.cfg.SEED, 0) * 100003 + aug_epoch) % (1 << 62))
            feats = [self.encode_images(batch["img"].to(self.device)).float().cpu() for batch in loader]
        return {"features": torch.cat(feats), "labels": torch.tensor([item.label for item in items])}

    def parse_batch_train(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        return batch["feat"].to(self.device), batch["label"].to(self.device)

    def parse_batch_test(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        return batch["feat"].to(self.device), batch["label"].to(self.device)
