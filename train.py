"""Train or evaluate a prompt learner; every flag of the official ``train.py`` (CoOp / MaPLe repositories).

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/caltech101.yaml --config-file configs/trainers/CoOp/vit_b16.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16
    python train.py ... --eval-only --model-dir output/... --load-epoch 50

Config order: defaults (engine/config.py) -> every registered trainer's ``add_config`` -> dataset config file
-> method config file -> command-line flags -> trailing ``KEY VALUE`` pairs. Unlike the official script,
``--seed 0`` is applied (the official ``if args.seed:`` silently ignores it).
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import re
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from yacs.config import CfgNode

import datasets  # noqa: F401  (fills DATASET_REGISTRY)
import trainers  # noqa: F401  (fills TRAINER_REGISTRY)
from engine import TRAINER_REGISTRY, build_trainer, get_cfg_default
from engine.logging import collect_env_info, setup_logger, write_config

logger = logging.getLogger("train")


# Flags of the official parser for Dassl's domain adaptation; no prompt-learning protocol sets them.
UNUSED_DASSL_FLAGS = ("--source-domains", "--target-domains", "--head")


class ConfigError(ValueError):
    """A config file or command-line override that does not fit the defaults (unknown key, bad value)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line of the official ``train.py`` (same flags and defaults), explained in our words."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", type=str, default="", help="folder that holds the datasets (DATASET.ROOT)")
    p.add_argument("--output-dir", type=str, default="", help="run folder for logs, checkpoints and results")
    p.add_argument("--resume", type=str, default="", help="run folder whose last checkpoint training continues")
    p.add_argument("--seed", type=int, default=-1, help="seed of every random generator; >= 0 (0 included) fixes it")
    p.add_argument("--transforms", type=str, nargs="+", help="training augmentations (INPUT.TRANSFORMS)")
    p.add_argument("--config-file", type=str, default="", help="the method's YAML (configs/trainers/...)")
    p.add_argument("--dataset-config-file", type=str, default="", help="the dataset's YAML (configs/datasets/...)")
    p.add_argument("--trainer", type=str, default="", help="registered trainer, e.g. CoOp or MaPLe")
    p.add_argument("--backbone", type=str, default="", help="CLIP model name (MODEL.BACKBONE.NAME)")
    for flag in UNUSED_DASSL_FLAGS:
        p.add_argument(flag, type=str, nargs="+", help="Dassl's domain-adaptation option; refused here")
    p.add_argument("--eval-only", action="store_true", help="evaluate, do not train")
    p.add_argument("--model-dir", type=str, default="", help="with --eval-only: run folder to take the weights from")
    p.add_argument("--load-epoch", type=int, help="with --eval-only: the epoch of the checkpoint to evaluate")
    p.add_argument("--no-train", action="store_true", help="build everything, then stop before training")
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER,
                   help="config overrides as KEY VALUE pairs, e.g. OPTIM.MAX_EPOCH 5")
    return p


def add_trainer_configs(cfg: CfgNode) -> CfgNode:
    """Let every registered trainer add its node, so any official config file / command line merges."""
    for _, trainer_cls in TRAINER_REGISTRY:
        add = getattr(trainer_cls, "add_config", None)
        if add is not None:
            add(cfg)
    return cfg


def _config_error(err: Exception, source: str) -> ConfigError:
    msg = str(err.args[0]) if err.args else str(err)
    unknown = re.search(r"Non-existent (?:config )?key: (\S+)", msg)
    if unknown:
        trainers_known = ", ".join(TRAINER_REGISTRY.registered_names())
        return ConfigError(f"Unknown config key {unknown.group(1)!r} in {source}. Check its spelling, or whether "
                           f"the trainer that defines it is registered ({trainers_known})")
    return ConfigError(f"Invalid config in {source}: {msg}")


def merge_file(cfg: CfgNode, path: str) -> None:
    """``cfg.merge_from_file(path)`` with errors that name the file and the offending key."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: {path}")
    try:
        cfg.merge_from_file(path)
    except (KeyError, ValueError, AssertionError) as e:
        raise _config_error(e, f"config file {path}") from e


def merge_opts(cfg: CfgNode, opts: Optional[Sequence[str]]) -> None:
    """Merge trailing ``KEY VALUE`` pairs, with errors that name the key."""
    opts = list(opts or [])
    if len(opts) % 2:
        raise ConfigError(f"Command-line overrides must be KEY VALUE pairs; got an odd number: {opts}")
    try:
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        raise _config_error(e, "the command line") from e


def reset_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Copy the flags that were given into the config."""
    given = [flag for flag in UNUSED_DASSL_FLAGS if getattr(args, flag[2:].replace("-", "_"), None)]
    if given:
        raise ConfigError(f"{', '.join(given)}: options of Dassl's domain adaptation, which no protocol of this "
                          f"codebase uses; remove them from the command line")
    flags = {"root": "DATASET.ROOT", "output_dir": "OUTPUT_DIR", "resume": "RESUME", "transforms": "INPUT.TRANSFORMS",
             "trainer": "TRAINER.NAME", "backbone": "MODEL.BACKBONE.NAME"}
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value:
            node, leaf = cfg, key.split(".")
            for part in leaf[:-1]:
                node = node[part]
            node[leaf[-1]] = value
    if args.seed is not None and args.seed >= 0:  # deliberate fix: the official `if args.seed:` drops seed 0
        cfg.SEED = args.seed


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    """Defaults -> trainers' nodes -> dataset file -> method file -> flags -> opts; returns a frozen config."""
    cfg = add_trainer_configs(get_cfg_default())
    if args.dataset_config_file:
        merge_file(cfg, args.dataset_config_file)
    if args.config_file:
        merge_file(cfg, args.config_file)
    reset_cfg(cfg, args)
    merge_opts(cfg, args.opts)
    cfg.freeze()
    return cfg


def set_random_seed(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def _log_args(args: argparse.Namespace, cfg: CfgNode) -> None:
    lines = ["== command line =="] + [f"{k}: {v}" for k, v in sorted(vars(args).items())]
    logger.info("\n".join(lines + ["== resolved config ==", str(cfg)]))


def main(argv: Optional[List[str]] = None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the trainer."""
    args = build_parser().parse_args(argv)
    cfg = setup_cfg(args)
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        raise ValueError(f"Unknown trainer {cfg.TRAINER.NAME!r} (--trainer / TRAINER.NAME). Registered trainers: "
                         f"{', '.join(TRAINER_REGISTRY.registered_names()) or '(none)'}")
    setup_logger(cfg.OUTPUT_DIR)
    write_config(cfg, cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        logger.info("Seeding every random generator with %d", cfg.SEED)
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    _log_args(args, cfg)
    logger.info("== environment ==\n%s\n", collect_env_info())
    trainer = build_trainer(cfg)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    elif not args.no_train:
        trainer.train()
    return trainer


if __name__ == "__main__":
    main(sys.argv[1:])
