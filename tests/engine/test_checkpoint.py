"""Checkpoint files: official layout, learnable tensors only, atomic writes, loading official (whole-CLIP) files."""
from __future__ import annotations

import logging
import os

import pytest
import torch
import torch.nn as nn

from engine.checkpoint import learnable_state_dict, load_checkpoint, load_learnable, save_checkpoint

RUNS = "train_runs/caltech101"


class FakeCoOpLearner(nn.Module):
    """CoOp's registered ``prompt_learner``: learnable ``ctx`` + frozen prefix/suffix buffers."""

    def __init__(self, n_ctx=4, width=512):
        super().__init__()
        self.ctx = nn.Parameter(torch.zeros(n_ctx, width))
        self.register_buffer("token_prefix", torch.zeros(6, 1, width))
        self.register_buffer("token_suffix", torch.zeros(6, 72, width))


class FakeMaPLeLearner(nn.Module):
    def __init__(self, n_ctx=2, depth=9, dt=512, dv=768):
        super().__init__()
        self.ctx = nn.Parameter(torch.zeros(n_ctx, dt))
        self.proj = nn.Linear(dt, dv)
        self.compound_prompts_text = nn.ParameterList([nn.Parameter(torch.zeros(n_ctx, dt)) for _ in range(depth - 1)])
        self.compound_prompt_projections = nn.ModuleList([nn.Linear(dt, dv) for _ in range(depth - 1)])


class FakeMaPLe(nn.Module):
    """The whole model MaPLe registers: learner + a frozen encoder named like ours (``clip``)."""

    def __init__(self):
        super().__init__()
        self.prompt_learner = FakeMaPLeLearner()
        self.clip = nn.Linear(4, 4).requires_grad_(False)


def test_official_coop_checkpoint_loads(fixtures_dir):
    path = fixtures_dir / RUNS / "CoOp/prompt_learner/model.pth.tar-2"
    ckpt = load_checkpoint(str(path))
    assert ckpt["epoch"] == 2 and ckpt["val_result"] is None
    module = FakeCoOpLearner()
    report = load_learnable(module, ckpt["state_dict"], source=str(path))
    assert report.loaded == ["ctx"] and not report.unexpected
    assert torch.equal(module.ctx.detach(), ckpt["state_dict"]["ctx"])


def test_official_maple_checkpoint_loads(fixtures_dir):
    path = fixtures_dir / RUNS / "MaPLe/MultiModalPromptLearner/model.pth.tar-2"
    ckpt = load_checkpoint(str(path))
    model = FakeMaPLe()
    report = load_learnable(model, ckpt["state_dict"], source=str(path))
    assert len(report.loaded) == 27 and not report.unexpected
    own = model.state_dict()
    for k, v in ckpt["state_dict"].items():
        assert torch.equal(own[k], v), k
    assert not torch.equal(model.prompt_learner.compound_prompt_projections[7].weight, torch.zeros(768, 512))


def test_whole_clip_files_ignore_frozen_and_warn_unexpected(caplog):
    model = FakeMaPLe()
    state = {k: torch.randn_like(v) for k, v in learnable_state_dict(model).items()}
    # what an unfiltered official MaPLe file also holds: the frozen CLIP under the official names
    state.update({"image_encoder.conv1.weight": torch.zeros(3), "text_encoder.ln_final.bias": torch.zeros(3),
                  "logit_scale": torch.zeros(()), "prompt_learner.token_prefix": torch.zeros(6, 1, 512),
                  "clip.weight": torch.zeros(4, 4), "module.prompt_learner.ctx": state["prompt_learner.ctx"],
                  "mystery.weight": torch.zeros(2)})
    with caplog.at_level(logging.WARNING):
        report = load_learnable(model, state, source="full.pth",
                                ignore_prefixes=("image_encoder.", "text_encoder.", "logit_scale",
                                                 "prompt_learner.token_prefix"))
    assert report.unexpected == ["mystery.weight"] and "mystery.weight" in caplog.text
    # the engine knows no method's names: without the caller's list those keys are only "unexpected"
    assert "logit_scale" in load_learnable(FakeMaPLe(), state, source="full.pth").unexpected
    assert "logit_scale" in report.ignored_frozen and "prompt_learner.token_prefix" in report.ignored_frozen
    assert torch.equal(model.prompt_learner.proj.weight.detach(), state["prompt_learner.proj.weight"])
    assert torch.equal(model.clip.weight.detach(), state["clip.weight"]) is False  # frozen: never loaded


