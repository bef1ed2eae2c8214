"""Every YAML under configs/ merges into the defaults + registered trainers' nodes; bad keys fail clearly."""
from __future__ import annotations

from pathlib import Path

import pytest

import train
from engine.config import get_cfg_default

REPO = Path(__file__).resolve().parents[2]
YAMLS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").rglob("*.yaml"))


def _args(*argv):
    return train.build_parser().parse_args(list(argv))


@pytest.mark.parametrize("rel", YAMLS)
def test_every_yaml_merges(rel):
    # Trainer nodes (TRAINER.COOP, ...) come from the registered trainers' add_config, as in setup_cfg.
    cfg = train.add_trainer_configs(get_cfg_default())
    train.merge_file(cfg, str(REPO / rel))
    if rel.startswith("configs/datasets/"):
        assert cfg.DATASET.NAME


def test_some_configs_exist():
    assert any(p.startswith("configs/datasets/") for p in YAMLS)
    assert any(p.startswith("configs/trainers/") for p in YAMLS)


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  NAME: sgd\n  LEARNING_RATE: 0.1\n")
    with pytest.raises(train.ConfigError, match=r"'OPTIM.LEARNING_RATE'.*bad.yaml"):
        train.setup_cfg(_args("--config-file", str(bad)))
    with pytest.raises(FileNotFoundError, match="nowhere.yaml"):
        train.setup_cfg(_args("--config-file", str(tmp_path / "nowhere.yaml")))


def test_unknown_or_bad_command_line_overrides():
    with pytest.raises(train.ConfigError, match=r"'OPTIM.LRR'.*command line"):
        train.setup_cfg(_args("OPTIM.LRR", "0.1"))
    with pytest.raises(train.ConfigError, match="KEY VALUE pairs"):
        train.setup_cfg(_args("OPTIM.LR"))
    with pytest.raises(train.ConfigError, match="command line"):
        train.setup_cfg(_args("OPTIM.MAX_EPOCH", "'ten'"))


def test_merge_order_and_seed(tmp_path):
    method = tmp_path / "m.yaml"
    method.write_text("OPTIM:\n  LR: 0.5\n  MAX_EPOCH: 7\nSEED: 3\n")
    cfg = train.setup_cfg(_args("--config-file", str(method), "--root", "/data", "--trainer", "X",
                                "OPTIM.LR", "0.25"))
    assert (cfg.OPTIM.LR, cfg.OPTIM.MAX_EPOCH, cfg.DATASET.ROOT, cfg.TRAINER.NAME) == (0.25, 7, "/data", "X")
    assert cfg.SEED == 3  # the default --seed -1 does not override a file
    assert train.setup_cfg(_args("--config-file", str(method), "--seed", "0")).SEED == 0  # 0 is a seed here
    assert cfg.is_frozen()
    assert list(train.setup_cfg(_args("--transforms", "random_flip")).INPUT.TRANSFORMS) == ["random_flip"]
    with pytest.raises(train.ConfigError, match="--source-domains.*remove them"):
        train.setup_cfg(_args("--source-domains", "a", "b"))
