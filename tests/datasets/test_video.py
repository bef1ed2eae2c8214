"""Video readers (ActionCLIP list format), the synthetic-video generator and the clip transforms."""
from __future__ import annotations

import random

import pytest
import torch
from PIL import Image

import datasets  # noqa: F401  (registers the readers)
from engine.config import get_cfg_default
from engine.registry import DATASET_REGISTRY
from engine.video import (MultiScaleCrop, VideoFrameDataset, make_video_loader, eval_clip_transform,
                          training_clip_transform)
from tools.make_synthetic_videos import make_videos


def _cfg(root, name):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME = str(root), name
    return cfg


@pytest.mark.parametrize("name,folder", [("UCF101Video", "ucf101"), ("HMDB51Video", "hmdb51"),
                                         ("Kinetics400Video", "kinetics400")])
def test_generator_and_reader(tmp_path, name, folder):
    make_videos(str(tmp_path), name, classes=5, train=2, val=1, size=(20, 24))
    reader = DATASET_REGISTRY.get(name)(_cfg(tmp_path, name))
    assert len(reader.train_x) == 10 and len(reader.val) == 5 and reader.test == reader.val
    assert len(reader.classnames) == 5 and reader.train_x[1].label == 1
    assert reader.train_x[1].classname == reader.classnames[1]
    first = reader.train_x[0]
    assert first.impath.startswith(str(tmp_path / folder)) and first.num_frames >= 3


def test_shipped_class_lists():
    from datasets.video import SHIPPED_LABELS, read_class_names

    counts = {f: len(read_class_names(f"{SHIPPED_LABELS}/{f}")) for f in
              ("ucf_labels.csv", "hmdb51_labels.csv", "kinetics_400_labels.csv")}
    assert counts == {"ucf_labels.csv": 101, "hmdb51_labels.csv": 51, "kinetics_400_labels.csv": 400}


def test_bad_list_line_and_missing_list(tmp_path):
    paths = make_videos(str(tmp_path), classes=5, train=1, val=1, size=(20, 24))
    with open(paths["train"], "a") as f:
        f.write("rawframes/x 7\n")
    with pytest.raises(ValueError, match="expected '<frame folder> <num_frames> <label>'"):
        DATASET_REGISTRY.get("UCF101Video")(_cfg(tmp_path, "UCF101Video"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DATASET_REGISTRY.get("HMDB51Video")(_cfg(tmp_path, "HMDB51Video"))


def test_eval_clip_transforms_and_loader(tmp_path):
    make_videos(str(tmp_path), classes=5, train=1, val=1, size=(40, 48))
    items = DATASET_REGISTRY.get("UCF101Video")(_cfg(tmp_path, "UCF101Video")).val
    test_ds = VideoFrameDataset(items, 4, eval_clip_transform(32))
    clip = test_ds[0]["img"]
    assert clip.shape == (12, 32, 32) and torch.equal(clip, test_ds[0]["img"])
    random.seed(0)
    assert VideoFrameDataset(items, 4, training_clip_transform(32))[0]["img"].shape == (12, 32, 32)
    loader = make_video_loader(items, 4, 2, eval_clip_transform(32), shuffle=False, drop_last=True)
    assert len(loader) == 2  # 5 videos, batches of 2, the last incomplete one dropped


def test_randaugment_runs_on_each_frame_before_the_clip_augmentations(monkeypatch):
    """The Kinetics-400 config's RandAugment (N 2, M 9): each frame gets its own call, before the crop."""
    augment = training_clip_transform(32, (2, 9)).augment
    assert (augment.randaug.num_ops, augment.randaug.magnitude) == (2, 9)
    assert training_clip_transform(32).augment.randaug is None  # N 0: off (the UCF101 / HMDB51 configs)
    seen = []
    monkeypatch.setattr(augment, "randaug", lambda frame: seen.append(frame.size) or frame.resize((60, 50)))
    frames = [Image.new("RGB", (48, 40), (10 * i, 0, 0)) for i in range(3)]
    out = augment(frames)
    assert seen == [(48, 40)] * 3 and [f.size for f in out] == [(32, 32)] * 3


def test_multiscale_crop_is_one_of_the_fixed_positions():
    crop = MultiScaleCrop(32)
    rng = random.Random(0)
    for _ in range(50):
        w, h, x, y = crop.params(48, 40, rng)
        sides = [40, 35, 32, 26]  # int(40 * scale), a side within 3 px of 32 snapped to 32
        assert abs(sides.index(w) - sides.index(h)) <= 1
        assert x in {i * ((48 - w) // 4) for i in range(5)} and y in {i * ((40 - h) // 4) for i in range(5)}


def test_random_segment_indices_follow_tsn():
    import numpy as np

    from engine.video import random_segment_indices

    rng = np.random.RandomState(3)
    for n in range(1, 30):
        for t in (1, 4, 8):
            got = random_segment_indices(n, t, rng)
            assert len(got) == t and got == sorted(got) and all(0 <= i < n for i in got)
            if n > t:  # one frame inside each segment [i*n//t, (i+1)*n//t)
                assert all(i * n // t <= f < (i + 1) * n // t for i, f in enumerate(got)), (n, t, got)
            else:
                assert set(got) == set(range(n))
