"""tools/parse_test_res.py: known logs and results files -> known numbers; nothing found -> clear error."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tools.parse_test_res import NoResultsError, main, parse_dir, parse_log, read_results_json

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "parse_test_res.py"


def _log_text(acc: float, err: float, f1: float, *, decimals: int = 2, finished: str | None = "Finished training",
              total: int | None = None, correct: int | None = None) -> str:
    """A log in the Dassl/ours layout: a val block during training, then the final test block."""
    lines = ["epoch [1/2] batch [1/1] loss 1.0", "=> result", "* accuracy: 1.00%", "* error: 99.00%"]
    if finished:
        lines.append(finished)
    lines += ["Deploy the last-epoch model", "Evaluate on the *test* set", "=> result"]
    if total is not None:
        lines += [f"* total: {total:,}", f"* correct: {correct:,}"]
    lines += [f"* accuracy: {acc:.{decimals}f}%", f"* error: {err:.{decimals}f}%", f"* macro_f1: {f1:.{decimals}f}%"]
    lines.append("Elapsed: 0:00:10")
    return "\n".join(lines) + "\n"


def _make_seed_tree(root: Path, accs: list[float]) -> Path:
    for seed, acc in enumerate(accs, start=1):
        run = root / f"seed{seed}"
        run.mkdir(parents=True)
        (run / "log.txt").write_text(_log_text(acc, 100 - acc, acc - 40))  # exact in 2 decimals
    return root


def test_synthetic_tree_mean_and_std(tmp_path):
    accs = [91.81, 92.01, 92.17]
    summary = parse_dir(_make_seed_tree(tmp_path / "exp", accs))
    assert [r.metrics["accuracy"] for r in summary.runs] == accs
    assert [r.source.parent.name for r in summary.runs] == ["seed1", "seed2", "seed3"]
    assert summary.mean["accuracy"] == pytest.approx(np.mean(accs), abs=1e-12)
    assert summary.spread["accuracy"] == pytest.approx(np.std(accs), abs=1e-12)  # ddof=0 as the official
    assert summary.mean["error"] == pytest.approx(100 - np.mean(accs), abs=1e-12)
    assert summary.mean["macro_f1"] == pytest.approx(np.mean(accs) - 40, abs=1e-12)


def test_ci95_and_keyword(tmp_path):
    accs = [50.0, 60.0, 70.0, 80.0]
    root = _make_seed_tree(tmp_path / "exp", accs)
    summary = parse_dir(root, ci95=True, keyword="macro_f1")
    assert list(summary.mean)[0] == "macro_f1"
    f1 = np.array(accs) - 40
    assert summary.spread["macro_f1"] == pytest.approx(1.96 * np.std(f1) / math.sqrt(4), abs=1e-12)
    assert summary.spread["accuracy"] == pytest.approx(1.96 * np.std(accs) / 2, abs=1e-12)


def test_cli_output_format(tmp_path, capsys):
    root = _make_seed_tree(tmp_path / "exp", [91.81, 92.01, 92.17])
    assert main([str(root)]) == 0
    out = capsys.readouterr().out
    assert f"file: {root / 'seed1' / 'log.txt'}. accuracy: 91.81%. error: 8.19%. macro_f1: 51.81%." in out
    assert f"Summary of directory: {root}" in out
    assert "* accuracy: 92.00% +- 0.15%" in out
    assert "* error: 8.00% +- 0.15%" in out


@pytest.mark.parametrize("signal", ["Finished training", "Finish training"])
def test_training_log_needs_end_signal(tmp_path, signal):
    log = tmp_path / "log.txt"
    log.write_text(_log_text(40.0, 60.0, 30.0, decimals=1, finished=signal))
    assert parse_log(log) == {"accuracy": 40.0, "error": 60.0, "macro_f1": 30.0}
    log.write_text(_log_text(40.0, 60.0, 30.0, finished=None))  # unfinished run: the val block does not count
    assert parse_log(log) is None
    assert parse_log(log, test_log=True)["accuracy"] == 40.0  # --test-log: last block of the log


def test_counts_refine_rounded_accuracy(tmp_path):
    log = tmp_path / "log.txt"
    log.write_text(_log_text(58.3, 41.7, 51.0, decimals=1, total=36, correct=21))
    metrics = parse_log(log)
    assert metrics["accuracy"] == pytest.approx(100 * 21 / 36)
    assert metrics["error"] == pytest.approx(100 * 15 / 36)
    assert metrics["macro_f1"] == 51.0
    assert (metrics["total"], metrics["correct"]) == (36, 21)
    # Thousands separators (Dassl prints "* total: 50,000") are read too.
    log.write_text(_log_text(70.01, 29.99, 60.0, total=50000, correct=35005))
    assert parse_log(log)["accuracy"] == pytest.approx(70.01)


@pytest.mark.parametrize("method,acc,f1", [("MaPLe", 21 / 36, 51.0), ("CoOp", 11 / 36, 17.1)])
def test_official_logs(fixtures_dir, tmp_path, method, acc, f1):
    src = fixtures_dir / "train_runs" / "caltech101" / method
    train = tmp_path / "train" / "seed1"
    test = tmp_path / "test" / "seed1"
    train.mkdir(parents=True)
    test.mkdir(parents=True)
    shutil.copy(src / "log.txt", train / "log.txt")
    shutil.copy(src / "log_eval_base.txt", test / "log.txt")
    summary = parse_dir(tmp_path / "train")
    assert round(summary.mean["accuracy"], 2) == {"MaPLe": 58.33, "CoOp": 30.56}[method]
    assert summary.mean["accuracy"] == pytest.approx(100 * acc)
    assert summary.mean["macro_f1"] == f1
    # The eval-only log has no end-of-training line: found only with --test-log (as the official flag).
    with pytest.raises(NoResultsError, match="--test-log"):
        parse_dir(tmp_path / "test")
    assert parse_dir(tmp_path / "test", test_log=True).mean["accuracy"] == pytest.approx(100 * acc)


def test_official_new_log(fixtures_dir, tmp_path):
    run = tmp_path / "exp" / "seed1"
    run.mkdir(parents=True)
    shutil.copy(fixtures_dir / "train_runs" / "caltech101" / "CoOp" / "log_eval_new.txt", run / "log.txt")
    summary = parse_dir(tmp_path / "exp", test_log=True)
    assert summary.mean["accuracy"] == pytest.approx(100 * 2 / 30)
    assert summary.runs[0].source == run / "log.txt"


def test_results_json_only_and_preferred(tmp_path):
    plain = tmp_path / "exp" / "seed1"
    test_split = tmp_path / "exp" / "seed2"
    both = tmp_path / "exp" / "seed3"
    for d in (plain, test_split, both):
        d.mkdir(parents=True)
    (plain / "results.json").write_text(json.dumps({"accuracy": 30.555555, "error": 69.444445, "macro_f1": 17.1}))
    (test_split / "results.json").write_text(json.dumps(
        {"split": "test", "accuracy": 40.0, "error_rate": 60.0, "macro_f1": 20.0, "total": 10}))
    (both / "results.json").write_text(json.dumps({"accuracy": 50.0, "error": 50.0, "macro_f1": 30.0}))
    (both / "log.txt").write_text(_log_text(10.0, 90.0, 5.0))  # a stale log: results.json wins
    summary = parse_dir(tmp_path / "exp")
    assert [r.source.name for r in summary.runs] == ["results.json"] * 3
    assert [r.metrics["accuracy"] for r in summary.runs] == [30.555555, 40.0, 50.0]
    assert summary.mean["error"] == pytest.approx(np.mean([69.444445, 60.0, 50.0]))
    assert summary.spread["macro_f1"] == pytest.approx(np.std([17.1, 20.0, 30.0]))
    assert read_results_json(test_split / "results.json")["error"] == 60.0


def test_results_json_as_our_train_py_writes_it(tmp_path):
    run = tmp_path / "exp" / "seed1"
    run.mkdir(parents=True)
    payload = {"accuracy": 100 * 21 / 36, "error_rate": 100 * 15 / 36, "macro_f1": 50.96, "num_images": 36}
    (run / "results.json").write_text(json.dumps(payload))
    (run / "log.txt").write_text(_log_text(58.33, 41.67, 50.96))
    summary = parse_dir(tmp_path / "exp")
    assert summary.runs[0].source.name == "results.json"
    assert summary.mean == {"accuracy": payload["accuracy"], "error": payload["error_rate"], "macro_f1": 50.96}


def test_val_results_json_is_not_a_final_result(tmp_path):
    run = tmp_path / "exp" / "seed1"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({"accuracy": 90.0, "split": "val", "total": 10, "correct": 9}))
    with pytest.raises(NoResultsError):
        parse_dir(tmp_path / "exp")  # training still running (best_val writes val results each epoch)
    (run / "log.txt").write_text(_log_text(33.0, 67.0, 20.0))
    assert parse_dir(tmp_path / "exp").runs[0].metrics["accuracy"] == 33.0


def test_corrupt_results_json_falls_back_to_log(tmp_path):
    run = tmp_path / "exp" / "seed1"
    run.mkdir(parents=True)
    (run / "results.json").write_text("{not json")
    (run / "log.txt").write_text(_log_text(33.0, 67.0, 20.0))
    assert parse_dir(tmp_path / "exp").runs[0].metrics["accuracy"] == 33.0


def test_partial_tree_warns_and_rotated_log_wins(tmp_path, capsys):
    root = _make_seed_tree(tmp_path / "exp", [60.0, 70.0])
    (root / "seed3").mkdir()  # a run that never finished
    (root / "seed2" / "log.txt-2024-01-01-00-00-00").write_text(_log_text(75.0, 25.0, 40.0))  # resumed later
    assert main([str(root)]) == 0
    captured = capsys.readouterr()
    assert "seed3" in captured.err and "no results.json" in captured.err
    assert "* accuracy: 67.50% +- 7.50%" in captured.out


def test_multi_exp(tmp_path, capsys):
    _make_seed_tree(tmp_path / "all" / "exp-1", [60.0, 62.0])
    _make_seed_tree(tmp_path / "all" / "exp-2", [80.0, 84.0])
    (tmp_path / "all" / "exp-3").mkdir()
    assert main([str(tmp_path / "all"), "--multi-exp"]) == 0
    captured = capsys.readouterr()
    assert "Average performance\n* accuracy: 71.50%" in captured.out
    assert "exp-3" in captured.err


@pytest.mark.parametrize("make", ["empty", "missing", "unfinished"])
def test_nothing_found_is_a_clear_error(tmp_path, make):
    target = tmp_path / "exp"
    if make != "missing":
        target.mkdir()
    if make == "unfinished":
        (target / "seed1").mkdir()
        (target / "seed1" / "log.txt").write_text("epoch [1/200] loss 2.3\n")
    proc = subprocess.run([sys.executable, str(TOOL), str(target)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"ERROR: {target}" in proc.stderr
    with pytest.raises(NoResultsError, match=str(target)):
        parse_dir(target)
    with pytest.raises(NoResultsError):
        parse_dir(target, test_log=True)


def test_multi_exp_nothing_found(tmp_path, capsys):
    (tmp_path / "all" / "exp-1").mkdir(parents=True)
    assert main([str(tmp_path / "all"), "--multi-exp"]) == 1
    assert "no experiment folder" in capsys.readouterr().err
