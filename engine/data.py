"""The data protocol (few-shot sampling, base/new class split) and the data loaders.

Readers in ``datasets/`` only parse a dataset's layout into full ``train_x``/``val``/``test`` lists of ``Datum``;
everything the benchmark protocol adds on top lives here, in one place:

1. few-shot sampling: ``NUM_SHOTS`` images per class for train and ``min(NUM_SHOTS, 4)`` for val, drawn with a
   local ``random.Random(SEED)`` (the official code drew from the global ``random`` seeded with SEED right before,
   which gives the same draws); cached as JSON at ``<dataset_dir>/split_fewshot/shot_{K}-seed_{S}.json``;
2. base/new subsampling (``SUBSAMPLE_CLASSES``): the sorted train labels are split in two halves
   (base gets ``ceil(n/2)``) and relabelled from 0, for train, val and test.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from fileio import write_json

from . import distributed
from .registry import DATASET_REGISTRY
from .transforms import build_transform

logger = logging.getLogger(__name__)

FEWSHOT_DIRNAME = "split_fewshot"
VAL_SHOTS_CAP = 4  # the official protocol never samples more than 4 val images per class
SUBSAMPLE_CHOICES = ("all", "base", "new")


@dataclass(frozen=True)
class Datum:
    """One labelled image: absolute ``impath``, 0-based ``label`` and its ``classname``."""

    impath: str
    label: int
    classname: str


# ----------------------------------------------------------------------------------------------- JSON records
def items_to_records(items: Sequence[Datum], base_dir: str) -> List[list]:
    """``Datum`` list -> ``[[path relative to base_dir (posix), label, classname], ...]`` (the official format)."""
    records = []
    for item in items:
        rel = os.path.relpath(item.impath, base_dir)
        if rel.startswith(os.pardir):
            raise ValueError(f"Image {item.impath} is not inside {base_dir}; cannot store it relative to it")
        records.append([rel.replace(os.sep, "/"), int(item.label), item.classname])
    return records


def records_to_items(records: Sequence[Sequence[Any]], base_dir: str) -> List[Datum]:
    """Inverse of :func:`items_to_records`: paths are joined to ``base_dir`` (absolute)."""
    base_dir = os.path.abspath(base_dir)
    return [Datum(os.path.join(base_dir, *str(rec[0]).split("/")), int(rec[1]), str(rec[2])) for rec in records]


# ----------------------------------------------------------------------------------------------- protocol
def make_rng(seed: int) -> random.Random:
    """A local RNG: seeded with ``seed`` when ``seed >= 0``, from OS entropy otherwise. Never the global one."""
    return random.Random(seed) if seed >= 0 else random.Random()


def sample_few_shot(items: Sequence[Datum], num_shots: int, rng: random.Random) -> List[Datum]:
    """Keep ``num_shots`` items per class (all of a class that has fewer).

    Classes are visited in order of first appearance and each draw is ``rng.sample(class_items, num_shots)``,
    the exact stream of the official ``generate_fewshot_dataset``.
    """
    if num_shots < 1:
        return list(items)
    by_label: Dict[int, List[Datum]] = {}  # dicts keep insertion order = first appearance
    for item in items:
        by_label.setdefault(item.label, []).append(item)
    out: List[Datum] = []
    for group in by_label.values():
        out.extend(rng.sample(group, num_shots) if len(group) >= num_shots else group)
    short = {group[0].classname: len(group) for group in by_label.values() if len(group) < num_shots}
    if short:
        logger.warning("%d of %d classes have fewer than %d images and keep all of theirs: %s", len(short),
                       len(by_label), num_shots, ", ".join(f"{name} ({n})" for name, n in short.items()))
    return out


def base_new_subsample(*splits: Optional[List[Datum]], subsample: str = "all") -> List[Optional[List[Datum]]]:
    """Keep the base (first ``ceil(n/2)`` sorted labels of ``splits[0]``) or new (the rest) classes; relabel from 0.

    ``None`` entries pass through unchanged.
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
    if subsample == "all":
        return list(splits)
    labels = sorted({item.label for item in splits[0]})
    half = math.ceil(len(labels) / 2)
    kept = labels[:half] if subsample == "base" else labels[half:]
    new_label = {old: new for new, old in enumerate(kept)}
    logger.info("Keeping the %s classes: %d of %d", subsample, len(kept), len(labels))
    return [None if split is None else [replace(it, label=new_label[it.label]) for it in split if it.label in new_label]
            for split in splits]


