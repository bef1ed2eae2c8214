"""Read an output tree (the official folder layouts of scripts/) into per-seed accuracies.

Layouts (``<root>`` is the OUTPUT_ROOT of the scripts, ``output/`` by default)::

    base-to-novel   <root>/base2new/{train_base,test_base,test_new}/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>
    cross-dataset   <root>/<source>/<trainer>/<cfg>_<K>shots/seed<S>            (xd_train: the source model)
    and DG          <root>/evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed<S>  (xd_test, any extra sub-folder)
    few-shot        <root>/<dataset>/<trainer>/<cfg>_<K>shots[/<sub>]/seed<S>     (few_shot.sh, CoOp's main.sh)

Every seed folder is read by :func:`tools.parse_test_res.parse_run_dir` (``results.json`` first, then the log).
A seed folder without a result is kept as a *problem* (with the reason), never dropped silently.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tools.parse_test_res import parse_run_dir

# The 11 datasets of the base-to-novel and few-shot tables, in the papers' order, with their printed names.
PAPER_DATASETS = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT", "ucf101": "UCF101",
}
XD_TARGETS = [name for name in PAPER_DATASETS if name != "imagenet"]
DG_TARGETS = {"imagenetv2": "ImageNet-V2", "imagenet_sketch": "ImageNet-S", "imagenet_a": "ImageNet-A",
              "imagenet_r": "ImageNet-R"}
KNOWN_DATASETS = set(PAPER_DATASETS) | set(DG_TARGETS)
_SEED_DIR = re.compile(r"^seed(\d+)$")
_SHOTS_DIR = re.compile(r"^(.+)_(\d+)shots$")


def display_name(dataset: str) -> str:
    """The name a paper table prints for a dataset folder name."""
    return PAPER_DATASETS.get(dataset) or DG_TARGETS.get(dataset) or dataset


@dataclass
class Cell:
    """Accuracies of one table cell, one per seed, and the seed folders that had no result (with why)."""

    values: dict[int, float] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of seeds with a result."""
        return len(self.values)

    @property
    def mean(self) -> float | None:
        """Mean over seeds (None without any result)."""
        return float(np.mean(list(self.values.values()))) if self.values else None

    @property
    def std(self) -> float | None:
        """Population std over seeds (ddof=0, as the official parse_test_res.py)."""
        return float(np.std(list(self.values.values()))) if self.values else None

    def merged_over(self, other: "Cell") -> "Cell":
        """This cell's seeds, completed by ``other``'s for the seeds this one lacks."""
        values = {**other.values, **self.values}
        problems = {s: p for s, p in {**other.problems, **self.problems}.items() if s not in values}
        return Cell(values, problems)

    def missing(self, seeds: list[int]) -> list[int]:
        """Expected seeds without a result."""
        return [s for s in seeds if s not in self.values]


def seed_dirs(folder: Path) -> dict[int, Path]:
    """The ``seed<S>`` sub-folders of ``folder`` by seed number."""
    if not folder.is_dir():
        return {}
    found = (_SEED_DIR.match(p.name) for p in folder.iterdir() if p.is_dir())
    return {int(m.group(1)): folder / m.group(0) for m in found if m}


def read_cell(folder: Path, test_log: bool, keyword: str = "accuracy") -> Cell:
    """One cell from the seed folders of ``folder`` (``test_log``: the folder holds evaluation-only runs)."""
    cell = Cell()
    for seed, run_dir in sorted(seed_dirs(folder).items()):
        run, note = parse_run_dir(run_dir, test_log=test_log)
        if run is not None and keyword in run.metrics:
            cell.values[seed] = run.metrics[keyword]
        else:
            cell.problems[seed] = note or f"{run.source}: no '{keyword}' in it"
    return cell


def _folders_with_seeds(top: Path) -> list[Path]:
    """Every folder under ``top`` (itself included) that holds ``seed<S>`` folders, sorted."""
    if not top.is_dir():
        return []
    parents = {p.parent for p in top.rglob("seed*") if p.is_dir() and _SEED_DIR.match(p.name)}
    return sorted(parents)


# A base-to-novel setting: (trainer, cfg, shots) -> dataset -> {"base": Cell, "new": Cell}
Base2New = dict[tuple[str, str, int], dict[str, dict[str, Cell]]]


def scan_base2new(root: Path, keyword: str = "accuracy") -> Base2New:
    """Base and novel cells per setting and dataset; a test_base result of a seed wins over its train_base one
    (reproduce.sh evaluates released weights there; train_base tests the same model at the end of training)."""
    found: Base2New = {}
    for phase, column, test_log in (("train_base", "base", False), ("test_base", "base", True),
                                    ("test_new", "new", True)):
        phase_dir = root / "base2new" / phase
        for folder in _folders_with_seeds(phase_dir):
            parts = folder.relative_to(phase_dir).parts
            if len(parts) != 4 or not parts[1].startswith("shots_") or not parts[1][6:].isdigit():
                continue
            dataset, shots, trainer, cfg = parts[0], int(parts[1][6:]), parts[2], parts[3]
            cells = found.setdefault((trainer, cfg, shots), {}).setdefault(dataset, {})
            cell = read_cell(folder, test_log, keyword)
            cells[column] = cell.merged_over(cells[column]) if column in cells else cell
    return found


# A cross-dataset setting: "<trainer>/<cfg>_<K>shots[/<sub>]" -> dataset -> Cell (the source included)
CrossDataset = dict[str, dict[str, Cell]]


def scan_cross_dataset(root: Path, source: str = "imagenet", keyword: str = "accuracy") -> CrossDataset:
    """Target cells of every evaluation setting, and its source cell (an evaluation of the source dataset
    itself wins, per seed, over the test at the end of xd_train)."""
    found: CrossDataset = {}
    eval_dir = root / "evaluation"
    for folder in _folders_with_seeds(eval_dir):
        rel = folder.relative_to(eval_dir)
        if len(rel.parts) < 2:
            continue
        setting, dataset = str(rel.parent), rel.name
        found.setdefault(setting, {})[dataset] = read_cell(folder, True, keyword)
    for setting, cells in found.items():
        trained = read_cell(root / source / setting, False, keyword)
        cells[source] = cells[source].merged_over(trained) if source in cells else trained
    return found


# A few-shot curve: (dataset, trainer, cfg, sub) -> shots -> Cell
FewShot = dict[tuple[str, str, str, str], dict[int, Cell]]


def few_shot_folder(dataset: str, trainer: str, cfg: str, sub: str, shots: int) -> str:
    """The folder of a few-shot point, relative to the output root."""
    return "/".join(p for p in (dataset, trainer, f"{cfg}_{shots}shots", sub) if p)


def scan_few_shot(root: Path, keyword: str = "accuracy") -> FewShot:
    """Cells of every ``<dataset>/<trainer>/<cfg>_<K>shots[/<sub>]`` folder of a known dataset."""
    found: FewShot = {}
    for dataset in sorted(KNOWN_DATASETS):
        for folder in _folders_with_seeds(root / dataset):
            parts = folder.relative_to(root / dataset).parts
            match = _SHOTS_DIR.match(parts[1]) if len(parts) >= 2 else None
            if match is None:
                continue
            key = (dataset, parts[0], match.group(1), "/".join(parts[2:]))
            found.setdefault(key, {})[int(match.group(2))] = read_cell(folder, False, keyword)
    return found
