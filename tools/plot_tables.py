"""PNG plots of the tables of tools/make_tables.py (matplotlib, Agg backend: no display needed).

- base-to-novel: per setting, Base / Novel / HM bars per dataset and for the average;
- few-shot: one panel per dataset (and the average), accuracy vs number of shots, one line per method.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from tools.result_tree import Cell

if TYPE_CHECKING:  # imported for annotations only: make_tables imports this module lazily
    from tools.make_tables import Table, Value


def _number(value: "Value") -> float:
    """The plotted number of a table value (NaN when there is none: matplotlib leaves a gap)."""
    if isinstance(value, Cell):
        return value.mean if value.n else math.nan
    if value is None or isinstance(value, str):
        return math.nan
    return float(getattr(value, "value", value))  # a Partial average or a float


def _pyplot():
    """matplotlib.pyplot on the Agg backend (imported here so that the tables need no matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_base2new(table: "Table", path: Path) -> Path:
    """Grouped bars (Base, Novel, HM) for every row of a base-to-novel table that has a number."""
    plt = _pyplot()
    rows = [r for r in table.rows if any(not math.isnan(_number(v)) for v in r[1:4])]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) + 2), 4.0))
    width = 0.27
    for i, (label, color) in enumerate((("Base", "C0"), ("Novel", "C1"), ("HM", "C2"))):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        ax.bar(xs, [_number(r[i + 1]) for r in rows], width, label=label, color=color)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([str(r[0]).split(" (")[0] for r in rows], rotation=45, ha="right")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_title(table.title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_few_shot(tables: list["Table"], path: Path) -> Path:
    """A panel per dataset row (and the average): accuracy vs shots, a line per few-shot table."""
    plt = _pyplot()
    # Panels for the rows with a number in some table (union, in table order): empty datasets are omitted.
    names = list(dict.fromkeys(str(row[0]) for table in tables for row in table.rows
                               if any(not math.isnan(_number(v)) for v in row[1:])))
    cols = min(4, len(names))
    n_rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(3.2 * cols, 2.6 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        for table in tables:
            shots = [int(c.split()[0]) for c in table.columns[1:]]
            row = next((r for r in table.rows if str(r[0]) == name), None)
            if row is not None:
                ax.plot(shots, [_number(v) for v in row[1:]], marker="o", ms=3,
                        label=table.title.split(": ", 1)[-1])
        ax.set_xscale("log", base=2)
        ax.set_xticks([1, 2, 4, 8, 16], labels=["1", "2", "4", "8", "16"])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("shots per class", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_tables(tables: list["Table"], out: Path) -> list[Path]:
    """Every plot the tables allow, written into ``out``; returns the PNG paths."""
    written = [plot_base2new(t, out / f"{t.name}.png") for t in tables
               if t.name.startswith("base2new_") and t.name != "base2new_summary"]
    few_shot = [t for t in tables if t.name.startswith("few_shot_")]
    if any(not math.isnan(_number(v)) for t in few_shot for row in t.rows for v in row[1:]):
        written.append(plot_few_shot(few_shot, out / "few_shot.png"))
    return written
