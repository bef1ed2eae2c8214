#!/usr/bin/env python
"""Turn an output tree into the papers' tables, for every protocol found in it (base-to-novel, cross-dataset,
domain generalisation, few-shot), with the missing runs, as Markdown, CSV or PNG plots; see the README's
"Results tables". A cell is ``mean +- std (n)`` over the seeds found (population std, as parse_test_res.py).
"""
from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import re
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.result_tree import (DG_TARGETS, PAPER_DATASETS, XD_TARGETS, Cell, Partial, Table, Value,  # noqa: E402
                               display_name, folders_with_seeds, read_cell, scan_base2new, scan_cross_dataset,
                               scan_few_shot, scan_zero_shot)

logger = logging.getLogger(__name__)
SHOTS = [1, 2, 4, 8, 16]
Tables = tuple[list[Table], list[str]]  # the tables and the missing-run lines


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def average_of(values: Sequence[float | None], expected: int) -> float | Partial | None:
    """Mean of the known values: a float when all ``expected`` are known, a Partial when only some are."""
    known = [v for v in values if v is not None]
    mean = sum(known) / len(known) if known else None
    return mean if mean is None or len(known) == expected else Partial(mean, len(known), expected)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def _missing_lines(prefix: str, cell: Cell | None, seeds: list[int]) -> list[str]:
    """'prefix: seeds 2, 3 missing' plus the reason of each seed folder that exists without a result."""
    cell = cell or Cell()
    missing = [s for s in seeds if s not in cell.values]
    if not missing:
        return []
    return ([f"{prefix}: seed{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} missing"]
            + [f"    seed{s}: {cell.problems[s]}" for s in missing if s in cell.problems])


def base2new_tables(root: Path, seeds: list[int], keyword: str) -> Tables:
    """A table per setting, then the summary of their average rows."""
    tables, missing, summary = [], [], []
    for (trainer, cfg, shots), by_dataset in sorted(scan_base2new(root, keyword).items()):
        setting = f"{trainer} / {cfg} / {shots} shots"
        rows, bases, news = [], [], []
        for dataset in list(PAPER_DATASETS) + sorted(set(by_dataset) - set(PAPER_DATASETS)):
            base, new = (by_dataset.get(dataset, {}).get(c) for c in ("base", "new"))
            b, n = (c.mean if c else None for c in (base, new))
            rows.append([display_name(dataset), base, new, harmonic_mean(b, n)])
            if b is not None and n is not None and dataset in PAPER_DATASETS:
                bases.append(b)
                news.append(n)
            for column, cell in (("base", base), ("novel", new)):
                missing += _missing_lines(f"base2new {setting}: {dataset} {column}", cell, seeds)
        done, expected = len(bases), len(PAPER_DATASETS)
        b, n = (sum(v) / done if done else None for v in (bases, news))
        rows.append(["Average" if done == expected else f"Average ({done} of {expected} datasets)", b, n,
                     harmonic_mean(b, n)])
        summary.append([setting, f"{done} of {expected}"] + rows[-1][1:])
        tables.append(Table(_slug(f"base2new_{trainer}_{cfg}_{shots}shots"), f"Base-to-novel generalisation: "
                            f"{setting}", ["Dataset", "Base", "Novel", "HM"], rows,
                            ["HM = harmonic mean of the mean base and mean novel accuracy (the average row: "
                             "of the averages over the datasets with both)."]))
    if summary:
        tables.append(Table("base2new_summary", "Base-to-novel generalisation: average over the datasets",
                            ["Setting", "Datasets", "Base", "Novel", "HM"], summary))
    return tables, missing


def transfer_tables(root: Path, seeds: list[int], keyword: str, source: str = "imagenet") -> Tables:
    """Cross-dataset and domain-generalisation tables: a row per setting that evaluated any of their targets."""
    found = scan_cross_dataset(root, source, keyword)
    tables, missing = [], []
    for name, title, targets in (("cross_dataset", "Cross-dataset transfer", XD_TARGETS),
                                 ("domain_generalization", "Domain generalisation", list(DG_TARGETS))):
        rows = []
        for setting, cells in sorted(found.items()):
            if any(t in cells for t in targets):
                means = [cells[t].mean if t in cells else None for t in targets]
                rows.append([setting, cells.get(source), *(cells.get(t) for t in targets),
                             average_of(means, len(targets))])
                for dataset in [source] + targets:
                    missing += _missing_lines(f"{name} {setting}: {dataset}", cells.get(dataset), seeds)
        if rows:
            columns = ["Setting", f"{display_name(source)} (source)", *map(display_name, targets), "Average"]
            tables.append(Table(name, f"{title} (trained on {display_name(source)})", columns, rows,
                                [f"Average over the {len(targets)} targets (the source excluded)."]))
    return tables, missing


