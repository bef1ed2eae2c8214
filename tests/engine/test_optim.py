"""Optimizers and the per-epoch LR schedule reproduce the official (Dassl) ones."""
from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn

from engine.config import get_cfg_default
from engine.optim import WarmupScheduler, build_lr_scheduler, build_optimizer


@pytest.fixture(autouse=True)
def _quiet_scheduler_warnings():
    # We step schedules without optimizer steps here; torch warns about that order.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _optim_cfg(**kw):
    o = get_cfg_default().OPTIM
    o.NAME = "sgd"
    for k, v in kw.items():
        o[k] = v
    return o


def _lrs(optim_cfg, epochs):
    """LR in force during each of ``epochs`` epochs (stepped once after each)."""
    opt = build_optimizer(nn.Linear(2, 2), optim_cfg)
    sched = build_lr_scheduler(opt, optim_cfg)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_maple_five_epoch_schedule_is_exact():
    o = _optim_cfg(LR=0.0035, LR_SCHEDULER="cosine", MAX_EPOCH=5, WARMUP_EPOCH=1, WARMUP_TYPE="constant",
                   WARMUP_CONS_LR=1e-5)
    lrs = _lrs(o, 5)
    assert lrs[0] == 1e-5
    for e in range(1, 5):  # 0-based epoch e >= 1: cosine restarted after the warm-up epoch
        closed = 0.5 * (1 + math.cos(math.pi * (e - 1) / 5)) * 0.0035
        assert abs(lrs[e] - closed) <= 1e-7 * closed
    assert [round(v, 8) for v in lrs] == [1e-5, 3.5e-3, 3.16578e-3, 2.29078e-3, 1.20922e-3]


def test_linear_warmup_then_cosine():
    o = _optim_cfg(LR=0.01, LR_SCHEDULER="cosine", MAX_EPOCH=6, WARMUP_EPOCH=3, WARMUP_TYPE="linear",
                   WARMUP_MIN_LR=1e-4)
    lrs = _lrs(o, 6)
    assert lrs[:4] == pytest.approx([1e-4, 0.01 / 3, 0.02 / 3, 0.01], rel=1e-12)
    assert lrs[4] == pytest.approx(0.5 * (1 + math.cos(math.pi / 6)) * 0.01, rel=1e-9)
    assert lrs[5] == pytest.approx(0.5 * (1 + math.cos(2 * math.pi / 6)) * 0.01, rel=1e-9)


def test_main_schedule_restarts_after_the_warmup():
    # single_step 4 after 2 constant warm-up epochs: the step comes 4 epochs after the warm-up (epoch 6)
    o = _optim_cfg(LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(4,), GAMMA=0.1, MAX_EPOCH=8, WARMUP_EPOCH=2,
                   WARMUP_TYPE="constant", WARMUP_CONS_LR=0.5)
    assert _lrs(o, 8) == pytest.approx([0.5, 0.5, 1.0, 1.0, 1.0, 1.0, 0.1, 0.1])


def test_step_schedule_without_warmup():
    assert _lrs(_optim_cfg(LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1), 4) == pytest.approx(
        [1, 1, 0.1, 0.1])
    # STEPSIZE -1: one step at MAX_EPOCH
    assert _lrs(_optim_cfg(LR=1.0, LR_SCHEDULER="single_step", STEPSIZE=(-1,), MAX_EPOCH=3), 4) == pytest.approx(
        [1, 1, 1, 0.1])


