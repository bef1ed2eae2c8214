"""Every method's scripts really run on a toy dataset with a tiny random CLIP: base-to-novel train + test on the
new classes, cross-dataset train + test, and the tables tool over the resulting output tree."""
from __future__ import annotations

import sys

import pytest

from tests.scripts.helpers import run

# scripts folder (+ variant argument) -> registered trainer. The other MuDPT variants share every line of the
# script path with "mudpt:UMuDPT" (their command lines are checked by test_protocols.py; their trainers by
# tests/trainers); each real run costs a Python start-up (~5 s), so one variant runs here.
METHODS = {"coop": "CoOp", "cocoop": "CoCoOp", "maple": "MaPLe", "vpt": "VPT", "ivlp": "IVLP",
           "language": "IVLP", "mudpt:UMuDPT": "UMuDPT"}


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from tools.make_toy_dataset import make_toy_dataset

    root = tmp_path_factory.mktemp("toy") / "data"
    make_toy_dataset(root, n_classes=4, per_class=8, size=32, seed=0)
    return root


@pytest.mark.parametrize("method", sorted(METHODS))
def test_protocol_scripts_run_end_to_end(method, toy_data, tmp_path, tiny_clip_path):
    from tools.make_tables import collect

    folder, _, variant = method.partition(":")
    extra = (variant,) if variant else ()
    opts = (f"MODEL.BACKBONE.PATH {tiny_clip_path} INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 USE_CUDA False "
            "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 2 DATALOADER.TEST.BATCH_SIZE 8 TRAIN.PRINT_FREQ 100")
    env = {"PYTHON": sys.executable, "EXTRA_OPTS": opts, "SHOTS": "2", "LOADEP": "1"}
    out = tmp_path / "out"
    steps = [("base2new_train.sh", "caltech101", "1"), ("base2new_test.sh", "caltech101", "1"),
             ("xd_train.sh", "caltech101", "1"), ("xd_test.sh", "caltech101", "1")]
    for script, *args in steps:
        proc = run(f"{folder}/{script}", *args, *extra, data=str(toy_data), dry=False, out_root=out,
                   env={**env, "SRC_DATASET": "caltech101"})
        assert proc.returncode == 0, f"{folder}/{script}: {proc.stderr[-3000:]}"
    results = sorted(out.rglob("results.json"))
    assert len(results) == 4, results
    trainer = METHODS[method]
    assert all(f"/{trainer}/" in str(p) for p in results)
    tables, _ = collect(out, [1])
    b2n = next(t for t in tables if any(r[0] == "Caltech101" for r in t.rows))
    row = next(r for r in b2n.rows if r[0] == "Caltech101")
    assert all(cell.values for cell in row[1:3])  # base and novel found for seed 1