def _cache_candidates(cfg, dataset_dir: str, name: str) -> List[str]:
    """Where a cache file ``split_fewshot/<name>`` may live: in the dataset folder, then under
    ``DATASET.SPLIT_CACHE_DIR`` (if set)."""
    paths = [os.path.join(dataset_dir, FEWSHOT_DIRNAME, name)]
    if cfg.DATASET.SPLIT_CACHE_DIR:
        cache_root = os.path.abspath(os.path.expanduser(cfg.DATASET.SPLIT_CACHE_DIR))
        paths.append(os.path.join(cache_root, os.path.basename(dataset_dir), FEWSHOT_DIRNAME, name))
    return paths


def _save_cache(paths: List[str], payload: dict, what: str) -> Optional[str]:
    """Write a cache to the first writable candidate; warn (never fail) when the data root is read-only."""
    try:
        write_json(paths[0], payload)
        return paths[0]
    except OSError as err:
        if len(paths) > 1:  # the user asked for this folder explicitly: failing to write there is an error
            write_json(paths[1], payload)
            logger.info("Data root not writable (%s); %s cached in %s", err, what, paths[1])
            return paths[1]
        logger.warning("Cannot write the %s cache %s (%s). Continuing without it; set DATASET.SPLIT_CACHE_DIR to "
                       "a writable folder to cache it there.", what, paths[0], err)
        return None


def load_or_sample_fewshot(cfg, dataset_dir: str, train: List[Datum], val: Optional[List[Datum]]
                           ) -> Tuple[List[Datum], Optional[List[Datum]]]:
    """Few-shot train (and val, if any) from the JSON cache, or sampled with ``Random(SEED)`` and cached.

    Cache paths are relative to ``dataset_dir`` so moving the data keeps them valid. Official ``.pkl`` caches
    are ignored and never unpickled (the JSON draws equal the official ones for the same K and SEED).
    """
    num_shots, seed = int(cfg.DATASET.NUM_SHOTS), int(cfg.SEED)
    paths = _cache_candidates(cfg, dataset_dir, f"shot_{num_shots}-seed_{seed}.json")
    for path in paths:
        if os.path.isfile(path):
            logger.info("Loading few-shot split from %s", path)
            with open(path) as f:
                data = json.load(f)
            cached_val = data.get("val")
            return (records_to_items(data["train"], dataset_dir),
                    None if cached_val is None else records_to_items(cached_val, dataset_dir))
    pkl = os.path.splitext(paths[0])[0] + ".pkl"
    if os.path.exists(pkl):
        logger.info("Ignoring the official pickle cache %s (never unpickled); sampling the same draws anew", pkl)
    rng = make_rng(seed)
    train = sample_few_shot(train, num_shots, rng)
    if val is not None:
        val = sample_few_shot(val, min(num_shots, VAL_SHOTS_CAP), rng)
    payload = {"num_shots": num_shots, "seed": seed, "train": items_to_records(train, dataset_dir),
               "val": None if val is None else items_to_records(val, dataset_dir)}
    saved = _save_cache(paths, payload, "few-shot split")
    if saved:
        logger.info("Saved few-shot split to %s", saved)
    return train, val


@dataclass
class DatasetSplits:
    """What :func:`build_dataset` returns: the protocol-applied lists plus label metadata from ``train_x``."""

    name: str
    dataset_dir: str
    train_x: List[Datum]
    val: List[Datum]
    test: List[Datum]
    num_classes: int = 0
    lab2cname: Dict[int, str] = field(default_factory=dict)
    classnames: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.train_x:
            raise ValueError(f"Dataset {self.name!r} has an empty train_x split")
        # As the official DatasetBase: num_classes = max label + 1; names ordered by label, from train_x.
        self.num_classes = max(item.label for item in self.train_x) + 1
        self.lab2cname = {item.label: item.classname for item in self.train_x}
        self.lab2cname = {label: self.lab2cname[label] for label in sorted(self.lab2cname)}
        self.classnames = list(self.lab2cname.values())


