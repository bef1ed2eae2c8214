"""Which train.py jobs a script call means: the protocols of every method as data.

Every ``scripts/<method>/<protocol>.sh`` (coop/main.sh, coop/eval.sh, zsclip/zeroshot.sh, run_all.sh too) links to
scripts/run.sh, which calls ``python tools/grid.py --script <path it was called as> ARGS...``: the folder names the
method, the file the protocol (``bash scripts/run.sh METHOD PROTOCOL ARGS...`` names both). :func:`plan` lists
the jobs, ``Job(out, argv, needs)``, and tools/grid.py runs them (one after the other for a script, over GPUs or
SLURM for a grid). The environment variables are listed in the README ("Real experiments"); coop/eval.sh also
reads NCTX, CSC and CTP.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
# Method (or variant, see VARIANTS) -> trainer, then the config of base-to-novel, cross-dataset and few-shot runs. The
# few-shot files of MaPLe/VPT/IVLP are ours (the official repositories ship none). CoOp: ImageNet trains 50
# epochs and few-shot follows its paper's schedule (Protocols.cfg). MuDPT: the authors' scripts (their
# cross-dataset run names the N_CTX 2, 5-epoch file); UUMuDPT has no official config and takes MuDPT's.
METHODS = {
    "coop": ("CoOp", "vit_b16_ctxv1", "vit_b16_ctxv1", ""),
    "cocoop": ("CoCoOp", *["vit_b16_c4_ep10_batch1_ctxv1"] * 3),
    "maple": ("MaPLe", "vit_b16_c2_ep5_batch4_2ctx", "vit_b16_c2_ep5_batch4_2ctx_cross_datasets",
              "vit_b16_c2_ep50_batch4_2ctx_few_shot"),
    "vpt": ("VPT", *["vit_b16_c2_ep5_batch4_4"] * 2, "vit_b16_c2_ep5_batch4_4_few_shot"),
    "ivlp": ("IVLP", *["vit_b16_c2_ep5_batch4_2+2ctx"] * 2, "vit_b16_c2_ep5_batch4_2+2ctx_few_shot"),
    "language": ("IVLP", *["vit_b16_c2_ep5_batch4_4ctx_language_only"] * 2,
                 "vit_b16_c2_ep5_batch4_4ctx_language_only_few_shot"),
    "MuDPT": ("MuDPT", "vit_b16_bz4_ep10_nctx4_depth9", "vit_b16_bz4_ep5_nctx2_depth9",
              "vit_b16_bz4_ep10_nctx4_depth9"),
    "UMuDPT": ("UMuDPT", *["vit_b16_bz4_ep5_nctx2_depth9"] * 3),
    "UUMuDPT": ("UUMuDPT", *["vit_b16_bz4_ep10_nctx4_depth9"] * 3),
    "mmrl": ("MMRL", "vit_b16", "vit_b16_cross_datasets", "vit_b16_few_shot"),
    # PromptSRC: its xd scripts name a missing ep5 file; the shipped ep20 cross-dataset file (their --load-epoch 20)
    "promptsrc": ("PromptSRC", "vit_b16_c2_ep20_batch4_4+4ctx", "vit_b16_c2_ep20_batch4_4+4ctx_cross_datasets",
                  "vit_b16_c2_ep50_batch4_4+4ctx_few_shot"),
    "zsclip": ("ZeroshotCLIP",),  # its CFG names a CoOp config (the backbone)
    "kgcoop": ("KgCoOp", *["vit_b16_ep100_ctxv1"] * 3),  # one config in every official script (few-shot: ours)
    # ProGrad ships RN50 configs only (its scripts: rn50_ep100, 16 context tokens); TCP one ViT-B/16 file
    "prograd": ("ProGrad", *["rn50_ep100"] * 3),
    "tcp": ("TCP", *["vit_b16_ep100_ctxv1"] * 3),
    # feature-based baselines: few-shot only (the official codes have no other protocol); ViT-B/16 configs so that
    # they sit beside the prompt methods (CFG=rn50: the official backbone)
    "linear_probe": ("LinearProbeCLIP", "", "", "vit_b16"),
    "clip_adapter": ("CLIP_Adapter", "", "", "vit_b16"),
    "tip_adapter": ("TipAdapter", "", "", "vit_b16"),
    "tip_adapter_f": ("TipAdapterF", "", "", "vit_b16"),
    "actionclip": ("ActionCLIP",),  # video datasets: its config follows the dataset (ACTIONCLIP_CONFIGS)
    # DePT over each base method (its configs.py: one config per trainer for both of its protocols; no few-shot)
    "ExtrasLinearProbeMaPLe": ("ExtrasLinearProbeMaPLe", *["vit_b16_c2_ep10_batch4_2ctx"] * 2),
    "ExtrasLinearProbeCoOp": ("ExtrasLinearProbeCoOp", *["vit_b16_ep10_bs4_lr35"] * 2),
    "ExtrasLinearProbeCoCoOp": ("ExtrasLinearProbeCoCoOp", *["vit_b16_c4_ep10_batch1_ctxv1"] * 2),
    "ExtrasLinearProbeKgCoOp": ("ExtrasLinearProbeKgCoOp", *["vit_b16_ep10_ctxv1_bs4_lr35"] * 2),
}
# Methods whose scripts name another config for ImageNet, per kind (base-to-novel, cross-dataset, few-shot).
IMAGENET_CFGS = {"mmrl": ("vit_b16_imagenet", None, "vit_b16_imagenet")}
# Options a method's official scripts add per kind. MMRL: the TASK that picks the test head; its cross-dataset
# runs set REG_WEIGHT 0.2, and REP_DIM 512 so that EuroSAT's own setting (2048) cannot break the ImageNet model.
KIND_OPTS = {"mmrl": (("TASK", "B2N"), ("TRAINER.MMRL.REG_WEIGHT", "0.2", "TRAINER.MMRL.REP_DIM", "512", "TASK", "CD"),
                      ("TASK", "FS"))}
# Options an official script passes on top of its config file (after the protocol's, before EXTRA_OPTS)
# KgCoOp: its scripts' weight of the knowledge-guided loss; ProGrad: its LAMBDA; TCP: its 4 context tokens (and the
# W its script passes, which its loss does not read)
METHOD_OPTS = {"kgcoop": ("TRAINER.COOP.W", "8.0"), "prograd": ("LOSS.LAMBDA", "1.0"),
               "tcp": ("TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.W", "1.0")}
FEATURE_METHODS = ("linear_probe", "clip_adapter", "tip_adapter", "tip_adapter_f")
# ActionCLIP: the official training config of each video dataset (the paper's zero-shot source is Kinetics-400)
ACTIONCLIP_CONFIGS = {"ucf101_video": "ucf_train", "hmdb51_video": "hmdb_train", "kinetics400_video": "k400_train"}
# Script folders that run one of several trainers, named by a trailing argument or VARIANT= (default: the first):
# folder -> (the method's name in messages, {variant: its METHODS entry}). DePT's variant is the method it extends.
VARIANTS = {"mudpt": ("MuDPT", {v: v for v in ("MuDPT", "UMuDPT", "UUMuDPT")}),
            "dept": ("DePT", {v: f"ExtrasLinearProbe{v}" for v in ("MaPLe", "CoOp", "CoCoOp", "KgCoOp")})}
PROTOCOLS = {"base2new_train": "DATASET SEED", "base2new_test": "DATASET SEED", "xd_train": "[DATASET] SEED",
             "xd_test": "DATASET SEED", "reproduce": "DATASET SEED WEIGHTSPATH",
             "reproduce_xd": "DATASET SEED WEIGHTSPATH", "few_shot": "DATASET SEED [SHOTS...]"}
# scripts/ folder -> its scripts and their arguments (the official ones)
SCRIPTS = {"coop": {**PROTOCOLS, "main": "DATASET CFG CTP NCTX SHOTS CSC", "eval": "DATASET CFG"},
           **{m: PROTOCOLS for m in ("cocoop", "maple", "vpt", "ivlp", "language", "mudpt", "mmrl", "promptsrc",
                                     "kgcoop", "prograd", "tcp")},
           # DePT trains its head on base classes or on ImageNet only: no few-shot runs (on all classes of another
           # dataset its trainer refuses to train)
           "dept": {p: usage for p, usage in PROTOCOLS.items() if p != "few_shot"},
           "zsclip": {"zeroshot": "DATASET CFG"},
           **{m: {"few_shot": PROTOCOLS["few_shot"]} for m in FEATURE_METHODS},
           "actionclip": {"train": "DATASET SEED", "test": "DATASET SEED", "zero_shot": "DATASET SEED"}}
# the papers' 11 datasets in their order (ImageNet, the source of cross-dataset runs, first) and the DG targets
ELEVEN = ("imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat "
          "ucf101").split()
DG_DATASETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
# run_all.sh PROTOCOL -> the scripts run per dataset and seed, the datasets, whether the ImageNet model comes first
GRIDS = {"base2new": (("base2new_train", "base2new_test"), ELEVEN, False), "xd": (("xd_test",), ELEVEN[1:], True),
         "dg": (("xd_test",), DG_DATASETS, True), "few_shot": (("few_shot",), ELEVEN, False)}


class Job(NamedTuple):
    out: str  # output folder; relative paths start at the repository root
    argv: list  # train.py's arguments
    needs: str = ""  # the model folder the job loads: it must exist when the job starts


class ScriptError(Exception):
    """Bad input: ``ScriptError(message[, exit status])``; the message says what, where and the fix."""


def config_file(folder: str, name: str) -> str:
    """configs/<folder>/<name>.yaml, which must exist (else an error listing the files that do)."""
    path = f"configs/{folder}/{name}.yaml"
    if not (REPO / path).is_file():
        names = " ".join(sorted(p.stem for p in (REPO / "configs" / folder).glob("*.yaml"))) or "none"
        raise ScriptError(f"config file not found: {path} (available in configs/{folder}/: {names})")
    return path


def extra_opts(env: Mapping[str, str]) -> list:
    """EXTRA_OPTS split as the shell would, checked to be KEY VALUE pairs."""
    try:
        words = shlex.split(env.get("EXTRA_OPTS", ""))
    except ValueError:
        raise ScriptError(f"EXTRA_OPTS could not be split (unbalanced quotes?): {env['EXTRA_OPTS']}") from None
    if len(words) % 2:
        raise ScriptError(f"EXTRA_OPTS must hold KEY VALUE pairs, got {len(words)} words: {env['EXTRA_OPTS']}")
    return words


def last_epoch(cfg_path: str, env: Mapping[str, str]) -> str:
    """The epoch a test loads: LOADEP, else OPTIM.MAX_EPOCH from EXTRA_OPTS (the last wins), else the config's."""
    opts = extra_opts(env)
    epochs = [v for k, v in zip(opts[::2], opts[1::2]) if k == "OPTIM.MAX_EPOCH"]
    epochs = epochs or re.findall(r"(?m)^\s*MAX_EPOCH:\s*(\d+)", (REPO / cfg_path).read_text())
    if not (env.get("LOADEP") or epochs):
        raise ScriptError(f"no OPTIM.MAX_EPOCH in {cfg_path}: set LOADEP")
    return env.get("LOADEP") or epochs[-1]