def few_shot_tables(root: Path, seeds: list[int], keyword: str, source: str = "imagenet") -> Tables:
    """A table per curve: a row per dataset (+ average), a column per shot count. Configs that differ only in
    their ``_ep<N>`` part (CoOp's per-shot schedules) join one curve when no point is covered twice; a config
    whose only runs are the source models of cross-dataset settings (xd_train) is no curve."""
    sources = {f"{source}/{setting}" for setting in scan_cross_dataset(root, source, keyword)}
    found = scan_few_shot(root, keyword)
    folders: dict[tuple[str, str, str], set[str]] = {}
    for (dataset, trainer, cfg, sub), points in found.items():
        folders.setdefault((trainer, cfg, sub), set()).update(
            "/".join(p for p in (dataset, trainer, f"{cfg}_{k}shots", sub) if p) for k in points)
    families: dict[tuple[str, str, str], list[tuple[str, str, dict[int, Cell]]]] = {}
    for (dataset, trainer, cfg, sub), points in found.items():
        if not folders[trainer, cfg, sub] <= sources:
            families.setdefault((trainer, re.sub(r"_ep\d+", "", cfg), sub), []).append((cfg, dataset, points))
    curves: dict[tuple[str, str, str], dict[str, dict[int, Cell]]] = {}
    for (trainer, _, sub), members in families.items():
        covered = [(dataset, k) for _, dataset, points in members for k in points]
        joined = "+".join(sorted({c for c, _, _ in members})) if len(covered) == len(set(covered)) else None
        for cfg, dataset, points in members:
            curves.setdefault((trainer, joined or cfg, sub), {}).setdefault(dataset, {}).update(points)
    tables, missing = [], []
    for (trainer, label, sub), by_dataset in sorted(curves.items()):
        shots = sorted(set(SHOTS) | {k for points in by_dataset.values() for k in points})
        setting = " / ".join(p for p in (trainer, label, sub) if p)
        datasets = list(PAPER_DATASETS) + sorted(set(by_dataset) - set(PAPER_DATASETS))
        rows = [[display_name(d)] + [by_dataset.get(d, {}).get(k) for k in shots] for d in datasets]
        means = {k: [by_dataset[d][k].mean if k in by_dataset.get(d, {}) else None for d in PAPER_DATASETS]
                 for k in shots}
        rows.append(["Average"] + [average_of(means[k], len(PAPER_DATASETS)) for k in shots])
        for dataset in datasets:
            points = by_dataset.get(dataset, {})
            missing += [f"few_shot {setting}: {dataset}: no run"] if not points else [
                line for k in shots for line in _missing_lines(f"few_shot {setting}: {dataset} {k} shots",
                                                               points.get(k), seeds)]
        tables.append(Table(_slug(f"few_shot_{trainer}_{label}_{sub}"), f"Few-shot learning: {setting}",
                            ["Dataset"] + [f"{k} shot{'s' * (k > 1)}" for k in shots], rows))
    summary = few_shot_summary(tables, scan_zero_shot(root, keyword))
    return tables + ([summary] if summary else []), missing


def few_shot_summary(curves: list[Table], zero_shot: dict[str, dict[str, float]]) -> Table | None:
    """Every method side by side: a row per few-shot curve (its average over the 11 datasets) and per zero-shot
    CLIP config (0 shots), a column per shot count."""
    shots = sorted({int(c.split()[0]) for t in curves for c in t.columns[1:]} | set(SHOTS))
    rows: list[list[Value]] = [[f"Zero-shot CLIP / {cfg}", average_of([by.get(d) for d in PAPER_DATASETS],
                                                                        len(PAPER_DATASETS))] + [None] * len(shots)
                               for cfg, by in sorted(zero_shot.items())]
    for table in curves:
        values = dict(zip((int(c.split()[0]) for c in table.columns[1:]), table.rows[-1][1:]))
        rows.append([table.title.split(": ", 1)[-1], None] + [values.get(k) for k in shots])
    if not rows:
        return None
    return Table("few_shot_summary", "Few-shot learning: all methods (average over the 11 datasets)",
                 ["Method", "0 shots"] + [f"{k} shot{'s' * (k > 1)}" for k in shots], rows)


