"""Bad input and reruns: one clear message, nothing lost, no code run from a downloaded file, one config per run
folder. Runs go through ``train.cli`` (what ``python train.py`` calls) on the tiny CLIP."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
import torch

import train
from engine import data as data_mod
from engine.logging import close_logger

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_run_logger():
    yield
    close_logger()


def _argv(data_root, out, weights, *extra, flags=(), trainer="CoOp", config="CoOp/vit_b16.yaml"):
    """The command line; ``flags`` before the trailing KEY VALUE pairs, ``extra`` among them."""
    return ["--root", str(data_root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers" / config), "--output-dir", str(out), *flags,
            "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "INPUT.SIZE", "(32, 32)",
            "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "1",
            "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32", "MODEL.BACKBONE.PATH", str(weights), *extra]


def _fails(argv, capsys, *needles):
    """``train.cli(argv)`` exits 1 with one ERROR message containing every needle, and no traceback."""
    assert train.cli(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_checkpoint_that_would_run_code_is_refused(data_root, tiny_clip_path, tmp_path, capsys):
    marker = tmp_path / "payload_ran"

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    model_dir = tmp_path / "downloaded"
    (model_dir / "prompt_learner").mkdir(parents=True)
    torch.save({"state_dict": {"ctx": torch.zeros(4, 64)}, "epoch": 1, "val_result": Payload()},
               model_dir / "prompt_learner" / "model.pth.tar-1")
    argv = _argv(data_root, tmp_path / "eval", tiny_clip_path,
                 flags=("--eval-only", "--model-dir", str(model_dir), "--load-epoch", "1"))
    _fails(argv, capsys, "Refused", "model.pth.tar-1", "posix.mkdir", "weights_only=False")
    assert not marker.exists()


@pytest.mark.parametrize("change", [("OPTIM.LR", "1000000.0"), ("DATASET.NUM_SHOTS", "1")])
def test_a_rerun_with_another_config_stops_before_touching_anything(change, data_root, tiny_clip_path, tmp_path,
                                                                    capsys):
    out = tmp_path / "run"
    assert train.cli(_argv(data_root, out, tiny_clip_path)) == 0
    before = _snapshot(out)
    _fails(_argv(data_root, out, tiny_clip_path, *change), capsys, change[0], "Nothing was changed", "--fresh")
    assert _snapshot(out) == before
    # what does not change results may differ: the finished run is simply found again
    assert train.cli(_argv(data_root, out, tiny_clip_path, "TRAIN.PRINT_FREQ", "3")) == 0
    before = _snapshot(out)
    assert train.cli(_argv(data_root, out, tiny_clip_path, *change, flags=("--fresh",))) == 0
    (aside,) = tmp_path.glob("run.replaced-*")
    assert _snapshot(aside) == before  # the old run, moved aside whole
    assert f"{change[1]}" in (out / "config.yaml").read_text()


def test_a_run_that_fails_at_start_writes_no_file(data_root, tiny_clip_path, tmp_path, capsys):
    out = tmp_path / "run"
    _fails(_argv(tmp_path / "no_data", out, tiny_clip_path), capsys, "caltech-101")
    assert not out.exists()


def test_bad_weights_answers(data_root, tiny_clip_path, tmp_path, capsys):
    out = tmp_path / "run"
    _fails(_argv(data_root, out, "") + ["MODEL.BACKBONE.NAME", "ViT-H/99"], capsys, "'ViT-H/99'",
           "taken as a file path", "MODEL.BACKBONE.PATH")
    damaged = tmp_path / "ViT-B-16.pt"
    damaged.write_bytes(tiny_clip_path.read_bytes()[:1000])
    _fails(_argv(data_root, out, damaged), capsys, str(damaged), "damaged or not CLIP weights", "delete it")
    assert not out.exists()


def test_a_checkpoint_of_another_method_is_named(data_root, tiny_clip_path, tmp_path, capsys):
    model_dir = tmp_path / "maple_run"
    (model_dir / "MultiModalPromptLearner").mkdir(parents=True)
    torch.save({"state_dict": {}}, model_dir / "MultiModalPromptLearner" / "model.pth.tar-5")
    argv = _argv(data_root, tmp_path / "eval", tiny_clip_path,
                 flags=("--eval-only", "--model-dir", str(model_dir), "--load-epoch", "5"))
    _fails(argv, capsys, "MultiModalPromptLearner/ is written by ExtrasLinearProbeMaPLe or MaPLe", "--trainer")


def test_eval_only_without_weights_is_refused_except_for_zero_shot(data_root, tiny_clip_path, tmp_path, capsys):
    _fails(_argv(data_root, tmp_path / "eval", tiny_clip_path, flags=("--eval-only",)), capsys, "--model-dir",
           "untrained")
    zero_shot = _argv(data_root, tmp_path / "zs", tiny_clip_path, flags=("--eval-only",), trainer="ZeroshotCLIP")
    assert train.cli(zero_shot) == 0 and (tmp_path / "zs" / "results.json").is_file()


def test_debug_shows_the_traceback(data_root, tiny_clip_path, tmp_path):
    with pytest.raises(FileNotFoundError):
        train.cli(_argv(tmp_path / "no_data", tmp_path / "run", tiny_clip_path, flags=("--debug",)))


@pytest.mark.parametrize("code, needle", [(errno.ENOSPC, "no space left"), (errno.EROFS, "read-only"),
                                          (errno.EACCES, "read-only or not yours")])
def test_disk_errors_read_as_a_sentence(code, needle):
    message = train.describe(OSError(code, os.strerror(code), "/runs/x/model.pth.tar-3"))
    assert needle in message and "/runs/x/model.pth.tar-3" in message


def test_a_write_failing_on_a_full_disk_is_reported_as_such(tmp_path, monkeypatch):
    import fileio

    def torch_like_failure(temp):
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(fileio.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 0})())
    with pytest.raises(OSError) as err:
        fileio.atomic_write(tmp_path / "model.pth.tar-1", torch_like_failure)
    assert err.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


def test_bad_images_fail_before_training_all_named(data_root, tiny_clip_path, tmp_path, capsys, monkeypatch):
    image_dir = data_root / "caltech-101" / "101_ObjectCategories"
    bad = [image_dir / "Faces" / "image_0017.jpg", image_dir / "accordion" / "image_0018.jpg"]
    saved = [p.read_bytes() for p in bad]
    bad[0].write_bytes(b"not an image")
    bad[1].unlink()
    out = tmp_path / "run"
    err = _fails(_argv(data_root, out, tiny_clip_path), capsys, "2 of the", str(bad[0]), str(bad[1]), "missing")
    assert "epoch [" not in err and not out.exists()
    for path, content in zip(bad, saved):
        path.write_bytes(content)
    calls = []
    original = data_mod._bad_image
    monkeypatch.setattr(data_mod, "_bad_image", lambda path: calls.append(path) or original(path))
    assert train.cli(_argv(data_root, out, tiny_clip_path)) == 0
    assert calls  # checked once ...
    calls.clear()
    assert train.cli(_argv(data_root, tmp_path / "again", tiny_clip_path)) == 0
    assert not calls  # ... and remembered


def test_too_many_shots_and_the_context_length_are_said(data_root, tiny_clip_path, tmp_path):
    out = tmp_path / "run"
    argv = _argv(data_root, out, tiny_clip_path, "DATASET.NUM_SHOTS", "13", "TRAINER.COOP.N_CTX", "16",
                 "TRAINER.COOP.CTX_INIT", "a photo of a")
    assert train.cli(argv) == 0
    log = (out / "log.txt").read_text()
    assert "11 of 11 classes have fewer than 13 images and keep all of theirs: face (12), leopard (12)" in log
    assert "N_CTX 16 becomes 4, the number of words of CTX_INIT 'a photo of a'" in log
    assert "N_CTX: 4" in (out / "config.yaml").read_text()  # config.yaml records what ran


def test_run_files_are_group_readable(data_root, tiny_clip_path, tmp_path):
    out = tmp_path / "run"
    old = os.umask(0o022)
    try:
        assert train.cli(_argv(data_root, out, tiny_clip_path)) == 0
    finally:
        os.umask(old)
    for name in ("config.yaml", "results.json", "log.txt", "prompt_learner/model.pth.tar-1",
                 "prompt_learner/checkpoint"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name
    assert json.loads((out / "results.json").read_text())["num_images"] == 36