class Protocols:
    """The jobs of one method; one method of this class per script, named as the script."""

    def __init__(self, method: str, env: Mapping[str, str], data: str):
        self.method, self.env, self.data = method, env, data
        self.root, self.shots = env.get("OUTPUT_ROOT") or "output", env.get("SHOTS") or "16"
        self.seeds = (env.get("SEEDS") or "1 2 3").split()
        entry = method
        if method in VARIANTS:
            label, variants = VARIANTS[method]
            variant = env.get("VARIANT") or next(iter(variants))
            if variant not in variants:
                raise ScriptError(f"unknown {label} variant '{variant}' (known: {' '.join(variants)})")
            entry = variants[variant]
        self.trainer, *self.cfgs = METHODS[entry]

    def cfg(self, kind: int, dataset: str, shots: str = "16") -> str:
        """CFG, else the method's config for kind 0 (base-to-novel), 1 (cross-dataset) or 2 (few-shot)."""
        imagenet = IMAGENET_CFGS.get(self.method, (None,) * 3)[kind] if dataset == "imagenet" else None
        if self.env.get("CFG") or self.method != "coop":
            return self.env.get("CFG") or imagenet or self.cfgs[kind]
        if dataset == "imagenet":  # CoOp trains 50 epochs on ImageNet in every protocol
            return "vit_b16_ep50" + ("_ctxv1" if kind < 2 else "")
        if kind < 2:
            return self.cfgs[kind]
        # CoOp's few-shot schedule (its COOP.md): 1 shot 50 epochs, 2-4 shots 100, 8-16 shots 200
        return "vit_b16_ep50" if int(shots) <= 1 else "vit_b16_ep100" if int(shots) <= 4 else "vit_b16"

    def job(self, out: str, dataset: str, seed: Optional[str], cfg_file: str, *flags: str, opts=(),
            kind: Optional[int] = None) -> Job:
        """One train.py job; ``kind`` (0-2, as in :meth:`cfg`) adds the method's options for that protocol."""
        kind_opts = KIND_OPTS[self.method][kind] if kind is not None and self.method in KIND_OPTS else ()
        argv = ["--root", self.data, *(["--seed", seed] if seed else []), "--trainer", self.trainer,
                "--dataset-config-file", config_file("datasets", dataset), "--config-file", cfg_file, *flags,
                "--output-dir", out, *opts, *kind_opts, *METHOD_OPTS.get(self.method, ()), *extra_opts(self.env)]
        return Job(out, argv, flags[1] if flags[:1] == ("--model-dir",) else "")

    def tfile(self, cfg: str) -> str:  # the method's config file
        return config_file(f"trainers/{self.trainer}", cfg)

    def evaluate(self, model_dir: str, cfg_file: str, epoch: str = "") -> tuple:
        return "--model-dir", model_dir, "--load-epoch", epoch or last_epoch(cfg_file, self.env), "--eval-only"

    def b2n_dir(self, phase: str, dataset: str, cfg: str, seed: str) -> str:
        return f"{self.root}/base2new/{phase}/{dataset}/shots_{self.shots}/{self.trainer}/{cfg}/seed{seed}"

    def xd_dir(self, dataset: str, cfg: str, shots: str, seed: str) -> str:
        return f"{self.root}/{dataset}/{self.trainer}/{cfg}_{shots}shots/seed{seed}"

    def base2new_train(self, dataset: str, seed: str) -> list:
        cfg = self.cfg(0, dataset)
        return [self.job(self.b2n_dir("train_base", dataset, cfg, seed), dataset, seed, self.tfile(cfg),
                         opts=("DATASET.NUM_SHOTS", self.shots, "DATASET.SUBSAMPLE_CLASSES", "base"), kind=0)]

    def base2new_test(self, dataset: str, seed: str, weights: str = "") -> list:
        cfg = self.cfg(0, dataset)
        model = f"{weights.rstrip('/')}/base/seed{seed}" if weights else self.b2n_dir("train_base", dataset, cfg, seed)
        flags = self.evaluate(model, self.tfile(cfg))
        return [self.job(self.b2n_dir(f"test_{sub}", dataset, cfg, seed), dataset, seed, self.tfile(cfg), *flags,
                         opts=("DATASET.NUM_SHOTS", self.shots, "DATASET.SUBSAMPLE_CLASSES", sub), kind=0)
                for sub in (["base", "new"] if weights else [self.env.get("SUB") or "new"])]

    def xd_train(self, *args: str) -> list:
        dataset, seed = args if len(args) == 2 else ("imagenet", *args)  # CoCoOp's xd_train.sh takes SEED alone
        cfg = self.cfg(1, dataset)
        return [self.job(self.xd_dir(dataset, cfg, self.shots, seed), dataset, seed, self.tfile(cfg),
                         opts=("DATASET.NUM_SHOTS", self.shots), kind=1)]

    def xd_test(self, dataset: str, seed: str, weights: str = "") -> list:
        src = self.env.get("SRC_DATASET") or "imagenet"
        cfg = self.cfg(1, src)
        model = f"{weights.rstrip('/')}/seed{seed}" if weights else self.xd_dir(src, cfg, self.shots, seed)
        out = f"{self.root}/evaluation/{self.trainer}/{cfg}_{self.shots}shots/{dataset}/seed{seed}"
        return [self.job(out, dataset, seed, self.tfile(cfg), *self.evaluate(model, self.tfile(cfg)), kind=1)]

    reproduce, reproduce_xd = base2new_test, xd_test  # with WEIGHTSPATH, which their usage requires

    def few_shot(self, dataset: str, seed: str, *shots: str) -> list:
        shots = shots or (self.env.get("SHOTS_LIST") or "1 2 4 8 16").split()
        bad = [k for k in shots if not re.fullmatch(r"[1-9][0-9]*", k)]
        if bad:
            raise ScriptError(f"SHOTS must be positive integers, got '{bad[0]}'")
        return [self.job(self.xd_dir(dataset, self.cfg(2, dataset, k), k, seed), dataset, seed,
                         self.tfile(self.cfg(2, dataset, k)), opts=("DATASET.NUM_SHOTS", k), kind=2) for k in shots]

    def main(self, dataset: str, cfg: str, ctp: str, nctx: str, shots: str, csc: str) -> list:
        """The official coop/main.sh: few-shot CoOp with the given config, context and shots, for SEEDS."""
        setting, opts = _coop_setting(cfg, shots, nctx, csc, ctp)
        return [self.job(f"{self.root}/{dataset}/CoOp/{setting}/seed{seed}", dataset, seed, self.tfile(cfg),
                         opts=(*opts, "DATASET.NUM_SHOTS", shots)) for seed in self.seeds]

    def eval(self, dataset: str, cfg: str) -> list:
        """The official coop/eval.sh: main.sh's models on SRC_DATASET evaluated on DATASET, for SEEDS."""
        e = self.env
        setting, opts = _coop_setting(cfg, self.shots, e.get("NCTX") or "16", e.get("CSC") or "False",
                                      e.get("CTP") or "end")
        model = f"{self.root}/{e.get('SRC_DATASET') or 'imagenet'}/CoOp/{setting}"
        return [self.job(f"{self.root}/evaluation/CoOp/{setting}/{dataset}/seed{seed}", dataset, seed,
                         self.tfile(cfg), *self.evaluate(f"{model}/seed{seed}", "", e.get("LOADEP") or "50"),
                         opts=opts) for seed in self.seeds]

    def zeroshot(self, dataset: str, cfg: str) -> list:
        """The official zsclip/zeroshot.sh: CLIP with hand-written prompts; the CoOp configs give the backbone."""
        out = f"{self.root}/ZeroshotCLIP/{cfg}/{dataset}"
        return [self.job(out, dataset, None, config_file("trainers/CoOp", cfg), "--eval-only")]

    # ------------------------------------------------------------------ ActionCLIP (video datasets)
    def video_cfg(self, dataset: str) -> str:
        _choice("actionclip", "video dataset", dataset, ACTIONCLIP_CONFIGS)
        return self.tfile(self.env.get("CFG") or ACTIONCLIP_CONFIGS[dataset])

    def video_dir(self, phase: str, dataset: str, cfg_file: str, seed: str) -> str:
        """<root>/ActionCLIP/{train,test,zero_shot}/<dataset>/<cfg>/seed<S> (tools/make_tables.py reads it)."""
        return f"{self.root}/ActionCLIP/{phase}/{dataset}/{Path(cfg_file).stem}/seed{seed}"

    def train(self, dataset: str, seed: str) -> list:
        """ActionCLIP fine-tuned on DATASET (the official run_train.sh with the dataset's training config)."""
        cfg = self.video_cfg(dataset)
        return [self.job(self.video_dir("train", dataset, cfg, seed), dataset, seed, cfg)]

    def test(self, dataset: str, seed: str) -> list:
        """The model of ``train DATASET SEED`` evaluated on DATASET (top-1 / top-5; the official run_test.sh)."""
        cfg = self.video_cfg(dataset)
        model = self.video_dir("train", dataset, cfg, seed)
        return [self.job(self.video_dir("test", dataset, cfg, seed), dataset, seed, cfg, *self.evaluate(model, cfg))]

    def zero_shot(self, dataset: str, seed: str) -> list:
        """The model trained on SRC_DATASET (default kinetics400_video) evaluated on DATASET's classes."""
        src = self.env.get("SRC_DATASET") or "kinetics400_video"
        cfg = self.video_cfg(src)
        model = self.video_dir("train", src, cfg, seed)
        out = self.video_dir("zero_shot", f"{src}_to_{dataset}", cfg, seed)
        return [self.job(out, dataset, seed, cfg, *self.evaluate(model, cfg))]