def video_tables(root: Path, seeds: list[int]) -> Tables:
    """ActionCLIP's runs (``<root>/ActionCLIP/{train,test,zero_shot}/<dataset>/<cfg>/seed<S>``): top-1 and top-5
    per phase, dataset and config."""
    rows, missing = [], []
    for phase in ("train", "test", "zero_shot"):
        for parts in folders_with_seeds(root / "ActionCLIP" / phase):
            folder = root / "ActionCLIP" / phase / Path(*parts)
            top1, top5 = read_cell(folder, phase != "train"), read_cell(folder, phase != "train", "top5")
            rows.append([phase, "/".join(parts), top1, top5])
            missing += _missing_lines(f"actionclip {phase} {'/'.join(parts)}", top1, seeds)
    if not rows:
        return [], []
    return [Table("video_ActionCLIP", "ActionCLIP video recognition", ["Phase", "Dataset / config", "Top-1", "Top-5"],
                  rows, ["train: the evaluation at the end of training (the val list)."])], missing


def collect(root: Path, seeds: list[int], keyword: str = "accuracy", source: str = "imagenet") -> Tables:
    """Every table found under ``root`` and every missing run."""
    parts = (base2new_tables(root, seeds, keyword), transfer_tables(root, seeds, keyword, source),
             few_shot_tables(root, seeds, keyword, source), video_tables(root, seeds))
    return [t for tables, _ in parts for t in tables], [line for _, lines in parts for line in lines]


def format_value(value: Value) -> str:
    if value is None or (isinstance(value, Cell) and value.n == 0):
        return "-"
    if isinstance(value, Cell):
        return f"{value.mean:.2f} +- {value.std:.2f} ({value.n})"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def to_markdown(tables: list[Table], missing: list[str]) -> str:
    out = []
    for table in tables:
        out += [f"## {table.title}", "", "| " + " | ".join(table.columns) + " |",
                "|" + "|".join(["---"] + ["---:"] * (len(table.columns) - 1)) + "|"]
        out += ["| " + " | ".join(format_value(v) for v in row) + " |" for row in table.rows]
        out += [""] + [f"_{note}_" for note in table.notes] + ([""] if table.notes else [])
    out += ["## Missing runs", ""]
    out += ["```", *missing, "```"] if missing else ["None: every expected run has a result."]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """One table as CSV: a column of Cells becomes <column>, <column>_std, <column>_n."""
    stats = [any(isinstance(r[i], Cell) for r in table.rows) for i in range(len(table.columns))]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([h for c, stat in zip(table.columns, stats) for h in ([c, f"{c}_std", f"{c}_n"] if stat else [c])])
    for row in table.rows:
        line: list[str] = []
        for value, stat in zip(row, stats):
            if stat:
                known = isinstance(value, Cell) and value.n
                line += [f"{value.mean:.4f}", f"{value.std:.4f}", str(value.n)] if known else ["", "", "0"]
            else:
                value = value.value if isinstance(value, Partial) else value  # CSV is for numbers: no "(k of n)"
                line.append("" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value))
        writer.writerow(line)
    return buffer.getvalue()


def write_outputs(tables: list[Table], missing: list[str], fmt: str, out: Path | None) -> list[Path]:
    """Markdown (one document) or CSV (one file per table + missing_runs.txt) into ``out``, or on stdout (CSV:
    each file after a ``# <file name>`` line)."""
    files = {"tables.md": to_markdown(tables, missing)} if fmt == "md" else {
        **{f"{t.name}.csv": to_csv(t) for t in tables}, "missing_runs.txt": "".join(f"{m}\n" for m in missing)}
    if out is None:
        sys.stdout.write("".join(text if fmt == "md" else f"# {name}\n{text}\n" for name, text in files.items()))
        return []
    for name, text in files.items():
        (out / name).write_text(text)
    return [out / name for name in files]


