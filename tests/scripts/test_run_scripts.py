"""scripts/: the wrappers build the official command lines and output trees; DATA and finished runs are checked.

Every test runs the real bash scripts in a subprocess, with OUTPUT_ROOT in a temp folder: DRY_RUN=1 for the
command lines, a stub interpreter (PYTHON) for the paths that really execute.
"""
from __future__ import annotations

import sys

import pytest

from tests.scripts.helpers import REPO, commands as _commands, run as _run, stub_python as _stub_python


def test_coop_main_dry_run(tmp_path):
    cmds = _commands(_run("coop/main.sh", "caltech101", "rn50", "end", "16", "4", "False", out_root=tmp_path))
    assert len(cmds) == 3
    for seed, cmd in enumerate(cmds, start=1):
        out = f"{tmp_path}/caltech101/CoOp/rn50_4shots/nctx16_cscFalse_ctpend/seed{seed}"
        assert cmd == ["python", "train.py", "--root", "/datasets", "--seed", str(seed), "--trainer", "CoOp",
                       "--dataset-config-file", "configs/datasets/caltech101.yaml",
                       "--config-file", "configs/trainers/CoOp/rn50.yaml", "--output-dir", out,
                       "TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
                       "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "DATASET.NUM_SHOTS", "4"]


def test_default_output_root_is_official_relative_path():
    cmds = _commands(_run("coop/main.sh", "dtd", "vit_b16_ep50", "middle", "8", "1", "True",
                          env={"SEEDS": "2"}))
    assert len(cmds) == 1
    out = cmds[0][cmds[0].index("--output-dir") + 1]
    assert out == "output/dtd/CoOp/vit_b16_ep50_1shots/nctx8_cscTrue_ctpmiddle/seed2"


def test_coop_eval_dry_run(tmp_path):
    cmds = _commands(_run("coop/eval.sh", "imagenetv2", "rn50", out_root=tmp_path))
    assert len(cmds) == 3
    setting = "CoOp/rn50_16shots/nctx16_cscFalse_ctpend"
    for seed, cmd in enumerate(cmds, start=1):
        assert cmd[:2] == ["python", "train.py"]
        assert cmd[cmd.index("--model-dir") + 1] == f"{tmp_path}/imagenet/{setting}/seed{seed}"
        assert cmd[cmd.index("--output-dir") + 1] == f"{tmp_path}/evaluation/{setting}/imagenetv2/seed{seed}"
        assert cmd[cmd.index("--load-epoch") + 1] == "50"
        assert "--eval-only" in cmd
        assert cmd[cmd.index("--seed") + 1] == str(seed)
        assert cmd[cmd.index("--dataset-config-file") + 1] == "configs/datasets/imagenetv2.yaml"
        assert cmd[-6:] == ["TRAINER.COOP.N_CTX", "16", "TRAINER.COOP.CSC", "False",
                            "TRAINER.COOP.CLASS_TOKEN_POSITION", "end"]


def test_zeroshot_dry_run(tmp_path):
    cmds = _commands(_run("zsclip/zeroshot.sh", "caltech101", "vit_b16", out_root=tmp_path))
    assert cmds == [["python", "train.py", "--root", "/datasets", "--trainer", "ZeroshotCLIP",
                     "--dataset-config-file", "configs/datasets/caltech101.yaml",
                     "--config-file", "configs/trainers/CoOp/vit_b16.yaml", "--eval-only",
                     "--output-dir", f"{tmp_path}/ZeroshotCLIP/vit_b16/caltech101"]]


def test_base2new_train_and_test_dry_run(tmp_path):
    train = _commands(_run("coop/base2new_train.sh", "caltech101", "2", out_root=tmp_path))
    base_dir = f"{tmp_path}/base2new/train_base/caltech101/shots_16/CoOp/vit_b16_ctxv1/seed2"
    assert train == [["python", "train.py", "--root", "/datasets", "--seed", "2", "--trainer", "CoOp",
                      "--dataset-config-file", "configs/datasets/caltech101.yaml",
                      "--config-file", "configs/trainers/CoOp/vit_b16_ctxv1.yaml", "--output-dir", base_dir,
                      "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "base"]]
    test = _commands(_run("coop/base2new_test.sh", "caltech101", "2", out_root=tmp_path))
    assert test == [["python", "train.py", "--root", "/datasets", "--seed", "2", "--trainer", "CoOp",
                     "--dataset-config-file", "configs/datasets/caltech101.yaml",
                     "--config-file", "configs/trainers/CoOp/vit_b16_ctxv1.yaml", "--model-dir", base_dir,
                     "--load-epoch", "200", "--eval-only",
                     "--output-dir", base_dir.replace("train_base", "test_new"),
                     "DATASET.NUM_SHOTS", "16", "DATASET.SUBSAMPLE_CLASSES", "new"]]


def test_base2new_imagenet_and_overrides(tmp_path):
    (cmd,) = _commands(_run("coop/base2new_test.sh", "imagenet", "1", out_root=tmp_path))
    assert cmd[cmd.index("--config-file") + 1] == "configs/trainers/CoOp/vit_b16_ep50_ctxv1.yaml"
    assert cmd[cmd.index("--load-epoch") + 1] == "50"
    env = {"CFG": "vit_b16", "SHOTS": "4", "SUB": "base", "EXTRA_OPTS": "OPTIM.MAX_EPOCH 2"}
    (cmd,) = _commands(_run("coop/base2new_test.sh", "caltech101", "1", out_root=tmp_path, env=env))
    assert cmd[cmd.index("--load-epoch") + 1] == "2"  # follows the shrunk run
    assert cmd[cmd.index("--output-dir") + 1].endswith("base2new/test_base/caltech101/shots_4/CoOp/vit_b16/seed1")
    assert cmd[-6:] == ["DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "OPTIM.MAX_EPOCH", "2"]


def test_extra_opts_python_and_seeds(tmp_path):
    env = {"EXTRA_OPTS": "OPTIM.MAX_EPOCH 1 INPUT.SIZE '(32, 32)'", "PYTHON": "python3 -u", "SEEDS": "7"}
    (cmd,) = _commands(_run("coop/main.sh", "caltech101", "rn50", "end", "4", "2", "False", out_root=tmp_path,
                            env=env))
    assert cmd[:3] == ["python3", "-u", "train.py"]
    assert cmd[-4:] == ["OPTIM.MAX_EPOCH", "1", "INPUT.SIZE", "(32, 32)"]
    assert cmd[cmd.index("--seed") + 1] == "7"


@pytest.mark.parametrize("script,args", [
    ("coop/main.sh", ["caltech101", "rn50", "end", "16", "16", "False"]),
    ("coop/eval.sh", ["imagenetv2", "rn50"]),
    ("zsclip/zeroshot.sh", ["caltech101", "vit_b16"]),
    ("coop/base2new_train.sh", ["caltech101", "1"]),
    ("coop/base2new_test.sh", ["caltech101", "1"]),
])
def test_data_unset_is_an_error(tmp_path, script, args):
    proc = _run(script, *args, data=None, out_root=tmp_path)
    assert proc.returncode != 0
    assert "DATA" in proc.stderr and "DATA=/path/to/datasets" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("args,env,message", [
    (["caltech10", "rn50", "end", "16", "16", "False"], {}, "configs/datasets/caltech10.yaml"),
    (["caltech101", "rn5", "end", "16", "16", "False"], {}, "configs/trainers/CoOp/rn5.yaml"),
    (["caltech101", "rn50", "end", "16", "16", "False"], {"EXTRA_OPTS": "OPTIM.MAX_EPOCH"}, "KEY VALUE"),
    (["caltech101", "rn50", "end", "16", "16", "False"], {"EXTRA_OPTS": "A 'b"}, "unbalanced quotes"),
    (["caltech101", "rn50"], {}, "usage:"),
])
def test_bad_input_is_a_clear_error(tmp_path, args, env, message):
    proc = _run("coop/main.sh", *args, env=env, out_root=tmp_path)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert proc.stdout == ""


def test_runs_then_skips_finished_runs(tmp_path):
    calls = tmp_path / "calls.txt"
    env = {"PYTHON": str(_stub_python(tmp_path)), "CALLS": str(calls)}
    args = ("caltech101", "rn50", "end", "16", "1", "False")
    first = _run("coop/main.sh", *args, env=env, dry=False, out_root=tmp_path / "out")
    assert first.returncode == 0, first.stderr
    lines = calls.read_text().splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{REPO} train.py --root /datasets") for line in lines)
    assert first.stderr.count("Run this job") == 3
    second = _run("coop/main.sh", *args, env=env, dry=False, out_root=tmp_path / "out")
    assert second.returncode == 0
    assert second.stderr.count("skip this job") == 3
    assert len(calls.read_text().splitlines()) == 3  # nothing re-ran


def test_finished_run_skipped_in_dry_run_and_unfinished_resumed(tmp_path):
    done = tmp_path / "ZeroshotCLIP" / "vit_b16" / "caltech101"
    done.mkdir(parents=True)
    proc = _run("zsclip/zeroshot.sh", "caltech101", "vit_b16", out_root=tmp_path)
    assert proc.returncode == 0 and len(_commands(proc)) == 1  # folder without results.json: still runs
    (done / "results.json").write_text('{\n "accuracy": 50.0,\n "split": "val"\n}')  # best_val, mid-training
    proc = _run("zsclip/zeroshot.sh", "caltech101", "vit_b16", out_root=tmp_path)
    assert proc.returncode == 0 and len(_commands(proc)) == 1
    (done / "results.json").write_text('{\n "accuracy": 50.0,\n "split": "test"\n}')
    proc = _run("zsclip/zeroshot.sh", "caltech101", "vit_b16", out_root=tmp_path)
    assert proc.returncode == 0 and proc.stdout == ""
    assert f"{done}/results.json" in proc.stderr and "skip" in proc.stderr


def test_eval_without_trained_model_is_an_error(tmp_path):
    proc = _run("coop/base2new_test.sh", "caltech101", "1", dry=False, out_root=tmp_path,
                env={"PYTHON": "/bin/false"})
    assert proc.returncode != 0
    assert "model directory not found" in proc.stderr and "train_base/caltech101" in proc.stderr


def test_relative_data_is_resolved_from_the_callers_folder(tmp_path):
    (cmd,) = _commands(_run("zsclip/zeroshot.sh", "caltech101", "rn50", data="my_data", out_root=tmp_path,
                            cwd=str(tmp_path)))
    assert cmd[cmd.index("--root") + 1] == f"{tmp_path}/my_data"


def test_base2new_scripts_really_run_and_parse(tmp_path, tiny_clip_path):
    """Scripts -> train.py -> results.json -> parse_test_res on a toy dataset with a tiny random CLIP."""
    from tools.make_toy_dataset import make_toy_dataset
    from tools.parse_test_res import parse_dir

    make_toy_dataset(tmp_path / "data", n_classes=4, per_class=8, size=32, seed=0)
    opts = (f"MODEL.BACKBONE.PATH {tiny_clip_path} INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 USE_CUDA False "
            "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 2")
    env = {"PYTHON": sys.executable, "EXTRA_OPTS": opts, "SHOTS": "2"}
    for script in ("coop/base2new_train.sh", "coop/base2new_test.sh"):
        proc = _run(script, "caltech101", "1", data=str(tmp_path / "data"), dry=False, out_root=tmp_path / "out",
                    env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    tail = "caltech101/shots_2/CoOp/vit_b16_ctxv1"
    base = parse_dir(tmp_path / "out" / "base2new" / "train_base" / tail)
    new = parse_dir(tmp_path / "out" / "base2new" / "test_new" / tail, test_log=True)
    for summary in (base, new):
        assert summary.runs[0].source.name == "results.json"
        assert summary.runs[0].metrics["total"] == 4  # 2 classes x 2 test images each
        assert 0.0 <= summary.mean["accuracy"] <= 100.0
    from tools.make_tables import collect, harmonic_mean

    tables, missing = collect(tmp_path / "out", [1])
    _, b, n, hm = next(r for r in tables[0].rows if r[0] == "Caltech101")
    assert (b.values, n.values) == ({1: base.mean["accuracy"]}, {1: new.mean["accuracy"]})
    assert hm == harmonic_mean(b.mean, n.mean) and tables[0].rows[-1][0] == "Average (1 of 11 datasets)"
    assert not [line for line in missing if "caltech101" in line]
    again = _run("coop/base2new_train.sh", "caltech101", "1", data=str(tmp_path / "data"), dry=False,
                 out_root=tmp_path / "out", env=env)
    assert again.returncode == 0 and "skip this job" in again.stderr
