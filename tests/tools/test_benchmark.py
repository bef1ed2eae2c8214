"""tools/benchmark.py on the tiny CLIP: report keys, equal logits of both arms, FLOP formula, inputs.

No timing assertion here: speed claims come from running the tool, never from a timed unit test.
"""
from __future__ import annotations

import json

import pytest
import torch

from tools.benchmark import (METHODS, ArmSpec, Plan, build_argv, format_table, imagenet_length_names,
                             run_benchmark, spawn_arm, step_flops, tower_flops)
from tools.make_toy_dataset import CALTECH101_CLASSNAMES, make_toy_dataset

HEADLINE = ("maple_train_speedup", "cocoop_train_speedup", "eval_vs_image_floor", "maple_memory_ratio",
            "max_logit_diff")


def test_caltech_names_are_coop_split_order(tmp_path, fixtures_dir):
    assert len(CALTECH101_CLASSNAMES) == len(set(CALTECH101_CLASSNAMES)) == 100
    assert CALTECH101_CLASSNAMES[:5] == ["face", "leopard", "motorbike", "accordion", "airplane"]
    # the official split's labels (a subset of the classes in the golden fixture) follow the same order
    official = json.loads((fixtures_dir / "splits_caltech101.json").read_text())["cases"]["shots1_seed1_all"]
    assert official["classnames"] == sorted(official["classnames"], key=CALTECH101_CLASSNAMES.index)
    with pytest.raises(ValueError, match="between 2 and 100"):
        make_toy_dataset(tmp_path, n_classes=101)


def test_imagenet_length_names_distinct_and_deterministic():
    names = imagenet_length_names(1000)
    assert len(set(names)) == 1000 and names == imagenet_length_names(1000)
    words = [len(n.split()) for n in names]
    assert max(words) == 4 and 1.5 < sum(words) / len(words) < 2.5


def test_flop_formula_matches_hand_count():
    # one block, width 8, 2 sequences of 3 tokens: linear 24*64*6 = 9216, attention 4*3*8*6 = 576
    assert tower_flops(2, 3, 8, 1, backward=False) == 9216 + 576
    assert tower_flops(2, 3, 8, 1, backward=True) == 2 * 9216 + 3 * 576
    dims = {"resolution": 32, "patch": 16, "vision_width": 8, "vision_layers": 1, "text_width": 8, "text_layers": 1}
    f = step_flops(dims, batch=2, prompts=2, text_length=3, vision_prompts=0, image_backward=False,
                   text_backward=True)
    # image: 1 + 2*2 = 5 tokens per image; patch conv 2 * 2 images * 4 patches * 768 inputs * 8 outputs
    assert f["image"] == 2 * 2 * 4 * 768 * 8 + tower_flops(2, 5, 8, 1, False)
    assert f["total"] == f["image"] + 2 * 9216 + 3 * 576


def test_arm_argv_selects_the_paths():
    spec = ArmSpec(method="CoCoOp", arm="straight", data_root="/d", weights="/w.pt", output_dir="/o")
    argv = build_argv(spec)
    for key in ("MODEL.TRIM_TEXT", "TEST.CACHE_TEXT", "TRAINER.COCOOP.BATCHED_TEXT"):
        assert argv[argv.index(key) + 1] == "False"
    assert argv[argv.index("TRAINER.COCOOP.PREC") + 1] == "fp32"
    ours = build_argv(ArmSpec(method="MaPLe", arm="ours", data_root="/d", weights="/w.pt", output_dir="/o"))
    assert ours[ours.index("MODEL.TRIM_TEXT") + 1] == "True" and "TRAINER.COCOOP.BATCHED_TEXT" not in ours
    cuda = build_argv(ArmSpec(method="MaPLe", arm="ours", data_root="/d", weights="/w.pt", output_dir="/o",
                              device="cuda"))
    assert "TRAINER.MAPLE.PREC" not in cuda and cuda[cuda.index("USE_CUDA") + 1] == "True"  # the config's PREC


def test_every_benchmarked_method_gets_a_valid_command_line_at_fp32_on_cpu(tmp_path):
    """Each method's arm command line merges (config file and overrides) and sets its own node's PREC."""
    import train
    from engine import TRAINER_REGISTRY

    for method in METHODS:
        argv = build_argv(ArmSpec(method=method, arm="ours", data_root=str(tmp_path), weights="/w.pt",
                                  output_dir=str(tmp_path / "o")))
        cfg = train.setup_cfg(train.build_parser().parse_args(argv))
        assert cfg.TRAINER.NAME == method and cfg.TRAINER[TRAINER_REGISTRY.get(method).CFG_NODE].PREC == "fp32"


