#!/usr/bin/env python
"""Turn an output tree into the papers' tables: one command, every protocol found in it.

- base-to-novel: per setting (trainer / config / shots), Base, Novel and HM per dataset, and the average row
  over the 11 datasets: HM of the mean base and the mean novel accuracy, as the papers compute it (not the mean
  of the per-dataset HMs); plus a summary of the averages of every setting;
- cross-dataset: source (ImageNet) + the 10 targets + their average, one row per setting;
- domain generalisation: ImageNet, -V2, -S, -A, -R + the average of the 4 targets, one row per setting;
- few-shot: accuracy per shot count, per dataset, per method (CoOp's per-shot epoch schedule, e.g. vit_b16_ep50
  for 1 shot and vit_b16 for 16, is joined into one curve when the configs never overlap).

A cell is ``mean +- std (n)`` over the seeds found (population std, as the official parse_test_res.py). Every
expected run without a result is listed under "Missing runs" (expected: ``--seeds`` x the paper's datasets /
shots), with the reason when its folder exists but holds no result. Numbers come from results.json, else from
the log (tools/parse_test_res.py).

Usage::

    python tools/make_tables.py output                       # Markdown on stdout
    python tools/make_tables.py output --format csv --out tables --plot
    python tools/make_tables.py output --seeds 1 2 3 4 5 --keyword macro_f1
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.result_tree import (DG_TARGETS, PAPER_DATASETS, XD_TARGETS, Cell, display_name, few_shot_folder,
                               scan_base2new, scan_cross_dataset, scan_few_shot)

logger = logging.getLogger(__name__)
SHOTS = [1, 2, 4, 8, 16]


@dataclass
class Partial:
    """An average over fewer items than the paper's table has: printed as ``value (done of expected)``."""

    value: float
    done: int
    expected: int

    def __str__(self) -> str:
        return f"{self.value:.2f} ({self.done} of {self.expected})"


Value = Union[Cell, Partial, float, str, None]


