"""Shared helpers for trainer tests: build a trainer from official-style arguments, compare gradients."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import torch

REPO = Path(__file__).resolve().parents[2]


def build(argv: Sequence[str]):
    """``train.setup_cfg`` + ``engine.build_trainer`` from a train.py command line (flags, then KEY VALUE), seeded
    as ``train.main`` seeds a run."""
    import train
    from engine import build_trainer

    cfg = train.setup_cfg(train.build_parser().parse_args(list(argv)))
    if cfg.SEED >= 0:
        train.set_random_seed(cfg.SEED)
    return build_trainer(cfg)


def assert_official_init(trainer, fx) -> None:
    """The learnable tensors the trainer starts from are, bit for bit, those the official code drew for the same
    seed (the fixture's ``state_dict``; for tensors the fixture regenerated, its sample of the official init)."""
    name = trainer.get_model_names()[0]
    ours = trainer.export_state_dict(name, {k: p.detach() for k, p in trainer._models[name].named_parameters()
                                            if p.requires_grad})
    assert set(ours) == set(fx["state_dict"])
    for key, value in ours.items():
        ref = fx["state_dict"][key]
        if isinstance(ref, dict) and ref.get("__regenerate__"):
            ref = {"__sampled__": True, **fx["reference_init_sampled"][key]}
        expected, got = expand_sampled(ref, value)
        assert torch.equal(got.float(), expected.float()), f"{key}: max diff {(got - expected).abs().max()}"


def caltech_argv(root: Path, out: Path, weights: Path, trainer: str, config: str, size: int,
                 extra: Sequence[str] = ()) -> List[str]:
    """The fixture's command line (README of tests/fixtures) pointed at our paths."""
    return ["--root", str(root), "--seed", "1", "--trainer", trainer,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers" / config), "--output-dir", str(out),
            "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "INPUT.SIZE", f"({size}, {size})",
            "DATALOADER.NUM_WORKERS", "0", "MODEL.BACKBONE.PATH", str(weights), *extra]


def expand_sampled(ref, actual: torch.Tensor):
    """Fixture tensors > 65,536 elements are stored as samples: return (expected, actual) at those indices."""
    if isinstance(ref, dict) and ref.get("__sampled__"):
        idx = torch.as_tensor(ref["flat_index"])
        return torch.as_tensor(ref["values"]), actual.reshape(-1)[idx]
    return ref, actual


def assert_grad_close(ref, actual: torch.Tensor, rel: float, name: str) -> None:
    """|actual - ref| <= rel * max|ref| elementwise (the fixture README's gradient tolerance)."""
    expected, got = expand_sampled(ref, actual)
    scale = expected.abs().max().item()
    err = (got.detach().float() - expected.float()).abs().max().item()
    assert err <= rel * scale, f"grad {name}: max err {err:.3e} > {rel} * absmax {scale:.3e}"


def check_against_fixture(trainer, fx, variants: Sequence[str] = ("",), logits_atol: float = 1e-4,
                          loss_atol: float = 5e-5, grad_rel: float = 1e-4,
                          after_step: Optional[Callable[[Dict, Dict], None]] = None) -> None:
    """Eval logits, LR, train loss, gradients and the state after one SGD step equal the fixture ``fx``.

    Tensors are compared under the official key names (``trainer.export_state_dict``), so the fixture's keys
    and ours must be the same set. ``variants``: key prefixes to compare with ("" = the reference run,
    "nohalf_variant_" = the reference without its fp16 prompt rounding); each is checked at the same tolerances.
    ``after_step(after, grads)``: the check of the state after the step, for optimizers other than SGD (default:
    ``state_dict_after_one_sgd_step`` to 1e-6); both dicts under the official key names.
    """
    name = trainer.get_model_names()[0]
    params = {k: p for k, p in trainer._models[name].named_parameters() if p.requires_grad}
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(fx["eval_images"])
    for v in variants:
        torch.testing.assert_close(logits, fx[f"{v}eval_logits"].float(), atol=logits_atol, rtol=0)
    assert abs(trainer.get_current_lr() - fx["lr_at_step"]) < 1e-12

    trainer.set_model_mode("train")
    out = trainer.forward_backward({"img": fx["train_images"], "label": fx["train_labels"]})
    grads = trainer.export_state_dict(name, {k: p.grad for k, p in params.items()})
    for v in variants:
        assert abs(out["loss"] - float(fx[f"{v}train_loss"])) <= loss_atol, (v, out["loss"])
        assert set(grads) == set(fx[f"{v}grads"])
        for key, ref in fx[f"{v}grads"].items():
            assert grads[key] is not None and grads[key].abs().sum() > 0, key  # every learnable tensor is reached
            assert_grad_close(ref, grads[key], grad_rel, f"{v}{key}")
    after = trainer.export_state_dict(name, {k: p.detach() for k, p in params.items()})
    if after_step is not None:
        after_step(after, grads)
        return
    for key, ref in fx["state_dict_after_one_sgd_step"].items():
        expected, got = expand_sampled(ref, after[key])
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0, msg=key)


def check_official_run(argv: List[str], run_dir: Path, subsample: str, data_root: Path, out: Path,
                       logits_atol: Optional[float] = None, epoch: int = 2):
    """An official-format checkpoint in ``run_dir`` (of ``epoch``), evaluated on the ``subsample`` classes, reproduces
    the recorded accuracy, macro-F1 and per-image predictions of ``run_dir/eval_results.json``."""
    recorded = json.loads((run_dir / "eval_results.json").read_text())[f"test{subsample}"]
    argv = list(argv)
    argv[argv.index("DATASET.SUBSAMPLE_CLASSES") + 1] = subsample
    trainer = build([*argv, "TEST.SAVE_PREDICTIONS", "True"])
    trainer.load_model(str(run_dir), epoch=epoch)
    result = trainer.test()
    assert abs(result["accuracy"] - recorded["results"][0]["accuracy"]) < 1e-6
    assert abs(result["macro_f1"] - recorded["results"][0]["macro_f1"]) < 1e-6
    preds = json.loads((out / "predictions.json").read_text())
    assert [p["pred"] for p in preds] == recorded["preds"]
    assert [p["label"] for p in preds] == recorded["labels"]
    dataset_dir = data_root / "caltech-101"
    assert [str(p["impath"]) for p in preds] == [str(dataset_dir / rel) for rel in recorded["impaths"]]
    if logits_atol is not None:
        torch.testing.assert_close(torch.tensor([p["logits"] for p in preds]), torch.tensor(recorded["logits"]),
                                   atol=logits_atol, rtol=0)
    return trainer
