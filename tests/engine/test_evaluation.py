"""The classification evaluator: official numbers, two-decimal result block, per-class accuracy, macro-F1."""
from __future__ import annotations

import json
import logging

import pytest
import torch

from engine.config import get_cfg_default
import random

from engine.evaluation import Classification, macro_f1


def _cfg(tmp_path, per_class=False):
    cfg = get_cfg_default()
    cfg.OUTPUT_DIR = str(tmp_path)
    cfg.TEST.PER_CLASS_RESULT = per_class
    return cfg


def _one_hot_logits(preds, num_classes):
    return torch.eye(num_classes)[torch.tensor(preds)]


@pytest.mark.parametrize("method", ["MaPLe", "CoOp"])
def test_official_results_are_reproduced(method, fixtures_dir, tmp_path):
    runs = json.loads((fixtures_dir / f"train_runs/caltech101/{method}/eval_results.json").read_text())
    for split, run in runs.items():
        ev = Classification(_cfg(tmp_path))
        logits = torch.tensor(run["logits"])  # (N, C)
        labels = torch.tensor(run["labels"])
        for start in range(0, len(labels), 7):  # several batches
            ev.process(logits[start:start + 7], labels[start:start + 7])
        res = ev.evaluate()
        ref = run["results"][0]
        assert list(res)[:3] == ["accuracy", "error_rate", "macro_f1"], split
        for k in ("accuracy", "error_rate", "macro_f1"):
            assert res[k] == pytest.approx(ref[k], abs=1e-9), (split, k)
        assert ev.total == run["n"]


def test_result_block_has_two_decimals(tmp_path, caplog):
    ev = Classification(_cfg(tmp_path))
    # 36 images, 21 correct, as the MaPLe base run: its block reads 58.33 / 41.67
    labels = [i % 6 for i in range(36)]
    preds = [y if i < 21 else (y + 1) % 6 for i, y in enumerate(labels)]
    ev.process(_one_hot_logits(preds, 6), torch.tensor(labels))
    with caplog.at_level(logging.INFO):
        ev.evaluate()
    text = caplog.text
    for line in ("=> result", "* total: 36", "* correct: 21", "* accuracy: 58.33%", "* error: 41.67%"):
        assert line in text
    assert "* macro_f1: " in text and text.split("* macro_f1: ")[1].split("%")[0].count(".") == 1
    assert len(text.split("* macro_f1: ")[1].split("%")[0].split(".")[1]) == 2


def test_macro_f1_label_sets():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 2, 1, 0]
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 1 fp 0 fn 1 -> 2/3; class 2 (only predicted): 0
    assert macro_f1(y_true, y_pred) == pytest.approx((0.5 + 2 / 3) / 2)  # official: labels of y_true
    assert macro_f1(y_true, y_pred, labels=[0, 1, 2]) == pytest.approx((0.5 + 2 / 3) / 3)  # sklearn default
    assert macro_f1([1, 1], [0, 0]) == 0.0
    with pytest.raises(ValueError):
        macro_f1([0], [0, 1])


def test_per_class_accuracy(tmp_path, caplog):
    lab2cname = {0: "cat", 1: "dog", 2: "emu"}
    ev = Classification(_cfg(tmp_path, per_class=True), lab2cname=lab2cname)
    labels = [0, 0, 0, 1, 1, 2]
    preds = [0, 0, 1, 1, 0, 2]
    ev.process(_one_hot_logits(preds, 3), torch.tensor(labels))
    with caplog.at_level(logging.INFO):
        res = ev.evaluate()
    assert res["perclass_accuracy"] == pytest.approx((200 / 3 + 50 + 100) / 3)
    assert "* class: 0 (cat)\ttotal: 3\tcorrect: 2\tacc: 66.67%" in caplog.text


def test_macro_f1_matches_the_per_class_definition():
    rng = random.Random(0)
    y_true = [rng.randrange(50) for _ in range(2000)]
    y_pred = [t if rng.random() < 0.6 else rng.randrange(60) for t in y_true]
    expected = []
    for c in sorted(set(y_true)):  # the definition, class by class
        tp = sum(t == c and p == c for t, p in zip(y_true, y_pred))
        fp = sum(t != c and p == c for t, p in zip(y_true, y_pred))
        fn = sum(t == c and p != c for t, p in zip(y_true, y_pred))
        expected.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    assert macro_f1(y_true, y_pred) == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    assert macro_f1(y_true, y_pred, labels=[0, 55]) == pytest.approx(expected[0] / 2, abs=1e-12)  # 55: never true


def test_bad_inputs(tmp_path):
    ev = Classification(_cfg(tmp_path))
    with pytest.raises(ValueError, match=r"\(B, C\)"):
        ev.process(torch.zeros(3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(RuntimeError, match="no sample"):
        ev.evaluate()
    with pytest.raises(ValueError, match="lab2cname"):
        Classification(_cfg(tmp_path, per_class=True))
