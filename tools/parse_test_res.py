"""Mean and spread of the test results of an experiment's seed folders (same arguments and report as the
official parse_test_res.py of CoOp/MaPLe).

A seed folder's result is its ``results.json`` (full precision), else the last ``=> result`` block of its
``log.txt`` after the end of training (any block with ``--test-log``), where ``total`` and ``correct`` (when
printed) give the exact accuracy behind the rounded one. The spread is ``numpy.std`` (ddof=0), or
``1.96 * std / sqrt(n)`` with ``--ci95``.

    python tools/parse_test_res.py output/base2new/test_new/caltech101/shots_16/CoOp/vit_b16_ctxv1 --test-log
    python tools/parse_test_res.py output/caltech101/CoOp --multi-exp --ci95
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

RESULTS_FILE = "results.json"
LOG_FILE = "log.txt"
_END_OF_TRAINING = re.compile(r"\bFinish(ed)? training\b")  # older Dassl prints "Finish training"
_BLOCK_START = "=> result"
# "* name: value[%]"; Dassl prints counts with thousands separators ("* total: 50,000").
_METRIC_LINE = re.compile(r"\*\s+(\w+):\s*([-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*%?\s*$")
_ALIASES = {"error_rate": "error", "acc": "accuracy"}  # results.json spellings -> the log's names
_ROUNDING_SLACK = 0.051  # prints round to 1 or 2 decimals: a recomputed accuracy agrees with them to this much


class NoResultsError(RuntimeError):
    """A directory yields no result; the message names it and what was looked for."""


@dataclass
class RunResult:
    source: Path
    metrics: dict[str, float]  # percentages, plus the total/correct counts when known


@dataclass
class Summary:
    directory: Path
    runs: list[RunResult]
    mean: dict[str, float]
    spread: dict[str, float]  # std, or the 95% CI half-width
    skipped: list[str]


def parse_log(path: str | Path, test_log: bool = False) -> dict[str, float] | None:
    """Metrics of the last ``=> result`` block of a log (after the end-of-training line unless ``test_log``),
    or None: an unfinished training run has no result."""
    armed, last, current = test_log, None, None
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
            last = current or last
            current = None
    last = current or last
    if not last or not last.get("total") or "correct" not in last:
        return last
    exact = 100.0 * last["correct"] / last["total"]
    if "accuracy" in last and abs(last["accuracy"] - exact) > _ROUNDING_SLACK:
        return last  # not the plain correct/total accuracy: keep what was printed
    return {**last, "accuracy": exact, "error": 100.0 - exact}


def read_results_json(path: str | Path) -> dict[str, float] | None:
    """The numbers of a ``results.json`` (train.py writes one flat object); None for a *val* result
    (``TEST.FINAL_MODEL best_val`` writes one after each epoch) or a file without accuracy. Raises on bad JSON."""
    with open(path, encoding="utf-8") as handle:
        payload = json.load(handle)
    if not isinstance(payload, dict) or payload.get("split", "test") != "test":
        return None
    metrics = {_ALIASES.get(k, k): float(v) for k, v in payload.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return metrics if "accuracy" in metrics else None


def parse_run_dir(run_dir: str | Path, test_log: bool = False) -> tuple[RunResult | None, str]:
    """Result of one seed folder, or None and a note saying what was looked at."""
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
        notes = notes or [f"{RESULTS_FILE} holds no test result"]
    # The plain log, then the copies a reused folder rotated away (log.txt-<timestamp>): the last with a result wins.
    logs = [run_dir / LOG_FILE] if (run_dir / LOG_FILE).is_file() else []
    for log_path in reversed(logs + sorted(p for p in run_dir.glob(f"{LOG_FILE}-*") if p.is_file())):
        metrics = parse_log(log_path, test_log=test_log)
        if metrics:
            return RunResult(log_path, metrics), ""
    notes.append(f"no {RESULTS_FILE} with an accuracy and no {_wanted(test_log)}")
    return None, f"{run_dir}: " + "; ".join(notes)


def _wanted(test_log: bool) -> str:
    return f"'=> result' block in {LOG_FILE}" + ("" if test_log else " after 'Finished training' (evaluation-only "
                                                                     "runs need --test-log)")


def read_runs(run_dirs: Sequence[Path], keyword: str = "accuracy",
              test_log: bool = False) -> tuple[dict[Path, RunResult], dict[Path, str]]:
    """The folders' results that have ``keyword``, and why each other folder has none."""
    runs, problems = {}, {}
    for run_dir in run_dirs:
        run, note = parse_run_dir(run_dir, test_log=test_log)
        if run is not None and keyword in run.metrics:
            runs[run_dir] = run
        else:
            problems[run_dir] = note or f"{run.source}: no '{keyword}' in it"
    return runs, problems


