"""torchrun: two CPU processes (gloo) train every registered trainer to the tensors and accuracy of one process
on the same global batches; only the first process writes; a global batch that does not split is refused."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import trainers  # noqa: F401  (fills the registry)
from engine import TRAINER_REGISTRY

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "engine" / "ddp_driver.py"
sys.path.insert(0, str(DRIVER.parent))
from ddp_driver import SAME_STEP_AS_ANOTHER, single_process  # noqa: E402

TRAINABLE = [name for name, cls in TRAINER_REGISTRY if not single_process(cls) and name not in SAME_STEP_AS_ANOTHER]


def _launch(processes: int, out: Path, data: Path, weights: Path) -> None:
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
           if processes > 1 else [sys.executable])
    result = subprocess.run([*cmd, str(DRIVER), str(out), str(data), str(weights)], cwd=REPO, capture_output=True,
                            text=True, timeout=900, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, _pristine_data, tiny_clip_path):
    root = tmp_path_factory.mktemp("ddp")
    for processes in (1, 2):
        _launch(processes, root / f"p{processes}", _pristine_data, tiny_clip_path)
    return root


def _final(folder: Path):
    (checkpoint,) = folder.glob("*/model.pth.tar-2")
    return torch.load(checkpoint, weights_only=True)["state_dict"]


@pytest.mark.parametrize("name", TRAINABLE)
def test_two_processes_train_what_one_process_trains(name, runs):
    one, two = runs / "p1" / name, runs / "p2" / name
    expected, got = _final(one), _final(two)
    assert sorted(got) == sorted(expected)
    # The two processes sum the gradients in another order (rounding ~1e-7 of a gradient). SGD passes that on
    # unchanged (1e-5 of the tensor's abs max holds); Adam divides each step by the root of the second moment, which
    # scales the rounding of near-zero gradients up to lr-sized differences: 1e-4 there (MMRL measured 1.4e-5).
    adam = yaml.safe_load((one / "config.yaml").read_text())["OPTIM"]["NAME"] in ("adam", "adamw")
    for key, value in expected.items():
        assert (got[key] - value).abs().max() <= (1e-4 if adam else 1e-5) * max(value.abs().max().item(), 1e-12), key
    result_one, result_two = (json.loads((f / "results.json").read_text()) for f in (one, two))
    assert result_two["accuracy"] == result_one["accuracy"] and result_two["num_images"] == 36
    assert (result_one["world_size"], result_two["world_size"]) == (1, 2)
    log = (two / "log.txt").read_text()
    assert "Processes: 2 (torchrun)" in log and log.count("Finished training") == 1  # one process writes


def test_a_global_batch_that_does_not_split_is_refused(monkeypatch):
    """Under torchrun (here: the world size the loaders read, set to 2) a global batch of 1 cannot be split."""
    from engine import data, distributed
    from engine.config import get_cfg_default

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    items = [data.Datum(f"img{i}.jpg", 0, "a") for i in range(4)]
    cfg = get_cfg_default()
    cfg.DATALOADER.NUM_WORKERS = 0
    with pytest.raises(ValueError, match="BATCH_SIZE 1 is the global batch: it must be a multiple of the 2 processes"):
        data.make_loader(cfg, items, 1, lambda image: image, is_train=True)
    assert len(data.make_loader(cfg, items, 2, lambda image: image, is_train=True)) == 2
