"""Train or evaluate a prompt learner; every flag of the official ``train.py`` (CoOp / MaPLe repositories).

    python train.py --root DATA --seed 1 --trainer CoOp \
        --dataset-config-file configs/datasets/caltech101.yaml --config-file configs/trainers/CoOp/vit_b16.yaml \
        --output-dir output/... DATASET.NUM_SHOTS 16
    python train.py ... --eval-only --model-dir output/... --load-epoch 50

Config order: defaults (engine/config.py) -> every registered trainer's ``add_config`` -> dataset config file
-> method config file -> command-line flags -> the method's per-dataset settings (``dataset_config``) -> trailing
``KEY VALUE`` pairs. Unlike the official script, ``--seed 0`` is applied (the official ``if args.seed:`` silently
ignores it).
"""
from __future__ import annotations

import argparse
import errno
import fnmatch
import logging
import os
import random
import re
import sys
import time
from typing import List, Optional, Sequence

import numpy as np
import torch
import yaml
from yacs.config import CfgNode

import datasets  # noqa: F401  (fills DATASET_REGISTRY)
import trainers  # noqa: F401  (fills TRAINER_REGISTRY)
from engine import TRAINER_REGISTRY, build_trainer, distributed, get_cfg_default
from engine.logging import collect_env_info, log_to_file, setup_logger, write_config

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
    p.add_argument("--fresh", action="store_true",
                   help="(ours) --output-dir holds another run: move it aside (to <dir>.replaced-<time>), start over")
    p.add_argument("--debug", action="store_true", help="(ours) on an error, show the Python traceback")
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
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME) if cfg.TRAINER.NAME in TRAINER_REGISTRY else None
    if trainer_cls is not None:  # the method's per-dataset settings; the command line may still change them
        merge_opts(cfg, [str(item) for item in trainer_cls.dataset_config(cfg)])
    merge_opts(cfg, args.opts)
    if trainer_cls is not None:  # settings the method derives from others, written down here
        trainer_cls.resolve_config(cfg)
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


# Keys that may change between runs into one folder: they change how a run is executed, not what it computes.
NEUTRAL_KEYS = ("OUTPUT_DIR", "RESUME", "VERBOSE", "USE_CUDA", "DATASET.ROOT", "DATASET.SPLIT_CACHE_DIR",
                "DATALOADER.NUM_WORKERS", "DATALOADER.PIN_MEMORY", "DATALOADER.PERSISTENT_WORKERS",
                "DATALOADER.TEST.BATCH_SIZE", "TRAIN.PRINT_FREQ", "TEST.SAVE_PREDICTIONS", "TEST.CACHE_TEXT",
                "MODEL.TRIM_TEXT", "TRAINER.*.BATCHED_TEXT")


def _flat(node: dict, prefix: str = "") -> dict:
    """``{"A.B.C": value}`` of a nested config dict."""
    out = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def config_changes(cfg: CfgNode, output_dir: str) -> List[str]:
    """``KEY: saved -> now`` for every key that changes results and differs from ``<output_dir>/config.yaml``."""
    path = os.path.join(output_dir, "config.yaml")
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        saved = _flat(yaml.safe_load(f) or {})
    now = _flat(yaml.safe_load(cfg.dump()))
    return [f"{key}: {saved[key]!r} -> {now[key]!r}" for key in sorted(saved.keys() & now.keys())
            if saved[key] != now[key] and not any(fnmatch.fnmatch(key, pattern) for pattern in NEUTRAL_KEYS)]


def check_run_folder(cfg: CfgNode, fresh: bool) -> None:
    """A run folder records one config: refuse, before touching any file, a run whose config differs in a key
    that changes results (unless ``--fresh``)."""
    changes = config_changes(cfg, cfg.OUTPUT_DIR)
    if changes and not fresh:
        listed = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
        raise ConfigError(f"{cfg.OUTPUT_DIR} holds a run of another config ({listed}). Nothing was changed. Choose "
                          f"a new --output-dir, or add --fresh to move that run aside and start over.")


def start_run_folder(cfg: CfgNode, fresh: bool) -> None:
    """The run really starts: (with ``--fresh``, move the old run aside), write config.yaml and the log."""
    folder = cfg.OUTPUT_DIR
    if fresh and os.path.isdir(folder) and os.listdir(folder):
        aside = f"{folder.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(folder, aside)
        logger.info("Moved the previous run of %s to %s", folder, aside)
    os.makedirs(folder, exist_ok=True)
    write_config(cfg, folder)
    log_to_file(folder)


def main(argv: Optional[List[str]] = None):
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the trainer. Errors are raised
    (:func:`cli` turns them into one message); no file of the run folder is written before the run starts."""
    args = build_parser().parse_args(argv)
    setup_logger()  # the console now; log.txt once the run starts
    cfg = setup_cfg(args)
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        raise ConfigError(f"Unknown trainer {cfg.TRAINER.NAME!r} (--trainer / TRAINER.NAME). Registered trainers: "
                          f"{', '.join(TRAINER_REGISTRY.registered_names()) or '(none)'}")
    trainer_cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if args.eval_only and not (args.model_dir or cfg.MODEL.INIT_WEIGHTS or trainer_cls.EVALUATES_WITHOUT_WEIGHTS):
        raise ConfigError(f"--eval-only would evaluate the untrained initial prompts of {cfg.TRAINER.NAME}: give "
                          f"--model-dir (the run folder to evaluate) and --load-epoch")
    check_run_folder(cfg, args.fresh)
    distributed.init_from_env(cfg.USE_CUDA)  # under torchrun: join the other processes
    if not distributed.is_main():  # one process speaks and writes: the others only report problems
        logging.getLogger().setLevel(logging.WARNING)
    if distributed.world_size() > 1:
        logger.info("Processes: %d (torchrun); DATALOADER.TRAIN_X.BATCH_SIZE %d is split across them",
                    distributed.world_size(), cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
    if cfg.SEED >= 0:
        logger.info("Seeding every random generator with %d", cfg.SEED)
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    _log_args(args, cfg)
    logger.info("== environment ==\n%s\n", collect_env_info())
    trainer = build_trainer(cfg)
    if distributed.is_main():
        start_run_folder(cfg, args.fresh)
    distributed.barrier()
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
    elif not args.no_train:
        trainer.train()
    return trainer


def describe(err: BaseException) -> str:
    """One message for an error: what happened and, for the usual causes, what to do."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk holding {err.filename or 'the output'}: free some, or choose another place"
    if isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"cannot write {err.filename}: the folder is read-only or not yours. Choose another --output-dir "
                f"(or DATASET.SPLIT_CACHE_DIR for the dataset's cache files)")
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    return str(err) or type(err).__name__


def cli(argv: Optional[List[str]] = None) -> int:
    """``python train.py ...``: :func:`main`, with every error printed as one message (the traceback only with
    ``--debug`` or ``PROMPT_CLIP_DEBUG=1``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        main(argv)
    except KeyboardInterrupt:
        print("Interrupted. Run the same command again to continue from the last finished epoch.", file=sys.stderr)
        return 130
    except Exception as err:
        if "--debug" in argv or os.environ.get("PROMPT_CLIP_DEBUG") == "1":
            raise
        print(f"ERROR: {describe(err)}\n(--debug shows the traceback)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(cli())
