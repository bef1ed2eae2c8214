"""Average test results over the seed folders of an experiment (command-line compatible with the
official ``parse_test_res.py`` of CoOp/MaPLe).

Layout read::

    <directory>/seed1/{results.json | log.txt}
    <directory>/seed2/...
    # --multi-exp: <directory>/<experiment>/seed*/...

For each seed folder the numbers come from ``results.json`` when it is there (full precision, written by
our ``train.py``); otherwise from the last ``=> result`` block of ``log.txt``. A training log only counts
once it reached the "Finished training" line (older Dassl prints "Finish training"); ``--test-log``
accepts the blocks of an evaluation-only log instead, as the official flag does. When a block carries
``total`` and ``correct``, accuracy and error are recomputed from the counts, because the official logs
print them with one decimal. Spread is ``numpy.std`` (ddof=0), or ``1.96 * std / sqrt(n)`` with ``--ci95``.

Usage::

    python tools/parse_test_res.py output/caltech101/CoOp/rn50_16shots/nctx16_cscFalse_ctpend
    python tools/parse_test_res.py output/base2new/test_new/caltech101/shots_16/CoOp/vit_b16_ctxv1 --test-log
    python tools/parse_test_res.py output/caltech101/CoOp --multi-exp --ci95
    python tools/parse_test_res.py DIR --keyword macro_f1
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

RESULTS_FILE = "results.json"
DEFAULT_LOG = "log.txt"
_END_OF_TRAINING = re.compile(r"\bFinish(ed)? training\b")
_BLOCK_START = "=> result"
# "* name: value[%]"; Dassl prints counts with thousands separators ("* total: 50,000").
_METRIC_LINE = re.compile(r"\*\s+(\w+):\s*([-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*%?\s*$")
# results.json / evaluator spellings mapped onto the log's metric names.
_ALIASES = {"error_rate": "error", "acc": "accuracy"}
# Printed values are rounded to 1 or 2 decimals: a recomputed accuracy must agree with the print to this much.
_ROUNDING_SLACK = 0.051


class NoResultsError(RuntimeError):
    """Raised when a directory yields no result; the message names the directory and what was looked for."""


@dataclass
class RunResult:
    """The metrics (percentages, plus ``total``/``correct`` counts when known) of one seed folder."""

    source: Path
    metrics: dict[str, float]


@dataclass
class Summary:
    """Per-run results of one experiment and their mean and spread (std or 95% CI) per metric."""

    directory: Path
    runs: list[RunResult]
    mean: dict[str, float]
    spread: dict[str, float]
    skipped: list[str] = field(default_factory=list)


def _natural_key(path: Path) -> list[Any]:
    """Sort key that puts seed2 before seed10."""
    return [int(tok) if tok.isdigit() else tok for tok in re.split(r"(\d+)", path.name)]


def _refine_with_counts(block: dict[str, float]) -> dict[str, float]:
    """Recompute accuracy/error from total and correct when the printed (rounded) values agree with them."""
    total, correct = block.get("total"), block.get("correct")
    if not total or correct is None:
        return block
    exact = 100.0 * correct / total
    if "accuracy" in block and abs(block["accuracy"] - exact) > _ROUNDING_SLACK:
        return block  # not the plain correct/total accuracy: keep what was printed
    refined = dict(block)
    refined["accuracy"] = exact
    refined["error"] = 100.0 - exact
    return refined


def parse_log(path: str | Path, test_log: bool = False) -> dict[str, float] | None:
    """Metrics of the last ``=> result`` block of a log, or None when it has no eligible block.

    Without ``test_log`` only blocks after the end-of-training line count (an unfinished training run has
    no result); with it, every block counts. Each ``* name: value[%]`` line of the block becomes an entry.
    """
    armed = test_log
    last: dict[str, float] | None = None
    current: dict[str, float] | None = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            text = line.strip()
            if _END_OF_TRAINING.search(text):
                armed = True
            if text.endswith(_BLOCK_START):
                current = {} if armed else None
                continue
            match = _METRIC_LINE.search(text) if current is not None else None
            if match:
                current[_ALIASES.get(match.group(1), match.group(1))] = float(match.group(2).replace(",", ""))
                continue
            if current:
                last = current
            current = None
    if current:
        last = current
    return _refine_with_counts(last) if last else None


def _find_metrics(obj: Any) -> dict[str, float] | None:
    """Locate the metric dict inside a results.json payload (flat, or nested under a split/"results")."""
    if isinstance(obj, list):
        for item in reversed(obj):
            found = _find_metrics(item)
            if found:
                return found
        return None
    if not isinstance(obj, dict):
        return None
    flat = {
        _ALIASES.get(k, k): float(v)
        for k, v in obj.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if "accuracy" in flat:
        return flat
    preferred = [k for k in ("test", "results", "final") if k in obj]
    for key in preferred + [k for k in obj if k not in preferred]:
        found = _find_metrics(obj[key])
        if found:
            return found
    return None


def read_results_json(path: str | Path) -> dict[str, float] | None:
    """Test metrics stored in a ``results.json``; None when it holds no accuracy or only a *val* result
    (written after each epoch under ``TEST.FINAL_MODEL best_val``). Raises on bad JSON."""
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if isinstance(payload, dict) and payload.get("split", "test") != "test":
        return None
    metrics = _find_metrics(payload)
    return _refine_with_counts(metrics) if metrics else None


def _log_candidates(run_dir: Path, log_name: str) -> list[Path]:
    """The log and its rotated copies (``log.txt-<timestamp>`` when a folder is reused), oldest first."""
    rotated = sorted(p for p in run_dir.glob(f"{log_name}-*") if p.is_file())
    plain = run_dir / log_name
    return ([plain] if plain.is_file() else []) + rotated


def parse_run_dir(
    run_dir: str | Path, test_log: bool = False, log_name: str = DEFAULT_LOG
) -> tuple[RunResult | None, str]:
    """Result of one seed folder, and a note saying what was looked at when there is none."""
    run_dir = Path(run_dir)
    notes = []
    results_path = run_dir / RESULTS_FILE
    if results_path.is_file():
        try:
            metrics = read_results_json(results_path)
        except (OSError, ValueError) as exc:  # a corrupt file: fall back to the log, and say so
            metrics = None
            notes.append(f"unreadable {RESULTS_FILE} ({exc})")
        if metrics:
            return RunResult(results_path, metrics), ""
        if not notes:
            notes.append(f"{RESULTS_FILE} holds no test result")
    for log_path in reversed(_log_candidates(run_dir, log_name)):
        metrics = parse_log(log_path, test_log=test_log)
        if metrics:
            return RunResult(log_path, metrics), ""
    wanted = "an '=> result' block"
    if not test_log:
        wanted += " after 'Finished training' (an evaluation-only log needs --test-log)"
    notes.append(f"no {RESULTS_FILE} with an accuracy and no {log_name} with {wanted}")
    return None, f"{run_dir}: " + "; ".join(notes)


def _subdirs(directory: Path) -> list[Path]:
    """Non-hidden sub-folders in natural order."""
    found = (p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(found, key=_natural_key)


def find_run_dirs(directory: Path) -> list[Path]:
    """Seed folders of an experiment (natural order); the directory itself if it is a run folder."""
    subdirs = _subdirs(directory)
    if not subdirs and ((directory / RESULTS_FILE).is_file() or (directory / DEFAULT_LOG).is_file()):
        return [directory]
    return subdirs


def summarize(values: Sequence[float], ci95: bool = False) -> tuple[float, float]:
    """Mean and spread: numpy std (ddof=0, as the official script) or 1.96 * std / sqrt(n)."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(np.std(arr))
    return float(np.mean(arr)), (1.96 * std / math.sqrt(arr.size) if ci95 else std)