def build_dataset(cfg) -> DatasetSplits:
    """Read ``cfg.DATASET.NAME`` with its registered reader, then apply few-shot sampling and subsampling.

    A reader whose ``val`` is ``None`` has no separate validation split (ImageNet): the test set is used as val
    and only train is few-shot sampled, as in the official code. A reader with ``apply_protocol = False``
    (test-only datasets) is used whole.
    """
    logger.info("Reading dataset %s", cfg.DATASET.NAME)
    reader = DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)
    train, val, test = list(reader.train_x), reader.val, list(reader.test)
    val = None if val is None else list(val)
    if getattr(reader, "apply_protocol", True):
        if cfg.DATASET.NUM_SHOTS >= 1:
            train, val = load_or_sample_fewshot(cfg, reader.dataset_dir, train, val)
        train, val, test = base_new_subsample(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
    elif cfg.DATASET.NUM_SHOTS >= 1 or cfg.DATASET.SUBSAMPLE_CLASSES != "all":
        logger.info("%s is a test-only dataset: evaluated whole (NUM_SHOTS and SUBSAMPLE_CLASSES do not apply)",
                    cfg.DATASET.NAME)
    return DatasetSplits(name=cfg.DATASET.NAME, dataset_dir=reader.dataset_dir, train_x=train,
                         val=test if val is None else val, test=test)


# ----------------------------------------------------------------------------------------------- image check
IMAGE_CHECK_FILE = "image_check.json"  # kept beside the few-shot splits


def _bad_image(path: str) -> Optional[str]:
    """Why ``path`` is not a readable image (None if its header is fine)."""
    try:
        with Image.open(path) as img:
            img.verify()
    except FileNotFoundError:
        return "missing"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def check_images(cfg, splits: "DatasetSplits") -> None:
    """Open and verify the header of every image the run will read, before it starts; raise one error naming all
    bad files. A digest of the files' paths, sizes and times is kept in ``<dataset>/split_fewshot/image_check.json``
    (or under ``DATASET.SPLIT_CACHE_DIR``), so an unchanged set of images is checked only once."""
    paths = sorted({item.impath for split in (splits.train_x, splits.val, splits.test) for item in split})
    digest, missing = hashlib.sha256(), []
    for path in paths:
        try:
            stat = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    records = _cache_candidates(cfg, splits.dataset_dir, IMAGE_CHECK_FILE)
    known = next((json.loads(open(p).read()) for p in records if os.path.isfile(p)), {"verified": []})
    if not missing and digest.hexdigest() in known["verified"]:
        return
    logger.info("Checking %d images of %s (once: the result is remembered)", len(paths), splits.name)
    bad = {path: "missing" for path in missing}
    bad.update({path: why for path in paths if path not in bad for why in [_bad_image(path)] if why})
    if bad:
        listed = "\n".join(f"  {path}: {why}" for path, why in sorted(bad.items())[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise RuntimeError(f"{len(bad)} of the {len(paths)} images of {splits.name} cannot be read:\n{listed}{more}\n"
                           f"Re-download or re-extract the dataset (tools/prepare_datasets.py, docs/DATASETS.md).")
    known["verified"] = (known["verified"] + [digest.hexdigest()])[-50:]
    _save_cache(records, known, "image check")


# ----------------------------------------------------------------------------------------------- loaders
def load_rgb_image(path: str) -> Image.Image:
    """Open ``path`` as RGB; errors name the file (and survive being re-raised from a loader worker)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file not found: {path}. Re-download or re-extract the dataset "
                                f"(see tools/prepare_datasets.py and docs/DATASETS.md).")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")  # convert() decodes, so truncated files fail here, inside the try
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise RuntimeError(f"Cannot decode image {path}: {type(err).__name__}: {err}. The file is corrupt or "
                           f"not an image; replace it (re-download the dataset).") from err


class ImageListDataset(Dataset):
    """A ``Datum`` list as a dataset of ``{"img", "label", "impath", "index"}`` dicts (Dassl's batch keys)."""

    def __init__(self, items: Sequence[Datum], transform: Optional[Callable] = None) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        item = self.items[index]
        img = load_rgb_image(item.impath)
        return {"img": img if self.transform is None else self.transform(img), "label": item.label,
                "impath": item.impath, "index": index}


class GlobalBatchSlices(Sampler):
    """The shuffled batches of ``batch_size`` one process would draw, of which process ``rank`` of ``world`` takes
    positions ``[rank * b, (rank + 1) * b)`` with ``b = batch_size / world``: together the processes see exactly the
    single-process batches, in the same order (every process draws the same permutation from the same seed)."""

    def __init__(self, dataset: Dataset, batch_size: int, rank: int, world: int) -> None:
        self.batches = BatchSampler(RandomSampler(dataset), batch_size, drop_last=True)
        self.rank, self.part = rank, batch_size // world

    def __iter__(self):
        for batch in self.batches:
            yield batch[self.rank * self.part:(self.rank + 1) * self.part]

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(cfg, items: Sequence[Datum], batch_size: int, transform: Callable, is_train: bool) -> DataLoader:
    """Training: shuffled, the last incomplete batch dropped (when there is a full one); else in order. Under
    torchrun, training batches are split across the processes (``GlobalBatchSlices``) and evaluation items into
    one contiguous part per process (gathered back in order by the trainer)."""
    if not items:
        raise ValueError("Cannot build a data loader over an empty split")
    world, rank = distributed.world_size(), distributed.rank()
    dataset = ImageListDataset(items, transform)
    workers = int(cfg.DATALOADER.NUM_WORKERS)
    common = dict(num_workers=workers, pin_memory=bool(cfg.DATALOADER.PIN_MEMORY and cfg.USE_CUDA and
                                                        torch.cuda.is_available()),
                  # Training workers start anew every epoch, seeded from the global generator as the official
                  # (Dassl) loaders are: the run is then a function of its seed, and a resumed epoch draws the same.
                  persistent_workers=bool(cfg.DATALOADER.PERSISTENT_WORKERS and workers > 0 and not is_train))
    if is_train and world > 1:
        if batch_size % world or len(items) < batch_size:
            raise ValueError(f"DATALOADER.TRAIN_X.BATCH_SIZE {batch_size} is the global batch: it must be a multiple "
                             f"of the {world} processes and at most the {len(items)} training images")
        return DataLoader(dataset, batch_sampler=GlobalBatchSlices(dataset, batch_size, rank, world), **common)
    if is_train:
        return DataLoader(dataset, batch_size=batch_size, sampler=RandomSampler(dataset),
                          drop_last=len(items) >= batch_size, **common)
    share = -(-len(items) // world)  # this process's contiguous part of the evaluation items
    part = range(min(rank * share, len(items)), min((rank + 1) * share, len(items)))
    return DataLoader(dataset, batch_size=batch_size, sampler=list(part) if world > 1 else SequentialSampler(dataset),
                      **common)


class DataManager:
    """The protocol-applied dataset, its transforms and loaders, under Dassl's attribute names.

    Args:
        cfg: the config.
        dataset: an already built :class:`DatasetSplits` (default: ``build_dataset(cfg)``).
    """

    def __init__(self, cfg, dataset: Optional[DatasetSplits] = None) -> None:
        self.dataset = build_dataset(cfg) if dataset is None else dataset
        check_images(cfg, self.dataset)
        train_tfm, test_tfm = build_transform(cfg, is_train=True), build_transform(cfg, is_train=False)
        test_bs = cfg.DATALOADER.TEST.BATCH_SIZE
        self.train_loader_x = make_loader(cfg, self.dataset.train_x, cfg.DATALOADER.TRAIN_X.BATCH_SIZE, train_tfm,
                                          True)
        self.val_loader = make_loader(cfg, self.dataset.val, test_bs, test_tfm, False) if self.dataset.val else None
        self.test_loader = make_loader(cfg, self.dataset.test, test_bs, test_tfm, False)
        if cfg.VERBOSE:
            self.log_summary(cfg)

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def lab2cname(self) -> Dict[int, str]:
        return self.dataset.lab2cname

    @property
    def classnames(self) -> List[str]:
        return self.dataset.classnames

    def log_summary(self, cfg) -> None:
        """Log the dataset name and split sizes as a table (the Dassl summary)."""
        rows = [("Dataset", cfg.DATASET.NAME), ("# classes", f"{self.num_classes:,}"),
                ("# train_x", f"{len(self.dataset.train_x):,}")]
        if self.dataset.val:
            rows.append(("# val", f"{len(self.dataset.val):,}"))
        rows.append(("# test", f"{len(self.dataset.test):,}"))
        from tabulate import tabulate

        logger.info("Dataset summary\n%s", tabulate(rows))