def _number(value: Value) -> float:
    """NaN where there is no number: matplotlib leaves a gap."""
    if isinstance(value, Cell):
        return value.mean if value.n else math.nan
    if value is None or isinstance(value, str):
        return math.nan
    return float(getattr(value, "value", value))  # a Partial average or a float


def _has_number(row: list[Value]) -> bool:
    return any(not math.isnan(_number(v)) for v in row[1:])


def plot_tables(tables: list[Table], out: Path) -> list[Path]:
    """Every plot the tables allow, written into ``out``."""
    import matplotlib  # here, so that the tables need no matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    figures = []
    for table in (t for t in tables if t.name.startswith("base2new_") and t.name != "base2new_summary"):
        rows = [r for r in table.rows if _has_number(r)]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.0))
        for i, label in enumerate(("Base", "Novel", "HM")):
            ax.bar([j + (i - 1) * 0.27 for j in range(len(rows))], [_number(r[i + 1]) for r in rows], 0.27,
                   label=label, color=f"C{i}")
        ax.set_xticks(range(len(rows)), [str(r[0]).split(" (")[0] for r in rows], rotation=45, ha="right")
        ax.set(ylabel="accuracy (%)", ylim=(0, 100))
        ax.set_title(table.title, fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        figures.append((fig, out / f"{table.name}.png"))
    few_shot = [t for t in tables if t.name.startswith("few_shot_") and t.name != "few_shot_summary"]
    # A panel per row with a number in some table (in table order): datasets without any run are left out.
    names = list(dict.fromkeys(str(row[0]) for t in few_shot for row in t.rows if _has_number(row)))
    if names:
        cols = min(4, len(names))
        n_rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(n_rows, cols, figsize=(3.2 * cols, 2.6 * n_rows), squeeze=False)
        for ax, name in zip(axes.flat, names):
            for table in few_shot:
                row = next((r for r in table.rows if str(r[0]) == name), None)
                if row is not None:
                    ax.plot([int(c.split()[0]) for c in table.columns[1:]], [_number(v) for v in row[1:]],
                            marker="o", ms=3, label=table.title.split(": ", 1)[-1])
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 2, 4, 8, 16], labels=["1", "2", "4", "8", "16"])
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("shots per class", fontsize=8)
            ax.set_ylabel("accuracy (%)", fontsize=8)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        axes.flat[0].legend(fontsize=6)
        figures.append((fig, out / "few_shot.png"))
    for fig, path in figures:
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
    return [path for _, path in figures]


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 1 when the tree holds no result at all."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("root", type=Path, help="output tree (the scripts' OUTPUT_ROOT, e.g. output)")
    add("--format", choices=("md", "csv"), default="md", help="Markdown document or one CSV file per table")
    add("--out", type=Path, default=None, help="folder for the files (default: print to stdout)")
    add("--plot", action="store_true", help="also write PNG plots (into --out, default <root>/tables)")
    add("--seeds", type=int, nargs="+", default=[1, 2, 3], help="seeds every cell should have (1 2 3)")
    add("--keyword", default="accuracy", help="metric to tabulate (accuracy, error, macro_f1)")
    add("--source", default="imagenet", help="source dataset of the cross-dataset runs (imagenet)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.root.is_dir():
        logger.error("ERROR: %s is not a directory", args.root)
        return 1
    tables, missing = collect(args.root, args.seeds, args.keyword, args.source)
    if not tables:
        logger.error("ERROR: no run found under %s: looked for base2new/<phase>/<dataset>/shots_<K>/<trainer>/<cfg>/"
                     "seed<S>, evaluation/<trainer>/<cfg>_<K>shots/<dataset>/seed<S> and "
                     "<dataset>/<trainer>/<cfg>_<K>shots/seed<S>", args.root)
        return 1
    plots = (args.out or args.root / "tables") if args.plot else None
    for directory in {args.out, plots} - {None}:
        directory.mkdir(parents=True, exist_ok=True)
    written = write_outputs(tables, missing, args.format, args.out)
    if plots:
        written += plot_tables(tables, plots)
    for path in written:
        logger.info("wrote %s", path)
    if missing:
        logger.warning("%d line(s) of missing runs (see the 'Missing runs' section / missing_runs.txt)",
                       sum(not line.startswith(" ") for line in missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