def parse_dir(
    directory: str | Path,
    keyword: str = "accuracy",
    test_log: bool = False,
    ci95: bool = False,
    log_name: str = DEFAULT_LOG,
) -> Summary:
    """Parse every seed folder of ``directory``; raises NoResultsError when no run has ``keyword``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NoResultsError(f"{directory} is not a directory")
    runs, skipped = [], []
    for run_dir in find_run_dirs(directory):
        run, note = parse_run_dir(run_dir, test_log=test_log, log_name=log_name)
        if run is not None and keyword in run.metrics:
            runs.append(run)
        else:
            skipped.append(note or f"{run.source}: no '{keyword}' in it")
    if not runs:
        wanted = f"'{keyword}' in {RESULTS_FILE} or in the final '=> result' block of {log_name}"
        if not test_log:
            wanted += " after 'Finished training' (add --test-log for evaluation-only runs)"
        raise NoResultsError(f"nothing found in {directory}: looked for {wanted} in its seed folders")
    # Summarise the keyword first, then every other metric that all runs report.
    names = [keyword] + [k for k in ("accuracy", "error", "macro_f1") if k != keyword]
    names = [n for n in names if all(n in r.metrics for r in runs)]
    stats = {n: summarize([r.metrics[n] for r in runs], ci95=ci95) for n in names}
    return Summary(
        directory,
        runs,
        {n: s[0] for n, s in stats.items()},
        {n: s[1] for n, s in stats.items()},
        skipped,
    )


def format_summary(summary: Summary) -> str:
    """The official report: one line per file, then mean +- spread per metric."""
    lines = [f"Parsing files in {summary.directory}"]
    for run in summary.runs:
        shown = [n for n in summary.mean if n in run.metrics]
        lines.append(f"file: {run.source}. " + " ".join(f"{n}: {run.metrics[n]:.2f}%." for n in shown))
    lines += ["===", f"Summary of directory: {summary.directory}"]
    lines += [f"* {n}: {summary.mean[n]:.2f}% +- {summary.spread[n]:.2f}%" for n in summary.mean]
    lines.append("===")
    return "\n".join(lines)


def parse_multi_exp(directory: str | Path, **kwargs: Any) -> tuple[list[Summary], list[str]]:
    """parse_dir on each experiment folder of ``directory``; returns summaries and the failures' messages."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NoResultsError(f"{directory} is not a directory")
    summaries, failures = [], []
    for exp_dir in _subdirs(directory):
        try:
            summaries.append(parse_dir(exp_dir, **kwargs))
        except NoResultsError as exc:
            failures.append(str(exc))
    if not summaries:
        reasons = " | ".join(failures or ["it has no sub-folder"])
        raise NoResultsError(f"no experiment folder of {directory} has results: {reasons}")
    return summaries, failures