def test_missing_and_misshaped_learnable_keys():
    module = FakeCoOpLearner()
    with pytest.raises(KeyError, match=r"x\.pth.*\['ctx'\]"):
        load_learnable(module, {"token_prefix": torch.zeros(6, 1, 512)}, source="x.pth")
    with pytest.raises(ValueError, match=r"'ctx'.*\(16, 512\).*\(4, 512\)"):
        load_learnable(module, {"ctx": torch.zeros(16, 512)}, source="x.pth")


def test_save_layout_learnable_only_and_pointer(tmp_path):
    module = FakeCoOpLearner()
    nn.init.normal_(module.ctx)
    state = {"state_dict": learnable_state_dict(module), "epoch": 3, "optimizer": None, "scheduler": None,
             "val_result": None}
    path = save_checkpoint(state, str(tmp_path / "prompt_learner"), is_best=True)
    folder = tmp_path / "prompt_learner"
    assert path == str(folder / "model.pth.tar-3")
    assert sorted(os.listdir(folder)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]  # no temp files
    assert (folder / "checkpoint").read_text() == "model.pth.tar-3\n"
    loaded = torch.load(path, map_location="cpu", weights_only=False)
    assert list(loaded["state_dict"]) == ["ctx"] and loaded["epoch"] == 3
    assert torch.equal(loaded["state_dict"]["ctx"], module.ctx.detach())
    assert (folder / "model-best.pth.tar").read_bytes() == (folder / "model.pth.tar-3").read_bytes()


def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    folder = tmp_path / "m"
    base = {"state_dict": {"w": torch.ones(2)}, "epoch": 1, "optimizer": None, "scheduler": None,
            "val_result": None}
    path = save_checkpoint(base, str(folder))
    before = (folder / "model.pth.tar-1").read_bytes()

    def crash(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(dict(base, state_dict={"w": torch.zeros(2)}), str(folder))
    assert (folder / "model.pth.tar-1").read_bytes() == before
    assert sorted(os.listdir(folder)) == ["checkpoint", "model.pth.tar-1"] and path.endswith("-1")


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_checkpoint(str(tmp_path / "nope.pth"))
    bad = tmp_path / "corrupt.pth.tar"
    bad.write_bytes(b"not a zip, not a pickle")
    with pytest.raises(ValueError, match="corrupt.pth.tar"):
        load_checkpoint(str(bad))
    odd = tmp_path / "list.pth"
    torch.save([1, 2], odd)
    with pytest.raises(ValueError, match="list.pth.*state_dict"):
        load_checkpoint(str(odd))
    plain = tmp_path / "plain.pth"
    torch.save({"ctx": torch.ones(4, 512)}, plain)
    assert torch.equal(load_checkpoint(str(plain))["state_dict"]["ctx"], torch.ones(4, 512))


def test_official_files_with_pickled_scheduler_objects_load_inertly(tmp_path):
    from engine.checkpoint import PickledObject
    from engine.config import get_cfg_default
    from engine.optim import build_lr_scheduler, build_optimizer

    ctx = nn.Parameter(torch.zeros(4, 512))
    optimizer = torch.optim.SGD([ctx], lr=0.002, momentum=0.9)
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    ctx.grad = torch.ones_like(ctx)
    optimizer.step()
    successor.step()
    # what an official Dassl file holds: the warm-up scheduler's state with the successor OBJECT (and its optimizer)
    official = {"state_dict": {"ctx": ctx.detach()}, "epoch": 2, "optimizer": optimizer.state_dict(),
                "scheduler": {"successor": successor, "warmup_epoch": 1, "cons_lr": 1e-5, "base_lrs": [0.002],
                              "last_epoch": 1, "_last_lr": [0.002]}, "val_result": None}
    path = tmp_path / "model.pth.tar-2"
    torch.save(official, path)
    ckpt = load_checkpoint(str(path))
    assert isinstance(ckpt["scheduler"]["successor"], PickledObject)  # data only: none of its code ran
    cfg = get_cfg_default().OPTIM
    cfg.merge_from_list(["NAME", "sgd", "LR", 0.002, "LR_SCHEDULER", "cosine", "MAX_EPOCH", 10, "WARMUP_EPOCH", 1,
                         "WARMUP_TYPE", "constant"])
    ours = build_lr_scheduler(build_optimizer([nn.Parameter(torch.zeros(4, 512))], cfg), cfg)
    ours.load_state_dict(ckpt["scheduler"])
    assert ours.successor.last_epoch == 1 and ours.successor.T_max == 10
