"""The table model of tools/make_tables.py, and the reading of an output tree (scripts/' layouts) into it:

    base-to-novel   <root>/base2new/{train_base,test_base,test_new}/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>
    cross-dataset   <root>/<source>/<trainer>/<cfg>_<K>shots/seed<S>            (xd_train: the source model)
    and DG          <root>/evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed<S>  (xd_test, any extra sub-folder)
    few-shot        <root>/<dataset>/<trainer>/<cfg>_<K>shots[/<sub>]/seed<S>     (few_shot.sh, CoOp's main.sh)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from tools.parse_test_res import read_runs
from tools.protocols import DG_DATASETS, ELEVEN

# The datasets of the tables (those the scripts run, in the papers' order) with their printed names.
PAPER_DATASETS = dict(zip(ELEVEN, "ImageNet Caltech101 OxfordPets StanfordCars Flowers102 Food101 FGVCAircraft SUN397 "
                                  "DTD EuroSAT UCF101".split()))
XD_TARGETS = ELEVEN[1:]
DG_TARGETS = dict(zip(DG_DATASETS, ("ImageNet-V2", "ImageNet-S", "ImageNet-A", "ImageNet-R")))
_SEED_DIR = re.compile(r"^seed(\d+)$")
_SHOTS_DIR = re.compile(r"^(.+)_(\d+)shots$")


def display_name(dataset: str) -> str:
    return PAPER_DATASETS.get(dataset) or DG_TARGETS.get(dataset) or dataset


@dataclass
class Cell:
    """One table cell: a value per seed, and the seed folders without a result (seed -> why: never dropped)."""

    values: dict[int, float] = field(default_factory=dict)
    problems: dict[int, str] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(list(self.values.values()))) if self.values else None

    @property
    def std(self) -> float | None:
        return float(np.std(list(self.values.values()))) if self.values else None  # ddof=0, as parse_test_res

    def merged_over(self, other: Cell) -> Cell:
        """This cell's seeds, completed by ``other``'s for the seeds this one lacks."""
        values = {**other.values, **self.values}
        return Cell(values, {s: p for s, p in {**other.problems, **self.problems}.items() if s not in values})


@dataclass
class Partial:
    """An average over fewer items than the paper's table has."""

    value: float
    done: int
    expected: int

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.done} of {self.expected})"


Value = Union[Cell, Partial, float, str, None]


@dataclass
class Table:
    name: str  # file stem, e.g. base2new_MaPLe_vit_b16_c2_ep5_batch4_2ctx_16shots
    title: str
    columns: list[str]
    rows: list[list[Value]]  # the first column labels the row
    notes: list[str] = field(default_factory=list)


def read_cell(folder: Path, test_log: bool, keyword: str = "accuracy") -> Cell:
    """The ``seed<S>`` folders of ``folder`` (``test_log``: evaluation-only runs)."""
    found = [_SEED_DIR.match(p.name) for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
    seeds = {folder / m.group(0): int(m.group(1)) for m in sorted(filter(None, found), key=lambda m: int(m.group(1)))}
    runs, problems = read_runs(list(seeds), keyword, test_log)
    return Cell({seeds[d]: run.metrics[keyword] for d, run in runs.items()}, {seeds[d]: p for d, p in problems.items()})


def folders_with_seeds(top: Path) -> list[tuple[str, ...]]:
    """The paths, relative to ``top``, of the folders under it that hold ``seed<S>`` folders, sorted."""
    found = {p.parent for p in top.rglob("seed*") if p.is_dir() and _SEED_DIR.match(p.name)} if top.is_dir() else ()
    return sorted(p.relative_to(top).parts for p in found)


def scan_base2new(root: Path, keyword: str = "accuracy") -> dict[tuple[str, str, int], dict[str, dict[str, Cell]]]:
    """(trainer, cfg, shots) -> dataset -> {"base": Cell, "new": Cell}. A test_base result of a seed wins over
    its train_base one (reproduce.sh evaluates released weights there)."""
    found: dict[tuple[str, str, int], dict[str, dict[str, Cell]]] = {}
    for phase, column, test_log in (("train_base", "base", False), ("test_base", "base", True),
                                    ("test_new", "new", True)):
        for parts in folders_with_seeds(root / "base2new" / phase):
            if len(parts) == 4 and parts[1].startswith("shots_") and parts[1][6:].isdigit():
                dataset, shots, trainer, cfg = parts[0], int(parts[1][6:]), parts[2], parts[3]
                cells = found.setdefault((trainer, cfg, shots), {}).setdefault(dataset, {})
                cell = read_cell(root / "base2new" / phase / Path(*parts), test_log, keyword)
                cells[column] = cell.merged_over(cells[column]) if column in cells else cell
    return found


def scan_cross_dataset(root: Path, source: str = "imagenet", keyword: str = "accuracy") -> dict[str, dict[str, Cell]]:
    """"<trainer>/<cfg>_<K>shots[/<sub>]" -> dataset -> Cell, the source included (its evaluation wins, per
    seed, over the test at the end of xd_train)."""
    found: dict[str, dict[str, Cell]] = {}
    for parts in (p for p in folders_with_seeds(root / "evaluation") if len(p) >= 2):
        found.setdefault("/".join(parts[:-1]), {})[parts[-1]] = read_cell(root / "evaluation" / Path(*parts), True,
                                                                         keyword)
    for setting, cells in found.items():
        trained = read_cell(root / source / setting, False, keyword)
        cells[source] = cells[source].merged_over(trained) if source in cells else trained
    return found


def scan_few_shot(root: Path, keyword: str = "accuracy") -> dict[tuple[str, str, str, str], dict[int, Cell]]:
    """(dataset, trainer, cfg, sub) -> shots -> Cell, for every dataset of the papers."""
    found: dict[tuple[str, str, str, str], dict[int, Cell]] = {}
    for dataset in sorted(set(PAPER_DATASETS) | set(DG_TARGETS)):
        for parts in folders_with_seeds(root / dataset):
            match = _SHOTS_DIR.match(parts[1]) if len(parts) >= 2 else None
            if match:
                found.setdefault((dataset, parts[0], match.group(1), "/".join(parts[2:])), {})[
                    int(match.group(2))] = read_cell(root / dataset / Path(*parts), False, keyword)
    return found


def scan_zero_shot(root: Path, keyword: str = "accuracy") -> dict[str, dict[str, float]]:
    """cfg -> dataset -> value of the zero-shot runs (``<root>/ZeroshotCLIP/<cfg>/<dataset>``, scripts/zsclip)."""
    found: dict[str, dict[str, float]] = {}
    for folder in sorted((root / "ZeroshotCLIP").glob("*/*")) if (root / "ZeroshotCLIP").is_dir() else ():
        runs, _ = read_runs([folder], keyword, True)
        if folder in runs and folder.name in PAPER_DATASETS:
            found.setdefault(folder.parent.name, {})[folder.name] = runs[folder].metrics[keyword]
    return found
