"""The image-feature cache: computed once, keyed by everything that determines the features, never trusting a
damaged file."""
from __future__ import annotations

import os

import pytest
import torch

from engine.features import FeatureBatches, FeatureCache


def _counting(tensors):
    calls = []

    def compute():
        calls.append(1)
        return {name: t.clone() for name, t in tensors.items()}

    return compute, calls


@pytest.fixture()
def stored(tmp_path):
    cache = FeatureCache(str(tmp_path / "features"))
    tensors = {"features": torch.randn(5, 8), "labels": torch.arange(5)}
    parts = {"encoder": "w1", "split": "abc", "transform": "T", "aug_epoch": None}
    compute, calls = _counting(tensors)
    cache.get(parts, compute)
    return cache, parts, tensors, calls


def test_second_request_reads_the_file(stored):
    cache, parts, tensors, calls = stored
    compute, again = _counting(tensors)
    got = cache.get(dict(reversed(list(parts.items()))), compute)  # key order does not matter
    assert again == [] and calls == [1]
    assert torch.equal(got["features"], tensors["features"]) and torch.equal(got["labels"], tensors["labels"])


@pytest.mark.parametrize("change", [{"encoder": "w2"}, {"split": "abd"}, {"transform": "T2"}, {"aug_epoch": 3}])
def test_any_change_of_what_determines_them_recomputes(stored, change):
    cache, parts, tensors, _ = stored
    compute, calls = _counting(tensors)
    cache.get({**parts, **change}, compute)
    assert calls == [1]
    assert len(os.listdir(cache.directory)) == 2


def _damage_truncate(path):
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])


def _damage_flip_last_byte(path):  # inside the tensor data: only the checksum notices
    data = bytearray(open(path, "rb").read())
    data[-1] ^= 0xFF
    open(path, "wb").write(bytes(data))


def _damage_empty(path):
    open(path, "wb").close()


@pytest.mark.parametrize("damage", [_damage_truncate, _damage_flip_last_byte, _damage_empty])
def test_a_damaged_file_is_detected_and_rebuilt(stored, damage, caplog):
    cache, parts, tensors, _ = stored
    path = cache.path(cache.key(parts))
    damage(path)
    compute, calls = _counting(tensors)
    got = cache.get(parts, compute)
    assert calls == [1] and "damaged" in caplog.text
    assert torch.equal(got["features"], tensors["features"])
    assert cache.load(cache.key(parts)) is not None  # the rebuilt file is sound


def test_a_file_renamed_to_another_key_is_not_trusted(stored):
    cache, parts, tensors, _ = stored
    other = {**parts, "encoder": "w9"}
    os.replace(cache.path(cache.key(parts)), cache.path(cache.key(other)))
    assert cache.load(cache.key(other)) is None


def test_feature_batches_shuffle_drop_last_and_in_order():
    class Item:
        def __init__(self, i):
            self.impath, self.label = f"img{i}", i % 3

    items = [Item(i) for i in range(10)]
    feats = torch.arange(10.0).unsqueeze(1)
    labels = torch.tensor([i.label for i in items])
    ordered = FeatureBatches(lambda e: (feats, labels), items, 4, shuffle=False)
    assert len(ordered) == 3 and [b["feat"].flatten().tolist() for b in ordered][-1] == [8.0, 9.0]
    shuffled = FeatureBatches(lambda e: (feats, labels), items, 4, shuffle=True)
    batches = list(shuffled)
    assert len(batches) == 2 and all(len(b["label"]) == 4 for b in batches)
    for b in batches:
        assert b["impath"] == [f"img{int(v)}" for v in b["feat"].flatten()]
        assert torch.equal(b["label"], labels[b["index"]])


def test_feature_trainers_refuse_torchrun(monkeypatch):
    from engine import distributed
    from engine.features import FeatureTrainer

    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    with pytest.raises(RuntimeError, match="not torchrun"):
        FeatureTrainer.build_data_loader(object.__new__(FeatureTrainer))
