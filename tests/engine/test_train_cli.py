"""train.py: the official flags, ``main([...])`` end to end on the toy trainer, eval-only, errors."""
from __future__ import annotations

import random

import pytest
import torch
import yaml

import train
from engine import TRAINER_REGISTRY
from engine.logging import close_logger
from tests.engine.engine_fakes import ToyTrainer

NAME = "EngineToyTrainer"


@pytest.fixture(autouse=True)
def _close_run_logger():
    """Runs install log handlers on the root logger; do not let them outlive the test."""
    yield
    close_logger()


@pytest.fixture()
def toy_registered(monkeypatch):
    """Register the toy trainer for one test only (other tests iterate over the registry)."""
    monkeypatch.setitem(TRAINER_REGISTRY._classes, NAME, ToyTrainer)
    return NAME


def _argv(out, *extra):
    return ["--trainer", NAME, "--output-dir", str(out), "--seed", "0", *extra, "OPTIM.NAME", "sgd",
            "OPTIM.LR", "0.1", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR_SCHEDULER", "cosine", "USE_CUDA", "False",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAINER.TOYENGINE.PREC", "fp32"]


def test_parser_has_every_official_flag():
    args = train.build_parser().parse_args(
        ["--root", "r", "--output-dir", "o", "--resume", "x", "--seed", "3", "--source-domains", "a", "b",
         "--target-domains", "c", "--transforms", "t1", "t2", "--config-file", "m.yaml", "--dataset-config-file",
         "d.yaml", "--trainer", "CoOp", "--backbone", "RN50", "--head", "h", "--eval-only", "--model-dir", "md",
         "--load-epoch", "5", "--no-train", "OPTIM.LR", "0.1", "DATASET.NUM_SHOTS", "16"])
    assert (args.root, args.output_dir, args.resume, args.seed) == ("r", "o", "x", 3)
    assert args.source_domains == ["a", "b"] and args.target_domains == ["c"] and args.transforms == ["t1", "t2"]
    assert (args.config_file, args.dataset_config_file, args.trainer, args.backbone, args.head) == (
        "m.yaml", "d.yaml", "CoOp", "RN50", ["h"])
    assert args.eval_only and args.no_train and (args.model_dir, args.load_epoch) == ("md", 5)
    assert args.opts == ["OPTIM.LR", "0.1", "DATASET.NUM_SHOTS", "16"]
    defaults = train.build_parser().parse_args([])
    assert defaults.seed == -1 and defaults.load_epoch is None and defaults.opts == []


def test_main_trains_then_evaluates(tmp_path, toy_registered):
    out = tmp_path / "run"
    trainer = train.main(_argv(out))
    assert torch.initial_seed() == 0  # --seed 0 is applied
    log = (out / "log.txt").read_text()
    assert "Seeding every random generator with 0" in log and "== environment ==" in log
    assert "Finished training" in log
    assert "* accuracy: " in log and log.rstrip().splitlines()[-1].startswith("Time taken: ")
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["TRAINER"]["NAME"] == NAME and cfg["SEED"] == 0 and cfg["OPTIM"]["LR"] == 0.1
    assert (out / "toy" / "model.pth.tar-2").is_file() and (out / "results.json").is_file()

    # Re-running into the same folder rotates the log and resumes (nothing left to train).
    train.main(_argv(out))
    rotated = list(out.glob("log.txt-*"))
    assert len(rotated) == 1 and "Finished training" in rotated[0].read_text()
    assert "Continuing the run saved in" in (out / "log.txt").read_text()
    assert "epoch [" not in (out / "log.txt").read_text()

    # Eval-only: loads the given epoch and tests, no training.
    ev_out = tmp_path / "eval"
    evaluated = train.main(_argv(ev_out, "--eval-only", "--model-dir", str(out), "--load-epoch", "2"))
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, evaluated.model.state_dict()[k]), k
    assert (ev_out / "results.json").is_file() and not (ev_out / "tensorboard").exists()
    assert "Weights of toy read from" in (ev_out / "log.txt").read_text()


def test_no_train_and_negative_seed(tmp_path, toy_registered):
    random.seed(5)
    expected = random.random()
    random.seed(5)
    argv = _argv(tmp_path, "--no-train")
    argv[argv.index("--seed") + 1] = "-1"
    train.main(argv)
    assert random.random() == expected  # SEED -1: nothing reseeded
    assert not (tmp_path / "toy").exists() and (tmp_path / "config.yaml").is_file()


def test_unknown_trainer_lists_registered(tmp_path, toy_registered):
    argv = _argv(tmp_path)
    argv[argv.index("--trainer") + 1] = "NoSuchTrainer"
    with pytest.raises(ValueError, match=rf"NoSuchTrainer.*{NAME}"):
        train.main(argv)
    assert not (tmp_path / "log.txt").exists()  # failed before creating anything


def test_unknown_key_fails_at_start_up(tmp_path, toy_registered):
    with pytest.raises(train.ConfigError, match="TRAINER.TOYENGINE.PRECISION"):
        train.main(_argv(tmp_path, "TRAINER.TOYENGINE.PRECISION", "fp16"))
