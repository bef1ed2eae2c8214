"""Every method's scripts really run on a toy dataset with a tiny random CLIP: base-to-novel train + test on the
new classes, cross-dataset train + test, and the tables tool over the resulting output tree.

The jobs run through the scripts' own runner (tools/grid.py over tools/protocols.py: argument checks, job list,
skip/resume) with train.py called in this process instead of one Python start-up per job (~5 s each); that the
same commands come out of the shell scripts is asserted step by step against their DRY_RUN output, and
test_run_scripts.py runs the whole chain (bash -> runner -> python train.py) for real.
"""
from __future__ import annotations

import pytest

from tests.scripts.helpers import REPO, commands, run

# scripts folder (+ variant argument) -> registered trainer
METHODS = {"coop": "CoOp", "cocoop": "CoCoOp", "maple": "MaPLe", "vpt": "VPT", "ivlp": "IVLP",
           "language": "IVLP", "mudpt": "MuDPT", "mudpt:UMuDPT": "UMuDPT", "mudpt:UUMuDPT": "UUMuDPT", "mmrl": "MMRL",
           "promptsrc": "PromptSRC"}
TINY_OPTS = {"mmrl": " TRAINER.MMRL.REP_LAYERS [1,2]"}  # the official layers 6..12 are past the tiny CLIP's 2 blocks


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from tools.make_toy_dataset import make_toy_dataset

    root = tmp_path_factory.mktemp("toy") / "data"
    make_toy_dataset(root, n_classes=4, per_class=8, size=32, seed=0)
    return root


class Exited:
    """A finished process as the runner polls it."""

    def poll(self) -> int:
        return 0


@pytest.fixture()
def in_process(monkeypatch):
    """A launcher for tools.grid that runs ``python train.py ARGS`` as ``train.main(ARGS)`` before returning."""
    import train
    from engine.logging import close_logger

    monkeypatch.chdir(REPO)  # where the runner starts its subprocesses
    launched = []

    def launch(command, slot_env, log):
        assert command[:2] == ["python", "train.py"] and slot_env == {} and log is None, command
        launched.append(command)
        train.main(command[2:])
        return Exited()

    yield launch, launched
    close_logger()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_protocol_scripts_run_end_to_end(method, toy_data, tmp_path, tiny_clip_path, in_process):
    from tools import grid
    from tools.make_tables import collect

    launch, launched = in_process
    folder, _, variant = method.partition(":")
    extra = (variant,) if variant else ()
    opts = (f"MODEL.BACKBONE.PATH {tiny_clip_path} INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 USE_CUDA False "
            "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 2 DATALOADER.TEST.BATCH_SIZE 8 TRAIN.PRINT_FREQ 100"
            + TINY_OPTS.get(folder, ""))
    out = tmp_path / "out"
    env = {"EXTRA_OPTS": opts, "SHOTS": "2", "LOADEP": "1", "SRC_DATASET": "caltech101"}
    steps = [("base2new_train.sh", "caltech101", "1"), ("base2new_test.sh", "caltech101", "1"),
             ("xd_train.sh", "caltech101", "1"), ("xd_test.sh", "caltech101", "1")]
    for script, *args in steps:
        before = len(launched)
        dry = commands(run(f"{folder}/{script}", *args, *extra, data=str(toy_data), out_root=out, env=env))
        status = grid.main(["--script", f"scripts/{folder}/{script}", *args, *extra], launch=launch,
                                env={**env, "DATA": str(toy_data), "OUTPUT_ROOT": str(out)})
        assert status == 0 and launched[before:] == dry and len(dry) == 1, (script, dry, launched)
    results = sorted(out.rglob("results.json"))
    assert len(results) == 4, results
    trainer = METHODS[method]
    assert all(f"/{trainer}/" in str(p) for p in results)
    tables, _ = collect(out, [1])
    b2n = next(t for t in tables if any(r[0] == "Caltech101" for r in t.rows))
    row = next(r for r in b2n.rows if r[0] == "Caltech101")
    assert all(cell.values for cell in row[1:3])  # base and novel found for seed 1
