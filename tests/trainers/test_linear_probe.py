"""LinearProbeCLIP against the official CoOp lpclip run (tests/fixtures/feature_methods/README.md): the image
features of every split, and the search over C with the fits it makes, step by step."""
from __future__ import annotations

from typing import List

import numpy as np
import pytest
import torch

from tests.trainers.helpers import build, caltech_argv
from trainers.linear_probe import LinearHead, fit_logistic, search_strength


@pytest.fixture(scope="module")
def fx(fixtures_dir):
    return torch.load(fixtures_dir / "feature_methods" / "lpclip_caltech101_rn50.pt", weights_only=True)


def _official_draw(train_labels: np.ndarray, val_labels: np.ndarray, shots: int, run: int):
    """lpclip's own few-shot draw (np.random seeded by the run; val shots {1:1, 2:2, 4:4, 8:4})."""
    np.random.seed(run)
    classes = np.unique(train_labels)
    train = [i for c in classes for i in np.random.choice(np.where(train_labels == c)[0], shots, replace=False)]
    val = [i for c in classes for i in np.random.choice(np.where(val_labels == c)[0], min(shots, 4), replace=False)]
    return train, val


def test_features_equal_the_official(fx, data_root, rn50_64px_path, tmp_path):
    argv = caltech_argv(data_root, tmp_path / "out", rn50_64px_path, "LinearProbeCLIP", "LinearProbeCLIP/rn50.yaml",
                        64, ["DATALOADER.FEATURE_CACHE_DIR", str(tmp_path / "cache")])
    argv[argv.index("DATASET.NUM_SHOTS") + 1] = "-1"  # lpclip extracts the whole splits
    argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] = "all"
    trainer = build(argv)
    feats, labels = trainer.split_features("test")  # every split goes through the same path: one is checked
    ref = fx["test_features"]
    assert torch.equal(labels, fx["test_labels"])
    assert (feats - ref).abs().max() <= 1e-5 * ref.abs().max()
    # a second trainer reads the cached files instead of running the tower
    trainer.encode_images = None
    trainer._feature_memo.clear()
    assert torch.equal(trainer.split_features("test")[0], feats)


@pytest.mark.parametrize("shots", [1, 2, 4, 8])
def test_search_and_fits_equal_the_official(fx, shots):
    """Run 1 of each shot count: every fit's C and validation predictions, the C kept by every step, the test
    predictions of every step and the last step's decision values (from the official features and draw)."""
    tr_x, tr_y = fx["train_features"].double().numpy(), fx["train_labels"].numpy()
    va_x, va_y = fx["val_features"].double().numpy(), fx["val_labels"].numpy()
    te_x = fx["test_features"].double()
    s, run, fits_per_run = fx["shots"].index(shots), 1, 7 + 2 * fx["num_step"]
    first = (s * fx["num_runs"] + run - 1) * fits_per_run
    train, val = _official_draw(tr_y, va_y, shots, run)
    seen: List[float] = []
    classifiers = {}

    def score(c: float) -> float:
        clf = fit_logistic(tr_x[train], tr_y[train], c, 1000)
        pred = clf.predict(va_x[val])
        assert pred.tolist() == fx["fit_val_pred"][first + len(seen)], f"fit {len(seen)} (C={c})"
        seen.append(c)
        classifiers[c] = clf
        return float((pred == va_y[val]).mean())

    best, kept = search_strength(score, [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6], fx["num_step"])
    assert seen == fx["fit_C"][first:first + fits_per_run].tolist()
    assert kept == fx["step_C"][s, run - 1].tolist() and best == kept[-1]
    head = LinearHead(te_x.shape[1], 11, normalize=False)
    for step, c in enumerate(kept):
        head.set_from(classifiers[c])
        logits = head(te_x)
        assert logits.argmax(1).tolist() == fx["step_test_pred"][s, run - 1, step].tolist()
    torch.testing.assert_close(logits, fx["last_step_test_decision"][s, run - 1], rtol=0, atol=1e-9)
