"""The training loop on a toy trainer: log format, hooks, checkpoints, resume, NaN stop, test outputs."""
from __future__ import annotations

import json
import logging
import math
import re

import pytest
import torch

from engine.checkpoint import learnable_state_dict, save_checkpoint
from engine.hooks import (BestValHook, CheckpointHook, FinalEvalHook, HookBase, LRStepHook, MetricsHook,
                          find_hook)
from engine.logging import close_logger, setup_logger
from tests.engine.engine_fakes import ToyTrainer, toy_cfg


@pytest.fixture(autouse=True)
def _close_run_logger():
    """Runs install log handlers on the root logger; do not let them outlive the test."""
    yield
    close_logger()


class RecordLR(HookBase):
    def __init__(self):
        self.lrs = []

    def before_epoch(self):
        self.lrs.append(self.trainer.get_current_lr())


class StopAfterFirstEpoch(HookBase):
    """Kill-equivalent: the process dies right after epoch 1 was checkpointed."""

    def after_epoch(self):
        raise KeyboardInterrupt


def _with_hooks(cfg, *extra):
    class T(ToyTrainer):
        def build_hooks(self):
            return super().build_hooks() + list(extra)

    return T(cfg)


def _weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_two_epochs_log_checkpoint_results(tmp_path):
    setup_logger(str(tmp_path))
    rec = RecordLR()
    trainer = _with_hooks(toy_cfg(tmp_path, TEST__SAVE_PREDICTIONS=True), rec)
    assert [type(h) for h in trainer._hooks[:5]] == [LRStepHook, BestValHook, CheckpointHook, MetricsHook,
                                                     FinalEvalHook]
    trainer.train()
    # LR stepped once per epoch: warm-up constant, then the base LR (cosine restarted)
    assert rec.lrs == [1e-2, 0.1]
    assert trainer._scheds["toy"].last_epoch == 1 and trainer._scheds["toy"].successor.last_epoch == 1
    log = (tmp_path / "log.txt").read_text()
    line = (r"epoch \[2/2\] batch \[5/6\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
            r"loss \d+\.\d{4} \(\d+\.\d{4}\) lr 1\.0000e-01 eta \d+:\d\d:\d\d")
    assert re.search(line, log), log
    assert "epoch [1/2] batch [5/6]" in log and "lr 1.0000e-02" in log
    tail = log[log.index("Finished training"):]
    assert re.search(r"Finished training\nTesting the weights of the last epoch\nEvaluating on the test split\n"
                     r"=> result\n\* total: 10\n\* correct: \d+\n\* accuracy: \d+\.\d\d%\n\* error: \d+\.\d\d%\n"
                     r"\* macro_f1: \d+\.\d\d%\nTime taken: \d+:\d\d:\d\d\n$", tail), tail
    folder = tmp_path / "toy"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint", "model.pth.tar-2"]
    ckpt = torch.load(folder / "model.pth.tar-2", map_location="cpu", weights_only=False)
    assert set(ckpt["state_dict"]) == {"ctx", "head.weight", "head.bias"} and ckpt["epoch"] == 2
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.05)  # next epoch's LR (cosine, T=2)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/lr", "test/accuracy", "test/macro_f1"} <= set(events.Tags()["scalars"])
    assert [e.value for e in events.Scalars("train/lr")] == pytest.approx([1e-2] * 6 + [0.1] * 6)
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"accuracy", "error_rate", "macro_f1", "num_images", "split", "correct", "total"} <= set(res)
    assert res["num_images"] == res["total"] == 10 and res["split"] == "test"
    assert res["accuracy"] == pytest.approx(100.0 * res["correct"] / 10)
    preds = json.loads((tmp_path / "predictions.json").read_text())
    assert [p["impath"] for p in preds] == [f"test/{i:03d}.jpg" for i in range(10)]
    assert [p["label"] for p in preds] == [i % 3 for i in range(10)]
    assert all(p["pred"] == max(range(3), key=lambda c: p["logits"][c]) for p in preds)
    assert sum(p["pred"] == p["label"] for p in preds) == res["correct"]


def test_test_runs_in_eval_mode_and_val_split(tmp_path):
    trainer = ToyTrainer(toy_cfg(tmp_path))
    trainer.model.seen_training_flags.clear()
    res = trainer.test(split="val")
    assert set(trainer.model.seen_training_flags) == {False}
    assert json.loads((tmp_path / "results.json").read_text())["split"] == "val" and res["accuracy"] >= 0
    trainer.val_loader = None  # val falls back to test, as the official trainer
    trainer.test(split="val")
    assert json.loads((tmp_path / "results.json").read_text())["num_images"] == 10
    assert not (tmp_path / "predictions.json").exists()