def _subdirs(directory: Path) -> list[Path]:
    found = (p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(found, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])  # seed2<10


def parse_dir(directory: str | Path, keyword: str = "accuracy", test_log: bool = False,
              ci95: bool = False) -> Summary:
    """Every seed folder of ``directory`` (or the directory itself when it is one run) and the mean and spread
    of each metric all runs have, ``keyword`` first."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NoResultsError(f"{directory} is not a directory")
    run_dirs = _subdirs(directory)
    if not run_dirs and ((directory / RESULTS_FILE).is_file() or (directory / LOG_FILE).is_file()):
        run_dirs = [directory]
    found, problems = read_runs(run_dirs, keyword, test_log)
    runs, skipped = list(found.values()), list(problems.values())
    if not runs:
        raise NoResultsError(f"{directory}: no seed folder has a result; looked for '{keyword}' in {RESULTS_FILE} "
                             f"or in the last {_wanted(test_log)}")
    summary = Summary(directory, runs, {}, {}, skipped)
    for name in dict.fromkeys([keyword, "accuracy", "error", "macro_f1"]):
        if all(name in r.metrics for r in runs):
            values = np.asarray([r.metrics[name] for r in runs], dtype=np.float64)
            summary.mean[name], std = float(np.mean(values)), float(np.std(values))
            summary.spread[name] = 1.96 * std / math.sqrt(values.size) if ci95 else std
    return summary


def format_summary(summary: Summary) -> str:
    """The official report layout: a line per file, then mean +- spread per metric."""
    lines = [f"Parsing files in {summary.directory}"]
    for run in summary.runs:
        shown = [n for n in summary.mean if n in run.metrics]
        lines.append(f"file: {run.source}. " + " ".join(f"{n}: {run.metrics[n]:.2f}%." for n in shown))
    lines += ["===", f"Summary of directory: {summary.directory}"]
    lines += [f"* {n}: {summary.mean[n]:.2f}% +- {summary.spread[n]:.2f}%" for n in summary.mean]
    return "\n".join(lines + ["==="])


def main(argv: Sequence[str] | None = None) -> int:
    """Returns the exit status: 1 when nothing is found."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("directory", type=str, help="an experiment's folder of seed folders (with --multi-exp: of experiments)")
    add("--ci95", action="store_true", help="spread as the half-width of a 95%% confidence interval, not std")
    add("--test-log", action="store_true", help="the logs are from evaluation-only runs: take their last result")
    add("--multi-exp", action="store_true", help="each sub-folder is an experiment: report each and their mean")
    add("--keyword", default="accuracy", type=str, help="metric to report first (accuracy, error, macro_f1)")
    args = parser.parse_args(argv)
    options = dict(keyword=args.keyword, test_log=args.test_log, ci95=args.ci95)
    directory = Path(args.directory)
    summaries, failures = [], []
    try:
        if not args.multi_exp:
            summaries.append(parse_dir(directory, **options))
        elif not directory.is_dir():
            raise NoResultsError(f"{directory} is not a directory")
        else:
            for exp_dir in _subdirs(directory):
                try:
                    summaries.append(parse_dir(exp_dir, **options))
                except NoResultsError as exc:  # one experiment without results does not hide the others
                    failures.append(str(exc))
            if not summaries:
                reasons = " | ".join(failures or ["it has no sub-folder"])
                raise NoResultsError(f"no experiment folder of {directory} has results: {reasons}")
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
            print(f"* {name}: {np.mean([s.mean[name] for s in summaries if name in s.mean]):.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
