"""engine/precision.py: frozen dtype, autocast, CPU fallback of amp, learnable tensors stay fp32."""
from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn

from engine.precision import Precision
from tests.engine.engine_fakes import ToyTrainer, toy_cfg


def _model():
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    m[0].requires_grad_(False)
    m.register_buffer("token_prefix", torch.ones(3))
    m.register_buffer("ids", torch.arange(3))
    return m


def test_autocast_modes_on_cpu(caplog):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with Precision("fp32").autocast():
        assert (a @ b).dtype == torch.float32
    with Precision("fp16").autocast():  # no autocast: the frozen weights are already fp16
        assert (a @ b).dtype == torch.float32
    with Precision("bf16").autocast():
        assert (a @ b).dtype == torch.bfloat16
    with caplog.at_level(logging.WARNING):
        amp = Precision("amp", "cpu")
    assert "falling back to bfloat16" in caplog.text and amp.scaler is None
    with amp.autocast():
        assert (a @ b).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="fp64"):
        Precision("fp64")


def test_step_updates_fp32_learnable_weights_under_bf16():
    m = _model()
    m[0].to(torch.bfloat16)  # the frozen part in low precision, as cast_model leaves CLIP
    prec = Precision("bf16")
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    before = m[1].weight.detach().clone()
    with prec.autocast():
        loss = m(torch.randn(5, 4, dtype=torch.bfloat16)).float().pow(2).mean()
    prec.backward(loss)
    prec.step([opt])
    assert m[1].weight.dtype == torch.float32 and not torch.equal(before, m[1].weight)
    assert m[0].weight.grad is None


@pytest.mark.parametrize("prec", ["bf16", "amp"])
def test_toy_trainer_trains_in_low_precision(tmp_path, prec):
    trainer = ToyTrainer(toy_cfg(tmp_path, TRAINER__TOYENGINE__PREC=prec, OPTIM__MAX_EPOCH=1,
                                 TEST__NO_TEST=True))
    assert trainer.precision.mode == prec
    start = trainer.model.head.weight.detach().clone()
    trainer.train()
    assert trainer.model.head.weight.dtype == torch.float32
    assert torch.isfinite(trainer.model.head.weight).all() and not torch.equal(start, trainer.model.head.weight)