def _coop_setting(cfg: str, shots: str, nctx: str, csc: str, ctp: str) -> tuple:
    """The folder of an official coop/main.sh run below <dataset>/CoOp/, and the options it sets."""
    opts = ("TRAINER.COOP.N_CTX", nctx, "TRAINER.COOP.CSC", csc, "TRAINER.COOP.CLASS_TOKEN_POSITION", ctp)
    return f"{cfg}_{shots}shots/nctx{nctx}_csc{csc}_ctp{ctp}", opts


def _check_args(script: str, usage: str, args: Sequence[str], note: str = "") -> None:
    words = usage.split()
    low, high = sum(not w.startswith("[") for w in words), 99 if "..." in usage else len(words)
    if not low <= len(args) <= high:
        raise ScriptError(f"usage: {script} {usage}{note}", 2)


def _choice(script: str, what: str, name: str, choices, context: str = "") -> None:
    if name not in choices:
        raise ScriptError(f"{script}: unknown {what} '{name}'{context} (choices: {' '.join(choices)})", 2)


def plan(script: str, args: Sequence[str], env: Mapping[str, str]) -> list:
    """The jobs of ``bash SCRIPT ARGS...``, validated (arguments, DATA, config files) before anything runs."""
    folder, name, args = Path(script).parent.name, Path(script).stem, list(args)
    if name == "run_all":
        _check_args(script, "METHOD PROTOCOL", args)
        (folder, grid), args = args, []
        _choice(script, "method", folder, [m for m in SCRIPTS if m not in ("zsclip", "actionclip")])
        _choice(script, "protocol", grid, GRIDS)
        _choice(script, "protocol", grid, [g for g, (steps, *_) in GRIDS.items() if set(steps) <= set(SCRIPTS[folder])],
                f" for method '{folder}'")
    else:
        if name == "run":  # scripts/run.sh METHOD PROTOCOL ARGS...
            _check_args(script, "METHOD PROTOCOL [ARGS...]", args)
            folder, name, args = args[0], args[1], args[2:]
        _choice(script, "method", folder, SCRIPTS)
        _choice(script, "protocol", name, SCRIPTS[folder], f" for method '{folder}'")
        variants = VARIANTS.get(folder, ("", {}))[1]
        if args and args[-1] in variants:
            env = {**env, "VARIANT": args.pop()}
        _check_args(script, SCRIPTS[folder][name], args, f" [{'|'.join(variants)}]" if variants else "")
    if not env.get("DATA"):
        raise ScriptError("the environment variable DATA is not set: it must name the folder holding the datasets, "
                          f"e.g. DATA=/path/to/datasets bash {script} ...")
    protocols = Protocols(folder, env, os.path.join(os.getcwd(), env["DATA"]))
    if name != "run_all":
        return getattr(protocols, name)(*args)
    steps, datasets, imagenet_first = GRIDS[grid]
    jobs = []
    for seed in protocols.seeds:
        if imagenet_first:
            jobs += protocols.xd_train(env.get("SRC_DATASET") or "imagenet", seed)
        for dataset in (env.get("DATASETS") or "").split() or datasets:
            jobs += [job for step in steps for job in getattr(protocols, step)(dataset, seed)]
    return jobs


def is_finished(out: str) -> bool:
    """The run wrote its final results.json (under TEST.FINAL_MODEL best_val one of the *val* split comes first)."""
    results = REPO / out / "results.json"
    return results.is_file() and not re.search(r'"split"\s*:\s*"val"', results.read_text())