def test_toy_dataset_with_imagenet_length_names(tmp_path):
    dataset = make_toy_dataset(tmp_path, per_class=8, size=8, classnames=["a b", "c"])
    split = json.loads((dataset / "split_zhou_Caltech101.json").read_text())
    assert [len(split[k]) for k in ("train", "val", "test")] == [8, 4, 4]
    assert split["test"][:3] == [["a_b/image_0007.jpg", 0, "a b"], ["a_b/image_0008.jpg", 0, "a b"],
                                 ["c/image_0007.jpg", 1, "c"]]
    assert (dataset / "101_ObjectCategories" / "a_b" / "image_0007.jpg").is_file()


def test_benchmark_report_on_tiny_clip(tiny_clip_path, tmp_path):
    plans = {"MaPLe": Plan(reps=1, eval_images=6, straight_eval_images=6, eval_reps=2),
             "CoCoOp": Plan(reps=1, eval_images=2, straight_eval_images=2),
             "CoOp": Plan(reps=1, eval_images=0, straight_eval_images=0, check_images=3)}
    report = run_benchmark([3], ["MaPLe", "CoCoOp", "CoOp"], plans, tmp_path, weights=tiny_clip_path,
                           resolution=32, local=True)
    assert all(report[k] is not None for k in HEADLINE)
    assert report["max_logit_diff"] < 1e-4
    results = report["methods"]["classes_3"]
    maple = results["MaPLe"]
    assert maple["text_length_full"] == 77 and maple["text_length_trimmed"] < 77
    assert maple["eval"]["images"] == 6 and maple["train"]["first_loss_diff"] < 1e-5
    assert len(maple["eval"]["times_s"]["ours"]) == len(maple["eval"]["times_s"]["image_floor"]) == 2
    assert len(maple["eval"]["times_s"]["straight"]) == 1
    assert results["CoCoOp"]["image_conditional"] and results["CoCoOp"]["prompts_per_step"] == 3  # B=1 x C=3
    assert results["CoCoOp"]["eval"]["image_floor_s"] is None
    assert results["CoOp"]["eval"]["timed"] is False and results["CoOp"]["max_logit_diff"] < 1e-4
    assert "MaPLe" in format_table(report)
    json.dumps(report)


def test_arm_in_its_own_process(tiny_clip_path, tmp_path):
    """A worker process answers through its proxy, and its exceptions are raised in the parent."""
    import contextlib
    import os

    make_toy_dataset(tmp_path / "data", n_classes=2, per_class=8, size=8)
    spec = ArmSpec(method="MaPLe", arm="ours", data_root=str(tmp_path / "data"), weights=str(tiny_clip_path),
                   output_dir=str(tmp_path / "out"), resolution=32)
    with contextlib.ExitStack() as stack:
        arm = spawn_arm(spec, stack)
        info = arm.info()
        assert info["classes"] == 2 and info["batch_size"] == 4
        assert arm.step()["loss"] > 0
        assert torch.isfinite(arm.evaluate(n_images=2)["logits"]).all()
        assert arm.memory()["kind"] in ("peak_rss", "ru_maxrss_lifetime")
        with pytest.raises(TypeError, match="unexpected keyword argument 'images'"):
            arm.evaluate(images=2)
        assert info["pid"] != os.getpid()  # its own process: peak memory per arm
    with pytest.raises(ProcessLookupError):
        os.kill(info["pid"], 0)  # closing the stack ended it


def test_time_per_run_of_the_feature_methods_and_coop(tiny_clip_path, tmp_path):
    from tools.benchmark_runs import format_runs, time_runs

    make_toy_dataset(tmp_path / "data", n_classes=3, per_class=8, size=32)
    report = time_runs(tmp_path / "data", tiny_clip_path, 32, tmp_path, shots=2, epochs=1,
                       methods=["CoOp", "TipAdapterF"])
    assert report["CoOp"]["cached_s"] is None and report["TipAdapterF"]["cached_s"] > 0
    assert all(0 <= r["accuracy"] <= 100 for r in report.values())
    assert len(list((tmp_path / "features" / "TipAdapterF").glob("*.safetensors"))) > 0
    assert "time per run (2 shots) vs CoOp: TipAdapterF" in format_runs(report, 2)


def test_actionclip_run_timed_with_and_without_the_trimmed_text(tiny_clip_path, tmp_path):
    from tools.benchmark_runs import time_video_runs
    from tools.make_synthetic_videos import make_videos

    make_videos(str(tmp_path / "data"), "UCF101Video", classes=4, train=1, val=1, size=(32, 32))
    report = time_video_runs(tmp_path / "data", tiny_clip_path, 32, tmp_path, frames=2, batch=4)
    assert report["straight"]["top1"] == report["ours"]["top1"] and report["speedup"]["run"] > 0
    assert (tmp_path / "ActionCLIP_ours" / "results.json").is_file()
