"""GPU checks, outside the default test run (pytest.ini: norecursedirs gpu): ``python -m pytest tests/gpu``.

Every trainer takes one training step and evaluates one batch on CUDA under each precision, and the logits, loss
and parameter update are compared with the same step on the CPU in fp32; with two or more GPUs, two processes
(NCCL) train every trainer to the numbers of one. Tolerances (TOLERANCE) are about twice the largest error the same
check shows on the CPU in fp16 and bf16 for the 8 trainers (logits 3.2e-3 and 3.2e-2 of the abs max, loss 3e-3 and
1.5e-2, update 2e-2 and 1.3e-1 of the abs max over all learnable tensors, cosine >= 0.994); fp32 allows TF32
convolutions (cuDNN's default on Ampere and later, ~1e-3 relative). They have not been run on a GPU yet.
tests/gpu/run.sh runs these and the full benchmark.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import trainers  # noqa: F401  (fills the registry)
from engine import TRAINER_REGISTRY
from tests.engine.ddp_driver import CONFIGS, TINY_OPTS, single_process
from tests.trainers.helpers import build

REPO = Path(__file__).resolve().parents[2]
TRAINABLE = [name for name, cls in TRAINER_REGISTRY if not single_process(cls)]  # image prompt trainers
# precision -> (logits, loss, update, cosine): logits and update (all learnable tensors) as fractions of the CPU fp32
# abs max, the loss absolute, the least cosine similarity of the update with the CPU one
TOLERANCE = {"fp32": (2e-3, 1e-3, 1e-2, 0.9999), "amp": (1e-2, 1e-2, 5e-2, 0.999),
             "fp16": (1e-2, 1e-2, 5e-2, 0.999), "bf16": (6e-2, 3e-2, 2.5e-1, 0.99)}


def _one_step(name: str, device: str, prec: str, data: Path, weights: Path, out: Path):
    """Eval logits (B, C), the training loss and each learnable tensor's change after one SGD step, on the CPU."""
    node = dict(TRAINER_REGISTRY)[name].CFG_NODE
    trainer = build(["--root", str(data), "--seed", "1", "--trainer", name, "--output-dir", str(out),
                     "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
                     "--config-file", str(REPO / "configs/trainers" / CONFIGS.get(name, "CoOp/vit_b16.yaml")),
                     "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base", "INPUT.SIZE", "(32, 32)",
                     "MODEL.BACKBONE.PATH", str(weights), "DATALOADER.NUM_WORKERS", "0", "OPTIM.LR", "0.02",
                     f"TRAINER.{node}.PREC", prec, "USE_CUDA", str(device == "cuda"), *TINY_OPTS.get(name, ())])
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(4, 3, 32, 32, generator=generator)  # (B, 3, H, W)
    labels = torch.arange(4) % trainer.dm.num_classes  # (B,)
    params = {k: p for k, p in trainer.model.named_parameters() if p.requires_grad}
    before = {k: p.detach().float().cpu().clone() for k, p in params.items()}
    trainer.set_model_mode("eval")
    with torch.no_grad():
        logits = trainer.model_inference(images.to(trainer.device)).float().cpu()
    trainer.set_model_mode("train")
    loss = trainer.forward_backward({"img": images, "label": labels})["loss"]
    update = {k: p.detach().float().cpu() - before[k] for k, p in params.items()}
    return logits, loss, update


@pytest.fixture(scope="module")
def cpu_reference(_pristine_data, tiny_clip_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("cpu")
    return {name: _one_step(name, "cpu", "fp32", _pristine_data, tiny_clip_path, out / name) for name in TRAINABLE}


def _close(got: torch.Tensor, expected: torch.Tensor, fraction: float, what: str) -> None:
    scale = max(expected.abs().max().item(), 1e-12)
    err = (got - expected).abs().max().item()
    assert err <= fraction * scale, f"{what}: max error {err:.3e} > {fraction} x abs max {scale:.3e}"


@pytest.mark.parametrize("prec", list(TOLERANCE))
@pytest.mark.parametrize("name", TRAINABLE)
def test_one_step_on_cuda_matches_the_cpu(name, prec, cpu_reference, _pristine_data, tiny_clip_path, tmp_path):
    logits, loss, update = _one_step(name, "cuda", prec, _pristine_data, tiny_clip_path, tmp_path)
    ref_logits, ref_loss, ref_update = cpu_reference[name]
    logits_tol, loss_tol, update_tol, least_cosine = TOLERANCE[prec]
    _close(logits, ref_logits, logits_tol, f"{name} {prec} logits")
    assert abs(loss - ref_loss) <= loss_tol, (name, prec, loss, ref_loss)
    assert sorted(update) == sorted(ref_update)
    got, expected = (torch.cat([u[k].flatten() for k in sorted(ref_update)]) for u in (update, ref_update))
    _close(got, expected, update_tol, f"{name} {prec} update")
    cosine = torch.nn.functional.cosine_similarity(got, expected, dim=0).item()
    assert cosine >= least_cosine, f"{name} {prec}: update direction off, cosine {cosine:.5f}"


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two GPUs")
def test_two_gpus_with_nccl_train_what_one_gpu_trains(_pristine_data, tiny_clip_path, tmp_path):
    driver = REPO / "tests" / "engine" / "ddp_driver.py"
    for processes in (1, 2):
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
                    if processes > 1 else [sys.executable])
        result = subprocess.run([*launcher, str(driver), str(tmp_path / f"p{processes}"), str(_pristine_data),
                                 str(tiny_clip_path), "cuda"], cwd=REPO, capture_output=True, text=True,
                                timeout=1800, env=dict(os.environ))
        assert result.returncode == 0, result.stderr[-3000:]
    for name in TRAINABLE:
        one, two = tmp_path / "p1" / name, tmp_path / "p2" / name
        (first,), (second,) = one.glob("*/model.pth.tar-2"), two.glob("*/model.pth.tar-2")
        expected, got = (torch.load(f, weights_only=True)["state_dict"] for f in (first, second))
        for key, value in expected.items():
            _close(got[key].float(), value.float(), 1e-4, f"{name} {key}")  # NCCL sums in another order
        results = [json.loads((f / "results.json").read_text()) for f in (one, two)]
        assert results[1]["world_size"] == 2 and results[1]["num_images"] == results[0]["num_images"]
        assert abs(results[1]["accuracy"] - results[0]["accuracy"]) <= 100 / results[0]["num_images"]
