"""An official-format checkpoint (../shared/parity/train_runs) evaluates to the recorded accuracy and predictions."""
from __future__ import annotations

import json

import pytest

from .helpers import build, caltech_argv

RUNS = {
    # name: (registered folder, config, extra opts)
    "CoOp": ("prompt_learner", "CoOp/vit_b16.yaml",
             ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32"]),
}


@pytest.mark.parametrize("subsample", ["base", "new"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_official_checkpoint_reproduces_accuracy(name, subsample, parity_dir, data_root, vit_b16_32px_path,
                                                 tmp_path):
    folder, config, extra = RUNS[name]
    run_dir = parity_dir / "train_runs" / "caltech101" / name
    recorded = json.loads((run_dir / "eval_results.json").read_text())[f"test{subsample}"]
    argv = caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, name, config, 32, extra)
    argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] = subsample
    argv += ["TEST.SAVE_PREDICTIONS", "True"]
    trainer = build(argv)
    trainer.load_model(str(run_dir), epoch=2)
    result = trainer.test()
    assert result["accuracy"] == pytest.approx(recorded["results"][0]["accuracy"], abs=1e-6)
    assert result["macro_f1"] == pytest.approx(recorded["results"][0]["macro_f1"], abs=1e-6)
    preds = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [p["pred"] for p in preds] == recorded["preds"]
    assert [p["label"] for p in preds] == recorded["labels"]
    dataset_dir = data_root / "caltech-101"
    assert [str(p["impath"]) for p in preds] == [str(dataset_dir / rel) for rel in recorded["impaths"]]
