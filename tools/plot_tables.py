"""PNG plots of tools/make_tables.py's tables: Base / Novel / HM bars per base-to-novel setting, and few-shot
curves (a panel per dataset, a line per method). Imports only the table model, so make_tables can import it."""
from __future__ import annotations

import math
from pathlib import Path

from tools.result_tree import Cell, Table, Value


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
    few_shot = [t for t in tables if t.name.startswith("few_shot_")]
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
