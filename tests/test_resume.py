"""Kill anywhere, rerun the same command: the run ends with exactly the tensors and accuracy of an uninterrupted
run (bitwise, CPU, fp32), with 0 and with 2 loader workers; a half-written checkpoint is never picked up."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
KILLED_RUN = REPO / "tests" / "engine" / "killed_run.py"
EPOCHS = 3


def _argv(data_root: Path, out: Path, weights: Path, workers: int) -> list:
    """MaPLe on the tiny CLIP with the official random augmentations, 6 batches per epoch."""
    return ["--root", str(data_root), "--seed", "7", "--trainer", "MaPLe",
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml"),
            "--output-dir", str(out), "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base",
            "INPUT.SIZE", "(32, 32)", "MODEL.BACKBONE.PATH", str(weights), "TRAINER.MAPLE.PREC", "fp32",
            "OPTIM.MAX_EPOCH", str(EPOCHS), "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
            "DATALOADER.NUM_WORKERS", str(workers), "USE_CUDA", "False"]


def _run(argv: list, kill_at: str = "") -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(KILLED_RUN), kill_at, *argv] if kill_at else [sys.executable, "train.py", *argv]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)


def _outcome(out: Path):
    state = torch.load(out / "MultiModalPromptLearner" / f"model.pth.tar-{EPOCHS}", weights_only=True)["state_dict"]
    return state, json.loads((out / "results.json").read_text())["accuracy"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, _pristine_data, tiny_clip_path):
    """The reference run for each worker count, never killed."""
    runs = {}
    for workers in (0, 2):
        out = tmp_path_factory.mktemp(f"whole{workers}") / "run"
        result = _run(_argv(_pristine_data, out, tiny_clip_path, workers))
        assert result.returncode == 0, result.stderr[-2000:]
        runs[workers] = _outcome(out)
    return runs


def _assert_same(resumed_out: Path, reference) -> None:
    state, accuracy = _outcome(resumed_out)
    expected_state, expected_accuracy = reference
    assert sorted(state) == sorted(expected_state)
    for key, value in expected_state.items():
        assert torch.equal(state[key], value), key
    assert accuracy == expected_accuracy


# a kill inside a step and one inside a checkpoint write, each with one worker count (four cases cost 40 s more of
# the suite's 10 minutes; the SIGKILL test below adds a kill between epochs)
@pytest.mark.parametrize("workers, kill_at", [(0, "step:3:2"), (2, "save:1")])
def test_killed_run_resumes_to_the_uninterrupted_result(workers, kill_at, uninterrupted, _pristine_data,
                                                       tiny_clip_path, tmp_path):
    out = tmp_path / "run"
    argv = _argv(_pristine_data, out, tiny_clip_path, workers)
    killed = _run(argv, kill_at)
    assert killed.returncode == -signal.SIGKILL
    folder = out / "MultiModalPromptLearner"
    if kill_at.startswith("save"):  # the interrupted save left its temp file; the pointer names the epoch before
        epoch = int(kill_at.split(":")[1])
        assert any(p.name.endswith(".tmp") for p in folder.iterdir())
        assert not (folder / f"model.pth.tar-{epoch}").exists()
    else:  # killed in epoch 3 (or 2): the previous epoch's checkpoint is the resume point, the older ones are gone
        epoch = int(kill_at.split(":")[1])
        assert sorted(p.name for p in folder.iterdir()) == ["checkpoint", f"model.pth.tar-{epoch - 1}"]
    resumed = _run(argv)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = (out / "log.txt").read_text()
    done = epoch - 1  # the epochs whose checkpoint survived the kill
    assert (f"{done} epoch(s) done" if done else "Starting from the initial weights") in log
    assert not any(p.name.endswith(".tmp") for p in folder.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint", f"model.pth.tar-{EPOCHS}"]
    _assert_same(out, uninterrupted[workers])
    if workers == 0 and kill_at.startswith("step"):  # TensorBoard shows each step once, not the repeated ones twice
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(out / "tensorboard"))
        events.Reload()
        assert [e.step for e in events.Scalars("train/loss")] == list(range(EPOCHS * 6))


def test_a_real_sigkill_in_the_third_epoch_resumes_from_the_second(uninterrupted, _pristine_data, tiny_clip_path,
                                                                   tmp_path):
    out = tmp_path / "run"
    argv = _argv(_pristine_data, out, tiny_clip_path, 0) + ["TRAIN.PRINT_FREQ", "1"]
    process = subprocess.Popen([sys.executable, "train.py", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    log, deadline = out / "log.txt", time.monotonic() + 300
    while not (log.is_file() and f"epoch [3/{EPOCHS}] batch [2/" in log.read_text()):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert (out / "MultiModalPromptLearner" / "model.pth.tar-2").is_file()
    resumed = _run(argv)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "2 epoch(s) done" in (out / "log.txt").read_text()
    _assert_same(out, uninterrupted[0])