@dataclass
class Table:
    """A table: the first column labels rows; a Cell renders as mean +- std (n), None as a dash."""

    name: str  # file stem: base2new_MaPLe_vit_b16_c2_ep5_batch4_2ctx_16shots
    title: str
    columns: list[str]
    rows: list[list[Value]]
    notes: list[str] = field(default_factory=list)


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    """2ab / (a + b); None when either is unknown, 0 when both are 0."""
    if a is None or b is None:
        return None
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """Mean of the known values; None when there is none."""
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def average_of(values: Sequence[float | None], expected: int) -> float | Partial | None:
    """Mean of the known values: a float when all ``expected`` are known, a Partial when only some are."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    mean = sum(known) / len(known)
    return mean if len(known) == expected else Partial(mean, len(known), expected)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def _average_label(done: int, expected: int, what: str = "datasets") -> str:
    return "Average" if done == expected else f"Average ({done} of {expected} {what})"


def _missing_lines(prefix: str, cell: Cell | None, seeds: list[int]) -> list[str]:
    """'prefix: seeds 2, 3 missing' plus the reason of each seed folder that exists without a result."""
    cell = cell or Cell()
    missing = cell.missing(seeds)
    if not missing:
        return []
    lines = [f"{prefix}: seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} missing"]
    lines += [f"    seed{s}: {cell.problems[s]}" for s in missing if s in cell.problems]
    return lines


def base2new_tables(root: Path, seeds: list[int], keyword: str) -> tuple[list[Table], list[str]]:
    """One table per setting, then the summary of the average rows; and the missing runs."""
    tables, missing, summary = [], [], []
    for (trainer, cfg, shots), by_dataset in sorted(scan_base2new(root, keyword).items()):
        setting = f"{trainer} / {cfg} / {shots} shots"
        datasets = list(PAPER_DATASETS) + sorted(set(by_dataset) - set(PAPER_DATASETS))
        rows, bases, news = [], [], []
        for dataset in datasets:
            base, new = (by_dataset.get(dataset, {}).get(c) for c in ("base", "new"))
            b, n = (c.mean if c else None for c in (base, new))
            rows.append([display_name(dataset), base, new, harmonic_mean(b, n)])
            if b is not None and n is not None and dataset in PAPER_DATASETS:
                bases.append(b)
                news.append(n)
            for column, cell in (("base", base), ("novel", new)):
                missing += _missing_lines(f"base2new {setting}: {dataset} {column}", cell, seeds)
        avg = [_average_label(len(bases), len(PAPER_DATASETS)), mean_or_none(bases), mean_or_none(news)]
        avg.append(harmonic_mean(avg[1], avg[2]))
        rows.append(avg)
        summary.append([setting, f"{len(bases)} of {len(PAPER_DATASETS)}"] + avg[1:])
        name = _slug(f"base2new_{trainer}_{cfg}_{shots}shots")
        tables.append(Table(name, f"Base-to-novel generalisation: {setting}", ["Dataset", "Base", "Novel", "HM"],
                            rows, ["HM = harmonic mean of the mean base and mean novel accuracy (the average row: "
                                   "of the averages over the datasets with both)."]))
    if summary:
        tables.append(Table("base2new_summary", "Base-to-novel generalisation: average over the datasets",
                            ["Setting", "Datasets", "Base", "Novel", "HM"], summary))
    return tables, missing


def transfer_tables(root: Path, seeds: list[int], keyword: str, source: str = "imagenet"
                    ) -> tuple[list[Table], list[str]]:
    """Cross-dataset and domain-generalisation tables (a row per setting that evaluated any target of it)."""
    found = scan_cross_dataset(root, source, keyword)
    tables, missing = [], []
    for name, title, targets in (("cross_dataset", "Cross-dataset transfer", XD_TARGETS),
                                 ("domain_generalization", "Domain generalisation", list(DG_TARGETS))):
        rows = []
        for setting, cells in sorted(found.items()):
            if not any(t in cells for t in targets):
                continue
            means = [cells[t].mean if t in cells else None for t in targets]
            rows.append([setting, cells.get(source)] + [cells.get(t) for t in targets]
                        + [average_of(means, len(targets))])
            for dataset in [source] + targets:
                missing += _missing_lines(f"{name} {setting}: {dataset}", cells.get(dataset), seeds)
        if rows:
            columns = ["Setting", f"{display_name(source)} (source)"] + [display_name(t) for t in targets]
            tables.append(Table(name, f"{title} (trained on {display_name(source)})", columns + ["Average"], rows,
                                [f"Average over the {len(targets)} targets (the source excluded)."]))
    return tables, missing


def _curves(found: dict) -> dict[tuple[str, str, str], dict[str, dict[int, Cell]]]:
    """Few-shot curves: (trainer, cfg label, sub) -> dataset -> shots -> Cell. Configs that differ only in
    their ``_ep<N>`` part join one curve when no (dataset, shots) point is covered twice."""
    by_family: dict[tuple[str, str, str], list[tuple[str, str, dict[int, Cell]]]] = {}
    for (dataset, trainer, cfg, sub), points in found.items():
        family = (trainer, re.sub(r"_ep\d+", "", cfg), sub)
        by_family.setdefault(family, []).append((cfg, dataset, points))
    curves: dict[tuple[str, str, str], dict[str, dict[int, Cell]]] = {}
    for (trainer, _, sub), members in by_family.items():
        covered = [(dataset, k) for _, dataset, points in members for k in points]
        joined = len(covered) == len(set(covered))
        for cfg, dataset, points in members:
            label = "+".join(sorted({c for c, _, _ in members})) if joined else cfg
            curves.setdefault((trainer, label, sub), {}).setdefault(dataset, {}).update(points)
    return curves


def few_shot_tables(root: Path, seeds: list[int], keyword: str, source: str = "imagenet"
                    ) -> tuple[list[Table], list[str]]:
    """One table per curve: a row per dataset (+ average), a column per shot count. A config whose only runs
    are the source models of cross-dataset settings (xd_train) is not a few-shot curve."""
    tables, missing = [], []
    sources = {f"{source}/{setting}" for setting in scan_cross_dataset(root, source, keyword)}
    found = scan_few_shot(root, keyword)
    folders: dict[tuple[str, str, str], set[str]] = {}
    for (dataset, trainer, cfg, sub), points in found.items():
        folders.setdefault((trainer, cfg, sub), set()).update(
            few_shot_folder(dataset, trainer, cfg, sub, k) for k in points)
    found = {key: points for key, points in found.items() if not folders[key[1:]] <= sources}
    for (trainer, label, sub), by_dataset in sorted(_curves(found).items()):
        shots = sorted(set(SHOTS) | {k for points in by_dataset.values() for k in points})
        setting = " / ".join(p for p in (trainer, label, sub) if p)
        datasets = list(PAPER_DATASETS) + sorted(set(by_dataset) - set(PAPER_DATASETS))
        rows = [[display_name(d)] + [by_dataset.get(d, {}).get(k) for k in shots] for d in datasets]
        average: list[Value] = ["Average"]
        for k in shots:
            cells = [by_dataset.get(d, {}).get(k) for d in PAPER_DATASETS]
            average.append(average_of([c.mean if c else None for c in cells], len(PAPER_DATASETS)))
        rows.append(average)
        for dataset in datasets:
            points = by_dataset.get(dataset, {})
            if not points:
                missing.append(f"few_shot {setting}: {dataset}: no run")
                continue
            for k in shots:
                missing += _missing_lines(f"few_shot {setting}: {dataset} {k} shots", points.get(k), seeds)
        name = _slug(f"few_shot_{trainer}_{label}_{sub}")
        columns = ["Dataset"] + [f"{k} shot{'s' * (k > 1)}" for k in shots]
        tables.append(Table(name, f"Few-shot learning: {setting}", columns, rows))
    return tables, missing


def collect(root: Path, seeds: list[int], keyword: str = "accuracy", source: str = "imagenet"
            ) -> tuple[list[Table], list[str]]:
    """Every table found under ``root`` (base-to-novel, transfer, few-shot) and every missing run."""
    tables, missing = [], []
    for tab, miss in (base2new_tables(root, seeds, keyword), transfer_tables(root, seeds, keyword, source),
                      few_shot_tables(root, seeds, keyword, source)):
        tables += tab
        missing += miss
    return tables, missing


def format_value(value: Value, with_std: bool = True) -> str:
    """Markdown text of a cell: mean +- std (n), a number with two decimals, text, or a dash."""
    if value is None or (isinstance(value, Cell) and value.n == 0):
        return "-"
    if isinstance(value, Cell):
        return f"{value.mean:.2f} +- {value.std:.2f} ({value.n})" if with_std else f"{value.mean:.2f}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def to_markdown(tables: list[Table], missing: list[str]) -> str:
    """All tables, then the missing runs, as one Markdown document."""
    out = []
    for table in tables:
        out += [f"## {table.title}", "", "| " + " | ".join(table.columns) + " |",
                "|" + "|".join(["---"] + ["---:"] * (len(table.columns) - 1)) + "|"]
        out += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in table.rows]
        out += [""] + [f"_{note}_" for note in table.notes] + ([""] if table.notes else [])
    out += ["## Missing runs", ""]
    out += ["```", *missing, "```"] if missing else ["None: every expected run has a result."]
    return "\n".join(out) + "\n"


def _csv_scalar(value: Value) -> str:
    """A non-Cell CSV field: numbers with four decimals (a Partial as its value), text as is."""
    if value is None:
        return ""
    if isinstance(value, Partial):
        value = value.value
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def to_csv(table: Table) -> str:
    """One table as CSV: a Cell column becomes <column>, <column>_std, <column>_n."""
    stat_cols = {i for i, _ in enumerate(table.columns) if any(isinstance(r[i], Cell) for r in table.rows)}
    header = []
    for i, column in enumerate(table.columns):
        header += [column, f"{column}_std", f"{column}_n"] if i in stat_cols else [column]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        line: list[str] = []
        for i, value in enumerate(row):
            if i not in stat_cols:
                line.append(_csv_scalar(value))
            elif isinstance(value, Cell) and value.n:
                line += [f"{value.mean:.4f}", f"{value.std:.4f}", str(value.n)]
            else:
                line += ["", "", "0"]
        writer.writerow(line)
    return buffer.getvalue()


def write_outputs(tables: list[Table], missing: list[str], fmt: str, out: Path | None) -> list[Path]:
    """Markdown (one document) or CSV (one file per table + missing_runs.txt) into ``out``, or stdout."""
    if fmt == "md":
        text = to_markdown(tables, missing)
        if out is None:
            sys.stdout.write(text)
            return []
        path = out / "tables.md"
        path.write_text(text)
        return [path]
    if out is None:
        for table in tables:
            sys.stdout.write(f"# {table.name}: {table.title}\n{to_csv(table)}\n")
        sys.stdout.write("".join(f"# missing: {line}\n" for line in missing))
        return []
    paths = []
    for table in tables:
        paths.append(out / f"{table.name}.csv")
        paths[-1].write_text(to_csv(table))
    paths.append(out / "missing_runs.txt")
    paths[-1].write_text("".join(f"{line}\n" for line in missing))
    return paths


def build_parser() -> argparse.ArgumentParser:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("root", type=Path, help="output tree (the scripts' OUTPUT_ROOT, e.g. output)")
    add("--format", choices=("md", "csv"), default="md", help="Markdown document or one CSV file per table")
    add("--out", type=Path, default=None, help="folder for the files (default: print to stdout)")
    add("--plot", action="store_true", help="also write PNG plots (into --out, default <root>/tables)")
    add("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds every cell should have (1 2 3)")
    add("--keyword", default="accuracy", help="metric to tabulate (accuracy, error, macro_f1)")
    add("--source", default="imagenet", help="source dataset of the cross-dataset runs (imagenet)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns 1 when the tree holds no result at all."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    if not args.root.is_dir():
        logger.error("ERROR: %s is not a directory", args.root)
        return 1
    tables, missing = collect(args.root, args.seeds, args.keyword, args.source)
    if not tables:
        logger.error("ERROR: no run found under %s: looked for base2new/<phase>/<dataset>/shots_<K>/<trainer>/<cfg>/"
                     "seed<S>, evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed<S> and "
                     "<dataset>/<trainer>/<cfg>_<K>shots/seed<S>", args.root)
        return 1
    for directory in {args.out, (args.out or args.root / "tables") if args.plot else None} - {None}:
        directory.mkdir(parents=True, exist_ok=True)
    written = write_outputs(tables, missing, args.format, args.out)
    if args.plot:
        from tools.plot_tables import plot_tables  # matplotlib only when asked for

        written += plot_tables(tables, args.out or args.root / "tables")
    for path in written:
        logger.info("wrote %s", path)
    if missing:
        logger.warning("%d line(s) of missing runs (see the 'Missing runs' section / missing_runs.txt)",
                       sum(not line.startswith(" ") for line in missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