@pytest.mark.parametrize("warmup", [0, 1])
def test_scheduler_state_round_trip(warmup):
    o = _optim_cfg(LR=0.02, LR_SCHEDULER="cosine", MAX_EPOCH=6, WARMUP_EPOCH=warmup, WARMUP_TYPE="constant")
    full = _lrs(o, 6)
    opt = build_optimizer(nn.Linear(2, 2), o)
    sched = build_lr_scheduler(opt, o)
    for _ in range(3):
        opt.step()
        sched.step()
    state_o, state_s = opt.state_dict(), sched.state_dict()
    opt2 = build_optimizer(nn.Linear(2, 2), o)
    sched2 = build_lr_scheduler(opt2, o)
    opt2.load_state_dict(state_o)
    sched2.load_state_dict(state_s)
    rest = []
    for _ in range(3):
        rest.append(opt2.param_groups[0]["lr"])
        sched2.step()
    assert rest == full[3:]


def test_loads_the_official_scheduler_state(fixtures_dir):
    ckpt = torch.load(fixtures_dir / "train_runs/caltech101/CoOp/prompt_learner/model.pth.tar-2",
                      map_location="cpu", weights_only=False)
    o = _optim_cfg(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=2, WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    opt = build_optimizer(nn.Linear(4, 512, bias=False), o)
    sched = build_lr_scheduler(opt, o)
    assert isinstance(sched, WarmupScheduler)
    for _ in range(2):  # the official file was saved after 2 epochs, i.e. 2 scheduler steps
        opt.step()
        sched.step()
    ours, ref = sched.state_dict(), ckpt["scheduler"]
    for key in ("warmup_epoch", "cons_lr", "base_lrs", "last_epoch", "_last_lr"):
        assert ours[key] == pytest.approx(ref[key]), key
    assert ours["successor"]["last_epoch"] == ref["successor"]["last_epoch"]
    fresh = build_lr_scheduler(build_optimizer(nn.Linear(4, 512, bias=False), o), o)
    fresh.load_state_dict(ref)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)


def test_one_sgd_step_matches_the_reference(fixtures_dir):
    ref = torch.load(fixtures_dir / "trainers/trainer_CoOp.pt", map_location="cpu", weights_only=False)
    ctx = nn.Parameter(ref["state_dict"]["ctx"].clone())
    o = _optim_cfg(LR=0.002, LR_SCHEDULER="cosine", MAX_EPOCH=200, WARMUP_EPOCH=1, WARMUP_TYPE="constant",
                   WARMUP_CONS_LR=1e-5)
    opt = build_optimizer([ctx], o)
    build_lr_scheduler(opt, o)
    group = opt.param_groups[0]
    for k in ("lr", "momentum", "dampening", "weight_decay", "nesterov", "initial_lr"):
        assert group[k] == ref["optim_hparams"][k], k
    ctx.grad = ref["grads"]["ctx"].clone()
    opt.step()
    torch.testing.assert_close(ctx.detach(), ref["state_dict_after_one_sgd_step"]["ctx"], rtol=0, atol=1e-9)


def test_optimizer_variants_and_trainable_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].requires_grad_(False)
    o = _optim_cfg(NAME="sgd", LR=0.1, SGD_NESTEROV=True, SGD_DAMPNING=0)
    sgd = build_optimizer(model, o)
    assert sum(len(g["params"]) for g in sgd.param_groups) == 2 and sgd.param_groups[0]["nesterov"]
    adam = build_optimizer(model, _optim_cfg(NAME="adam", ADAM_BETA1=0.8, ADAM_BETA2=0.95, WEIGHT_DECAY=0.0))
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.8, 0.95)
    assert adam.param_groups[0]["eps"] == 1e-8  # torch's default unless OPTIM.ADAM_EPS says otherwise (TCP: 1e-3)
    assert build_optimizer(model, _optim_cfg(NAME="adam", ADAM_EPS=1e-3)).param_groups[0]["eps"] == 1e-3
    with pytest.raises(ValueError, match="OPTIM.NAME"):
        build_optimizer(model, _optim_cfg(NAME="lion"))
    with pytest.raises(ValueError, match="LR_SCHEDULER"):
        build_lr_scheduler(sgd, _optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="no parameter"):
        build_optimizer(nn.Linear(2, 2).requires_grad_(False), o)
