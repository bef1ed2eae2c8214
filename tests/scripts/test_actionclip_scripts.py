"""ActionCLIP's scripts run on synthetic videos with a tiny random CLIP: train, test and zero-shot transfer to
another dataset through the one runner (tools/grid.py, planned by tools/protocols.py), then the tables tool reads
top-1 / top-5."""
from __future__ import annotations

from tests.scripts.helpers import commands, run
from tests.scripts.test_methods_end_to_end import in_process  # noqa: F401  (fixture)


def test_actionclip_scripts_run_end_to_end(tmp_path, tiny_clip_path, in_process):  # noqa: F811
    from tools import grid
    from tools.make_synthetic_videos import make_videos
    from tools.make_tables import collect, to_markdown

    data = tmp_path / "data"
    make_videos(str(data), "UCF101Video", classes=5, train=1, val=1, size=(32, 32))
    make_videos(str(data), "HMDB51Video", classes=5, train=1, val=1, size=(32, 32), seed=1)
    launch, launched = in_process
    opts = (f"MODEL.BACKBONE.PATH {tiny_clip_path} INPUT.SIZE (32,32) DATALOADER.NUM_WORKERS 0 USE_CUDA False "
            "OPTIM.MAX_EPOCH 1 DATALOADER.TRAIN_X.BATCH_SIZE 5 DATALOADER.TEST.BATCH_SIZE 5 "
            "TRAINER.ACTIONCLIP.NUM_SEGMENTS 2 TRAINER.ACTIONCLIP.SIM_HEADER meanP")
    out = tmp_path / "out"
    env = {"EXTRA_OPTS": opts, "SRC_DATASET": "ucf101_video"}
    for script, *args in [("train.sh", "ucf101_video", "1"), ("test.sh", "ucf101_video", "1"),
                          ("zero_shot.sh", "hmdb51_video", "1")]:
        before = len(launched)
        dry = commands(run(f"actionclip/{script}", *args, data=str(data), out_root=out, env=env))
        status = grid.main(["--script", f"scripts/actionclip/{script}", *args], launch=launch,
                           env={**env, "DATA": str(data), "OUTPUT_ROOT": str(out)})
        assert status == 0 and launched[before:] == dry and len(dry) == 1, (script, dry, launched)
    assert "configs/trainers/ActionCLIP/ucf_train.yaml" in launched[-1]
    tables, missing = collect(out, [1])
    table = next(t for t in tables if t.name == "video_ActionCLIP")
    assert [row[:2] for row in table.rows] == [["train", "ucf101_video/ucf_train"], ["test", "ucf101_video/ucf_train"],
                                               ["zero_shot", "ucf101_video_to_hmdb51_video/ucf_train"]]
    assert all(cell.n == 1 for row in table.rows for cell in row[2:]) and not missing
    assert table.rows[1][2].values == table.rows[0][2].values  # the test reloads the trained model
    assert "Top-5" in to_markdown(tables, missing)


def test_actionclip_scripts_name_the_video_datasets():
    proc = run("actionclip/train.sh", "caltech101", "1")
    assert proc.returncode != 0 and "unknown video dataset 'caltech101'" in proc.stderr
    assert "kinetics400_video" in proc.stderr
