"""End to end through ``train.main``: CoOp base-to-novel on the synthetic Caltech101 with a tiny random CLIP."""
from __future__ import annotations

import json
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def _argv(root, out, weights, subsample, *extra):
    return ["--root", str(root), "--seed", "1", "--trainer", "CoOp",
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers/CoOp/vit_b16.yaml"), "--output-dir", str(out), *extra,
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", subsample, "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2",
            "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", "MODEL.BACKBONE.PATH", str(weights)]


def test_coop_base_to_new(data_root, tmp_path, tiny_clip_path):
    import train

    out = tmp_path / "train_base"
    train.main(_argv(data_root, out, tiny_clip_path, "base"))
    log = (out / "log.txt").read_text()
    assert "Finished training" in log and "* accuracy:" in log
    assert (out / "config.yaml").is_file()
    res = json.loads((out / "results.json").read_text())
    assert res["num_images"] == 36 and res["accuracy"] == 100.0 * res["correct"] / 36
    assert f"* accuracy: {res['accuracy']:.2f}%" in log and f"* correct: {res['correct']}" in log  # same test run
    ckpt = torch.load(out / "prompt_learner" / "model.pth.tar-2", map_location="cpu", weights_only=False)
    assert set(ckpt["state_dict"]) == {"ctx"} and ckpt["epoch"] == 2
    assert (out / "prompt_learner" / "checkpoint").read_text().strip().endswith("model.pth.tar-2")

    test_out = tmp_path / "test_new"
    train.main(_argv(data_root, test_out, tiny_clip_path, "new", "--eval-only", "--model-dir", str(out),
                     "--load-epoch", "2"))
    res_new = json.loads((test_out / "results.json").read_text())
    assert res_new["num_images"] == 30

    # Re-running into a finished folder resumes from the last checkpoint instead of training again.
    before = (out / "prompt_learner" / "model.pth.tar-2").stat().st_mtime_ns
    train.main(_argv(data_root, out, tiny_clip_path, "base"))
    assert (out / "prompt_learner" / "model.pth.tar-2").stat().st_mtime_ns == before


def test_zeroshot_eval_only(data_root, tmp_path, tiny_clip_path):
    import train

    out = tmp_path / "zs"
    argv = _argv(data_root, out, tiny_clip_path, "all", "--eval-only")
    argv[argv.index("--trainer") + 1] = "ZeroshotCLIP"
    train.main(argv)
    res = json.loads((out / "results.json").read_text())
    assert res["num_images"] == 66
