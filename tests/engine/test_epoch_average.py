"""The per-epoch average of the learnable tensors (EpochAverageHook: PromptSRC's Gaussian prompt aggregation, open to
any trainer) and optimizer parameter groups with their own learning rates (DePT's staged LR)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine.checkpoint import load_checkpoint
from engine.hooks import EpochAverageHook, HookBase, gaussian_epoch_weights
from engine.logging import close_logger
from engine.optim import build_lr_scheduler, build_optimizer
from tests.engine.engine_fakes import ToyTrainer, toy_cfg

WEIGHTS = gaussian_epoch_weights(3, 2, 1)
OPTS = {"OPTIM__MAX_EPOCH": 3, "TRAIN__CHECKPOINT_FREQ": 1}


@pytest.fixture(autouse=True)
def _close_run_logger():
    yield
    close_logger()


class Snapshots(HookBase):
    """The learnable tensors at the end of every epoch, before the average replaces them."""

    def __init__(self):
        self.seen = []

    def after_epoch(self):
        self.seen.append({k: p.detach().clone() for k, p in self.trainer.model.named_parameters() if p.requires_grad})


class StopAfterSecondEpoch(HookBase):
    """Kill-equivalent: the process dies right after epoch 2 was checkpointed."""

    def after_epoch(self):
        if self.trainer.epoch == 1:
            raise KeyboardInterrupt


def _trainer(cfg, before=None, after=None, weights=WEIGHTS):
    """The toy trainer with the average where PromptTrainer puts it (right after the LR step); ``before`` runs
    before it, ``after`` after every other hook."""
    class Averaged(ToyTrainer):
        def build_hooks(self):
            hooks = super().build_hooks()  # LRStep, BestVal, Checkpoint, Metrics, FinalEval
            added = [h for h in (before, EpochAverageHook(weights)) if h]
            return hooks[:1] + added + hooks[1:] + ([after] if after else [])

    return Averaged(cfg)


def _learnable(trainer):
    return {k: p.detach().clone() for k, p in trainer.model.named_parameters() if p.requires_grad}


def test_gaussian_weights_are_the_normalised_normal_density():
    density = [math.exp(-0.5 * (e - 2) ** 2) for e in (1, 2, 3)]
    assert WEIGHTS == pytest.approx([d / sum(density) for d in density], rel=1e-15)
    assert sum(WEIGHTS) == pytest.approx(1.0, abs=1e-15) and WEIGHTS[0] == WEIGHTS[2] < WEIGHTS[1]
    # PromptSRC's defaults (mean 15, std 1) over its 20 epochs: almost all weight on epochs 14-16
    official = gaussian_epoch_weights(20, 15, 1)
    assert np.argmax(official) == 14 and sum(official[13:16]) > 0.88
    # ... and its 2-epoch fixture runs: the last epoch alone, up to 1e-6
    assert gaussian_epoch_weights(2, 15, 1)[1] == pytest.approx(1.0, abs=1e-5)


def test_the_final_model_is_the_weighted_sum_of_the_epochs(tmp_path):
    torch.manual_seed(5)
    snaps = Snapshots()
    trainer = _trainer(toy_cfg(tmp_path, **OPTS), before=snaps)
    trainer.train()
    assert len(snaps.seen) == 3 and not torch.equal(snaps.seen[0]["ctx"], snaps.seen[2]["ctx"])
    final = _learnable(trainer)
    for key, value in final.items():
        expected = snaps.seen[0][key] * WEIGHTS[0]
        for snap, w in zip(snaps.seen[1:], WEIGHTS[1:]):
            expected = expected + snap[key] * w  # the order of the official sums
        assert torch.equal(value, expected), key
    # the last checkpoint holds the average, the frozen part is untouched, the final test used the average
    ckpt = load_checkpoint(str(tmp_path / "toy" / "model.pth.tar-3"))
    for key, value in final.items():
        assert torch.equal(ckpt["state_dict"][key], value), key
    assert not trainer.model.encoder.weight.requires_grad
    assert (tmp_path / "results.json").is_file()


def test_a_killed_run_resumes_to_the_same_average(tmp_path):
    torch.manual_seed(123)
    full = _trainer(toy_cfg(tmp_path / "full", **OPTS))
    full.train()

    torch.manual_seed(123)
    cut = _trainer(toy_cfg(tmp_path / "cut", **OPTS), after=StopAfterSecondEpoch())
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    saved = torch.load(tmp_path / "cut" / "toy" / "model.pth.tar-2", weights_only=True)  # plain data
    assert saved["hooks"]["EpochAverageHook"]["weights"] == WEIGHTS
    assert set(saved["hooks"]["EpochAverageHook"]["sums"]["toy"]) == {"ctx", "head.weight", "head.bias"}

    torch.manual_seed(999)  # a new process: other random numbers until the checkpoint restores them
    resumed = _trainer(toy_cfg(tmp_path / "cut", **OPTS))
    resumed.train()
    assert resumed.start_epoch == 2
    for key, value in _learnable(full).items():
        assert torch.equal(_learnable(resumed)[key], value), key


def test_resuming_needs_the_average_of_the_same_schedule(tmp_path):
    plain = ToyTrainer(toy_cfg(tmp_path, OPTIM__MAX_EPOCH=1))
    plain.train()  # a checkpoint without the average's state
    with pytest.raises(ValueError, match="holds no state of EpochAverageHook"):
        _trainer(toy_cfg(tmp_path, **OPTS)).train()
    other = tmp_path / "other"
    torch.manual_seed(0)
    cut = _trainer(toy_cfg(other, **OPTS), after=StopAfterSecondEpoch())
    with pytest.raises(KeyboardInterrupt):
        cut.train()
    with pytest.raises(ValueError, match="epoch weights"):
        _trainer(toy_cfg(other, **OPTS), weights=gaussian_epoch_weights(3, 1, 1)).train()


def test_parameter_groups_keep_their_rates_through_warm_up_and_schedule(tmp_path):
    cfg = toy_cfg(tmp_path, OPTIM__MAX_EPOCH=4).OPTIM
    slow, fast, frozen = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(1))
    frozen.requires_grad_(False)
    optim = build_optimizer([{"params": [slow, frozen], "lr": 0.01}, {"params": [fast]}, {"params": [frozen]}], cfg)
    assert [len(g["params"]) for g in optim.param_groups] == [1, 1]  # frozen left out, the empty group dropped
    assert [g["lr"] for g in optim.param_groups] == [1e-2, 1e-1]  # a group's own rate, else OPTIM.LR
    sched = build_lr_scheduler(optim, cfg)
    assert [g["lr"] for g in optim.param_groups] == [1e-2, 1e-2]  # the constant warm-up for both...
    rates = []
    for _ in range(4):
        rates.append([g["lr"] for g in optim.param_groups])
        optim.step()
        sched.step()
    assert rates[0] == [1e-2, 1e-2]
    for e in (1, 2, 3):  # ... then each group's own cosine: 0.01 and OPTIM.LR (0.1)
        factor = 0.5 * (1 + math.cos(math.pi * (e - 1) / 4))
        assert rates[e] == pytest.approx([0.01 * factor, 0.1 * factor], rel=1e-12)