def build_parser() -> argparse.ArgumentParser:
    """The official flags, plus --log-name."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("directory", type=str, help="folder of seed folders (or of experiments with --multi-exp)")
    add("--ci95", action="store_true", help="report the 95%% confidence interval instead of std")
    add("--test-log", action="store_true", help="parse evaluation-only logs (no training)")
    add("--multi-exp", action="store_true", help="directory holds several experiments")
    add("--keyword", default="accuracy", type=str, help="metric to report (accuracy, error, macro_f1)")
    add("--log-name", default=DEFAULT_LOG, type=str, help="log file name in each seed folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (1 when nothing is found)."""
    args = build_parser().parse_args(argv)
    options = dict(keyword=args.keyword, test_log=args.test_log, ci95=args.ci95, log_name=args.log_name)
    try:
        if args.multi_exp:
            summaries, failures = parse_multi_exp(args.directory, **options)
        else:
            summaries, failures = [parse_dir(args.directory, **options)], []
    except NoResultsError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    for summary in summaries:
        for note in summary.skipped:
            print(f"WARNING: skipped {note}", file=sys.stderr)
        print(format_summary(summary))
    for failure in failures:
        print(f"WARNING: {failure}", file=sys.stderr)
    if args.multi_exp:
        print("Average performance")
        for name in summaries[0].mean:
            values = [s.mean[name] for s in summaries if name in s.mean]
            print(f"* {name}: {np.mean(values):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