@pytest.mark.parametrize("explicit_resume", [False, True])
def test_resume_equals_uninterrupted(tmp_path, explicit_resume):
    opts = {"TRAIN__CHECKPOINT_FREQ": 1, "TEST__NO_TEST": True, "OPTIM__MAX_EPOCH": 3}
    torch.manual_seed(123)
    full = ToyTrainer(toy_cfg(tmp_path / "full", **opts))
    full.train()

    torch.manual_seed(123)
    first = _with_hooks(toy_cfg(tmp_path / "cut", **opts), StopAfterFirstEpoch())
    with pytest.raises(KeyboardInterrupt):
        first.train()
    assert (tmp_path / "cut" / "toy" / "checkpoint").read_text().strip() == "model.pth.tar-1"

    torch.manual_seed(999)  # a new process: different RNG until the checkpoint restores it
    if explicit_resume:
        cfg = toy_cfg(tmp_path / "elsewhere", RESUME=str(tmp_path / "cut"), **opts)
    else:
        cfg = toy_cfg(tmp_path / "cut", **opts)
    resumed = ToyTrainer(cfg)
    resumed.train()
    assert resumed.start_epoch == 1
    for k, v in _weights(full).items():
        assert torch.equal(v, _weights(resumed)[k]), k
    assert resumed.get_current_lr() == full.get_current_lr()
    assert resumed._scheds["toy"].state_dict() == full._scheds["toy"].state_dict()
    mom_full = full._optims["toy"].state_dict()["state"]
    mom_res = resumed._optims["toy"].state_dict()["state"]
    assert all(torch.equal(mom_full[i]["momentum_buffer"], mom_res[i]["momentum_buffer"]) for i in mom_full)


def test_resume_accepts_files_without_optimizer_state(tmp_path):
    # Official files may carry optimizer / scheduler = None: weights and epoch are still restored.
    donor = ToyTrainer(toy_cfg(tmp_path / "donor"))
    torch.nn.init.constant_(donor.model.ctx, 0.5)
    state = {"state_dict": learnable_state_dict(donor.model), "epoch": 2, "optimizer": None, "scheduler": None,
             "val_result": None}
    save_checkpoint(state, str(tmp_path / "run" / "toy"))
    trainer = ToyTrainer(toy_cfg(tmp_path / "run", OPTIM__MAX_EPOCH=2, TEST__NO_TEST=True))
    trainer.train()
    assert trainer.start_epoch == 2 and torch.equal(trainer.model.ctx.detach(), torch.full((6,), 0.5))


def test_explicit_resume_without_checkpoint_fails(tmp_path):
    trainer = ToyTrainer(toy_cfg(tmp_path, RESUME=str(tmp_path / "missing")))
    with pytest.raises(FileNotFoundError, match="missing"):
        trainer.train()


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    cfg = toy_cfg(tmp_path, TRAIN__CHECKPOINT_FREQ=1)

    class Nan(ToyTrainer):
        nan_at = (1, 2)  # epoch 2, batch 3

    trainer = Nan(cfg)
    with pytest.raises(FloatingPointError) as err:
        trainer.train()
    msg = str(err.value)
    assert "epoch 2/2" in msg and "batch 3/6" in msg and "OPTIM.LR" in msg and str(tmp_path) in msg
    folder = tmp_path / "toy"
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint", "model.pth.tar-1"]
    ckpt = torch.load(folder / "model.pth.tar-1", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())
    assert trainer._writer is None  # the writer was closed despite the error


def test_nan_in_returned_summary_is_caught(tmp_path):
    class SelfStepping(ToyTrainer):
        def forward_backward(self, batch):
            return {"loss": math.inf}

    with pytest.raises(FloatingPointError, match="'loss' is NaN or infinite at epoch 1/2, batch 1/6"):
        SelfStepping(toy_cfg(tmp_path)).train()


def test_best_val_keeps_pointer_on_epoch_files(tmp_path, caplog):
    trainer = ToyTrainer(toy_cfg(tmp_path, TEST__FINAL_MODEL="best_val"))
    with caplog.at_level(logging.INFO):
        trainer.train()
    folder = tmp_path / "toy"
    assert (folder / "model-best.pth.tar").is_file()
    assert (folder / "checkpoint").read_text().strip() == "model.pth.tar-2"
    best = torch.load(folder / "model-best.pth.tar", map_location="cpu", weights_only=False)
    assert best["val_result"] == find_hook(trainer._hooks, BestValHook).best
    assert "Testing the weights that did best on the validation split" in caplog.text


def test_load_model_and_mode_toggling(tmp_path):
    trainer = ToyTrainer(toy_cfg(tmp_path, OPTIM__MAX_EPOCH=1, TEST__NO_TEST=True))
    trainer.train()
    saved = _weights(trainer)
    other = ToyTrainer(toy_cfg(tmp_path / "other"))
    other.load_model(str(tmp_path), epoch=1)
    assert all(torch.equal(saved[k], v) for k, v in _weights(other).items())
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "toy" / "model.pth.tar-7"))):
        other.load_model(str(tmp_path), epoch=7)
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "absent" / "toy" / "model-best"))):
        other.load_model(str(tmp_path / "absent"))
    other.load_model("")  # no directory: skipped, as the official trainer
    other.set_model_mode("eval")
    assert not other.model.training
    other.set_model_mode("train")
    assert other.model.training
    with pytest.raises(KeyError, match="already registered"):
        other.register_model("toy", other.model)
