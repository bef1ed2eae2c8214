#!/usr/bin/env python
"""Speed benchmark: the straightforward (official) computation vs ours, per method, in one run.

    python tools/benchmark.py --quick                      # CPU, 100 Caltech101 classes (~12 min on 2 idle cores)
    python tools/benchmark.py --device cuda                # full mode: 500 and 1000 ImageNet-length class names
    python tools/benchmark.py --classes 500 --methods MaPLe CoCoOp --reps 5 --out results.json
    python tools/benchmark.py --imagenet-index             # ImageNet's listing cache: cold vs cached
    python tools/benchmark.py --per-run                    # time per few-shot run: probe/adapters vs CoOp

Per method (official config, a random-weight CLIP of OpenAI's ViT-B/16 shape at 224 px, a toy Caltech101 tree)
two arms, each in its own process so that its peak memory is its own: ``straight`` (``MODEL.TRIM_TEXT``,
``TEST.CACHE_TEXT``, ``TRAINER.COCOOP.BATCHED_TEXT`` off) and ``ours``. Timed steps alternate between the arms;
evaluation compares their logits and times ours against the image tower alone (ABBA order). On CPU each
repetition waits up to a minute for idle CPUs, and a method measured under load is flagged ``contended``. The
last line printed is one JSON object. Speed claims come from this tool, never from unit tests.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import multiprocessing as mp
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.data import DataLoader, Subset

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tools.make_toy_clip import make_toy_clip_state_dict  # noqa: E402
from tools.make_toy_dataset import make_toy_dataset  # noqa: E402
from tools.protocols import METHOD_OPTS  # noqa: E402
from tools.protocols import METHODS as PROTOCOL_METHODS  # noqa: E402

logger = logging.getLogger("benchmark")

# method -> official config under configs/trainers (PREC lives in the trainer's CFG_NODE)
METHODS = {"MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "CoOp": "CoOp/vit_b16.yaml",
           "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "IVLP": "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml",
           "MuDPT": "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml", "MMRL": "MMRL/vit_b16.yaml",
           "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml", "KgCoOp": "KgCoOp/vit_b16_ep100_ctxv1.yaml",
           "ProGrad": "ProGrad/rn50_ep100.yaml", "TCP": "TCP/vit_b16_ep100_ctxv1.yaml"}
# DePT (ExtrasLinearProbe*) is left out: its head exists on base classes only, and its text and image paths are
# those of the method it is mixed into (measured here), plus one linear layer.
# the options each method's scripts add to its config (tools/protocols.py), e.g. TCP's 4 context tokens
SCRIPT_OPTS = {PROTOCOL_METHODS[folder][0]: list(opts) for folder, opts in METHOD_OPTS.items()}
SECONDARY = [m for m in METHODS if m not in ("MaPLe", "CoCoOp")]  # --quick: reduced plans
ARMS = ("straight", "ours")
QUIET_WAIT_S = 60.0  # on CPU, the longest wait for other programs to leave the CPUs idle before a repetition
# Word pools for ImageNet-length names: CoOp's ImageNet names are mostly 1-3 words, a few hyphenated; the longest
# prompt sets the trimmed text length, so the pools hold such words.
_MODIFIERS = ("American European African Siberian Japanese Mexican great little common giant red black white grey "
              "spotted striped long-horned red-breasted sea water mountain Egyptian Irish Scottish Welsh desert "
              "garden toy").split()
_NOUNS = ("terrier retriever spaniel shark beetle warbler snake lizard truck bridge cabinet machine hound "
          "setter moth salamander jay heron monkey fox bear wolf turtle frog crane boat car clock drum jacket "
          "stove helmet mushroom pepper coat oven kite shepherd schnauzer pinscher merganser").split()
_WORD_COUNTS = ((1, 0.45), (2, 0.38), (3, 0.14), (4, 0.03))  # roughly those of CoOp's ImageNet class names


def imagenet_length_names(n: int, seed: int = 0) -> List[str]:
    """``n`` distinct synthetic names with ImageNet-like word counts, one of them four words with hyphens (as
    ImageNet's longest), so the trimmed text length is that of the real 1000-class prompts."""
    rng = random.Random(seed)
    counts, weights = zip(*_WORD_COUNTS)
    names = ["American red-breasted long-horned terrier"]

    def make(k: int, compound: bool) -> str:
        # a compound ("mothcrane") stands for ImageNet's rare single words that BPE splits ("hartebeest")
        head = rng.choice(_NOUNS) + rng.choice(_NOUNS) if compound else rng.choice(_NOUNS)
        return " ".join([rng.choice(_MODIFIERS) for _ in range(k - 1)] + [head])

    while len(names) < n:
        k = rng.choices(counts, weights)[0]
        name = make(k, compound=False)
        while name in names:  # the pools run out: redraw as a compound word
            name = make(k, compound=True)
        names.append(name)
    rng.shuffle(names)
    return names[:n]


def tower_flops(sequences: int, length: int, width: int, layers: int, backward: bool) -> float:
    """Matmul FLOPs of a transformer tower: per token and block ``24 D^2`` (QKV, out, MLP) + ``4 L D``
    (QK^T, AV). Backward to prompts through FROZEN weights adds the input gradient only (autograd skips a frozen
    weight's gradient): 2x linear, 3x attention. Elementwise ops are not counted."""
    tokens = sequences * length * layers
    linear, attention = 24.0 * width * width * tokens, 4.0 * length * width * tokens
    return 2 * linear + 3 * attention if backward else linear + attention


def step_flops(dims: Dict[str, int], batch: int, prompts: int, text_length: int, vision_prompts: int,
               image_backward: bool, text_backward: bool) -> Dict[str, float]:
    """Image (patch embedding included) + text FLOPs of one step; ``prompts`` = C, or B*C when image-conditional."""
    grid = dims["resolution"] // dims["patch"]
    patch = 2.0 * batch * grid * grid * 3 * dims["patch"] ** 2 * dims["vision_width"]
    image = patch + tower_flops(batch, 1 + grid * grid + vision_prompts, dims["vision_width"],
                                dims["vision_layers"], image_backward)
    text = tower_flops(prompts, text_length, dims["text_width"], dims["text_layers"], text_backward)
    return {"image": image, "text": text, "total": image + text}


# ------------------------------------------------------------------------------------------ one arm (a worker)
@dataclass
class ArmSpec:  # what a worker needs to build its trainer (picklable)
    method: str
    arm: str  # one of ARMS
    data_root: str
    weights: str
    output_dir: str
    device: str = "cpu"
    resolution: int = 224
    seed: int = 1


def build_argv(spec: ArmSpec) -> List[str]:
    """The arm's ``train.py`` command line: official flags + overrides selecting its speed paths (fp32 on CPU,
    the config's PREC on CUDA)."""
    on = str(spec.arm == "ours")
    opts = ["MODEL.TRIM_TEXT", on, "TEST.CACHE_TEXT", on] + (
        ["TRAINER.COCOOP.BATCHED_TEXT", on] if spec.method == "CoCoOp" else [])
    if spec.device == "cpu":
        from engine import TRAINER_REGISTRY
        import trainers  # noqa: F401  (registers the trainers)

        opts += [f"TRAINER.{TRAINER_REGISTRY.get(spec.method).CFG_NODE}.PREC", "fp32"]
    return ["--root", spec.data_root, "--seed", str(spec.seed), "--trainer", spec.method,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers" / METHODS[spec.method]), "--output-dir",
            spec.output_dir, *SCRIPT_OPTS.get(spec.method, []), *opts, "USE_CUDA", str(spec.device == "cuda"),
            "DATALOADER.NUM_WORKERS", "0",
            "INPUT.SIZE", f"({spec.resolution}, {spec.resolution})", "MODEL.BACKBONE.PATH", spec.weights,
            "VERBOSE", "False"]


def _proc_status_mb(field: str) -> Optional[float]:
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
        return int(line.split()[1]) / 1024.0
    except (OSError, StopIteration):
        return None


class ArmSession:
    """A trainer built through the real code path, its fixed training batch and initial learnable tensors."""

    def __init__(self, spec: ArmSpec) -> None:
        import train
        from engine import build_trainer

        cfg = train.setup_cfg(train.build_parser().parse_args(build_argv(spec)))
        train.set_random_seed(cfg.SEED)
        self.trainer = build_trainer(cfg)
        self.cuda = self.trainer.device.type == "cuda"
        torch.manual_seed(cfg.SEED)
        self.batch = next(iter(self.trainer.train_loader_x))
        self.learnable = [p for p in self.trainer.model.parameters() if p.requires_grad]
        self.initial = [p.detach().clone() for p in self.learnable]
        self.rss_reset = False
        self._sync = torch.cuda.synchronize if self.cuda else lambda: None

    def _timed(self, fn: Callable[[], Any]) -> tuple:
        self._sync()
        start = time.perf_counter()
        out = fn()
        self._sync()
        return time.perf_counter() - start, out

    def _restore(self) -> None:
        """Back to the initial learnable tensors, which both arms share."""
        with torch.no_grad():
            for p, v in zip(self.learnable, self.initial):
                p.copy_(v)

    def info(self) -> Dict[str, Any]:
        """Sizes of this arm's step and its FLOP floor (at the trimmed text length)."""
        model, learner = self.trainer.model, self.trainer.model.prompt_learner
        batch = int(self.batch["img"].shape[0])
        text_inputs = learner.text_inputs(torch.zeros(batch, model.clip.embed_dim, device=self.trainer.device))
        ids = text_inputs["text"]  # (C, 77), or (B*C, 77) for image-conditional prompts
        tensors = [t for v in text_inputs.values() for t in (v.values() if isinstance(v, dict) else [v])]
        shallow, deep = learner.vision_prompts()
        n_vision = 0 if shallow is None else int(shallow.shape[-2])
        trimmed = int(ids.argmax(dim=-1).max()) + 1  # EOT has the largest token id
        visual = model.clip.visual
        dims = {"resolution": visual.input_resolution, "patch": visual.conv1.kernel_size[0],
                "vision_width": visual.width, "vision_layers": visual.transformer.layers,
                "text_width": model.clip.text_width, "text_layers": model.clip.transformer.layers}
        flops = step_flops(dims, batch, int(ids.shape[0]), trimmed, n_vision, shallow is not None or bool(deep),
                           any(isinstance(t, torch.Tensor) and t.requires_grad for t in tensors))
        return {"batch_size": batch, "classes": self.trainer.num_classes, "prompts_per_step": int(ids.shape[0]),
                "text_length_full": int(ids.shape[1]), "text_length_trimmed": trimmed,
                "vision_prompt_tokens": n_vision, "image_conditional": bool(learner.image_conditional),
                "flops": flops, "initial_param_sum": float(sum(v.double().sum() for v in self.initial)),
                "device": str(self.trainer.device), "prec": self.trainer.precision.mode, "pid": os.getpid()}

    def memory(self, reset: bool = False) -> Dict[str, Any]:
        """Memory (MB) now and its peak since the last ``reset``: CUDA max allocated, or peak RSS (VmHWM, reset
        through /proc/self/clear_refs; where that cannot be written, the lifetime peak, model building included)."""
        if self.cuda:
            if reset:
                torch.cuda.reset_peak_memory_stats()
            return {"kind": "cuda_max_allocated", "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20,
                    "current_mb": torch.cuda.memory_allocated() / 2 ** 20}
        if reset:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.rss_reset = True
            except OSError:
                self.rss_reset = False
        peak = _proc_status_mb("VmHWM") if self.rss_reset else None
        return {"kind": "ru_maxrss_lifetime" if peak is None else "peak_rss", "current_mb": _proc_status_mb("VmRSS"),
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0 if peak is None else peak}

    def step(self) -> Dict[str, float]:
        """One ``forward_backward`` (optimizer step included). ``cpu_util`` = CPU seconds per wall second: about
        the thread count on an idle machine; much less means another program took cores."""
        self.trainer.set_model_mode("train")
        cpu = time.process_time()
        seconds, out = self._timed(lambda: self.trainer.forward_backward(self.batch))
        return {"seconds": seconds, "loss": float(out["loss"]), "cpu_util": (time.process_time() - cpu) / seconds}

    def _subset_loader(self, n_images: int) -> DataLoader:
        loader = self.trainer.dm.test_loader
        return DataLoader(Subset(loader.dataset, range(min(n_images, len(loader.dataset)))),
                          batch_size=loader.batch_size, shuffle=False, num_workers=loader.num_workers,
                          pin_memory=loader.pin_memory)

    def evaluate(self, n_images: int) -> Dict[str, Any]:
        """``trainer.test()`` over the first ``n_images`` test images, from the initial learnable tensors."""
        self._restore()
        self.trainer.test_loader = self._subset_loader(n_images)
        logits: List[torch.Tensor] = []
        inference = self.trainer.model_inference

        def capture(images: torch.Tensor) -> torch.Tensor:
            out = inference(images)
            logits.append(out.detach().float().cpu())
            return out

        self.trainer.model_inference = capture
        try:
            seconds, _ = self._timed(self.trainer.test)
        finally:
            del self.trainer.model_inference  # back to the class method
        return {"seconds": seconds, "images": len(self.trainer.test_loader.dataset),
                "logits": torch.cat(logits)}

    @torch.no_grad()
    def image_floor(self, n_images: int) -> Dict[str, Any]:
        """The image tower alone (with this method's vision prompts) on the same test batches, already loaded."""
        self._restore()
        self.trainer.set_model_mode("eval")
        batches = [self.trainer.parse_batch_test(b)[0] for b in self._subset_loader(n_images)]

        def run() -> None:
            with self.trainer.precision.autocast():
                for images in batches:
                    self.trainer.model.image_features(images)

        return {"seconds": self._timed(run)[0], "images": sum(int(b.shape[0]) for b in batches)}

    def matmul_rate(self, size: int = 2048, repeat: int = 3) -> float:
        """Dense fp32 matmul GFLOP/s of this device now: best of ``repeat`` ``size^3`` products."""
        a, b = (torch.randn(size, size, device=self.trainer.device) for _ in range(2))
        a @ b
        return 2.0 * size ** 3 / min(self._timed(lambda: a @ b)[0] for _ in range(repeat)) / 1e9


class _ArmManager(BaseManager):
    pass


_ArmManager.register("ArmSession", ArmSession)


def spawn_arm(spec: ArmSpec, stack: contextlib.ExitStack) -> ArmSession:
    """An :class:`ArmSession` in a process of its own (so its peak memory is its own), behind a proxy that
    raises the worker's exceptions here; closing ``stack`` ends the process."""
    manager = _ArmManager(ctx=mp.get_context("spawn"))
    manager.start(functools.partial(logging.basicConfig, level=logging.WARNING))
    stack.callback(manager.shutdown)
    return manager.ArmSession(spec)


# ------------------------------------------------------------------------------------------ the measurements
@dataclass(frozen=True)
class Plan:
    reps: int = 3  # timed training steps per arm, after one warm-up step
    eval_images: int = 200  # ours and the image floor; 0 = no timed evaluation (a logit check only)
    straight_eval_images: int = 200
    eval_reps: int = 1  # repetitions of ours + image floor (alternating order)
    straight_eval_reps: int = 1
    check_images: int = 4  # images of the logit check when there is no timed evaluation


def plans_for(quick: bool, reps: int) -> Dict[str, Plan]:
    """--quick (2 CPU cores): the targets' measurements in full, the other methods reduced (``QUICK_NOTES``);
    full mode: every method alike on 1000 test images, CoCoOp on 100 (its text depends on the image)."""
    if quick:
        secondary = Plan(reps=1, eval_images=0, straight_eval_images=0)
        return {"MaPLe": Plan(reps=reps, eval_images=200, straight_eval_images=100, eval_reps=2),
                # 2 images = 2 x 100 class prompts per test image; the official loop at 77 tokens costs ~15 s each
                "CoCoOp": Plan(reps=reps, eval_images=2, straight_eval_images=2),
                **{m: secondary for m in SECONDARY}}
    plan = Plan(reps, 1000, 1000, reps, reps)
    return {m: replace(plan, eval_images=100, straight_eval_images=100) if m == "CoCoOp" else plan for m in METHODS}


QUICK_NOTES = [
    f"--quick: {', '.join(SECONDARY)} get 1 timed step per arm (after the warm-up) and no timed evaluation (logits "
    "compared on 4 test images); MaPLe: ours and the image floor twice each over 200 images in ABBA order, the "
    "straightforward path once over 100 (compared per image); CoCoOp evaluates 2 images (its text depends on the "
    "image: 200 images x 100 classes at 77 tokens would take over 30 minutes on 2 cores).",
    "CPU timings drift over minutes: arms alternate, and the matmul rate of the FLOP floor is measured every "
    "repetition."]


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def wait_for_quiet(max_wait_s: float, threshold: float = 0.2) -> Optional[float]:
    """Our workers are idle between measurements: wait (up to ``max_wait_s``) until other programs leave the
    CPUs mostly idle; returns the last fraction of all CPUs seen busy (/proc/stat; None where unavailable)."""
    def busy(interval: float) -> Optional[float]:
        try:
            with open("/proc/stat") as f:
                a = [int(v) for v in f.readline().split()[1:]]
            time.sleep(interval)
            with open("/proc/stat") as f:
                delta = [int(v) - x for x, v in zip(a, f.readline().split()[1:])]
        except (OSError, ValueError):
            return None
        total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
        return (total - delta[3] - delta[4]) / total if total else None

    if max_wait_s <= 0:
        return None
    start, seen = time.perf_counter(), busy(0.5)
    while seen is not None and seen > threshold and time.perf_counter() - start < max_wait_s:
        seen = busy(2.0)
    return seen


def train_phase(arms: Dict[str, Any], plan: Plan, quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """A warm-up step per arm, then ``plan.reps`` timed steps in alternating order; peak memory over all."""
    base = {arm: arms[arm].memory(reset=True)["current_mb"] or 0.0 for arm in ARMS}
    warm = {arm: arms[arm].step() for arm in ARMS}
    times: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    util: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    rates, busy = [], []
    for rep in range(plan.reps):
        busy.append(wait_for_quiet(quiet_wait_s))
        rates.append(arms["ours"].matmul_rate())
        for arm in (ARMS if rep % 2 == 0 else ARMS[::-1]):
            out = arms[arm].step()
            times[arm].append(out["seconds"])
            util[arm].append(out["cpu_util"])
    memory = {arm: arms[arm].memory() for arm in ARMS}
    med = {arm: _median(times[arm]) for arm in ARMS}
    peak = {arm: memory[arm]["peak_mb"] for arm in ARMS}
    step_mb = {arm: peak[arm] - base[arm] for arm in ARMS}
    return {"straight_s": med["straight"], "ours_s": med["ours"], "speedup": _ratio(med["straight"], med["ours"]),
            "pair_speedups": [s / o for s, o in zip(times["straight"], times["ours"])],
            "speedup_best": _ratio(min(times["straight"], default=None), min(times["ours"], default=None)),
            "times_s": times, "cpu_util": util, "busy_before_rep": busy,
            "contended": any(b is not None and b > 0.2 for b in busy) or any(
                u < 0.75 * torch.get_num_threads() for arm in ARMS for u in util[arm]),
            "warmup_s": {a: warm[a]["seconds"] for a in ARMS},
            "first_loss_diff": abs(warm["straight"]["loss"] - warm["ours"]["loss"]),
            "matmul_gflops": rates, "memory": {
                "kind": memory["ours"]["kind"], "straight_peak_mb": peak["straight"], "ours_peak_mb": peak["ours"],
                "ratio": _ratio(peak["ours"], peak["straight"]), "straight_step_mb": step_mb["straight"],
                "ours_step_mb": step_mb["ours"], "step_ratio": _ratio(step_mb["ours"], step_mb["straight"])}}


def eval_phase(arms: Dict[str, Any], plan: Plan, image_conditional: bool,
               quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """Timed ``trainer.test()`` of both arms and the image-tower floor, or a logit check on a few images."""
    if plan.eval_images <= 0:
        out = {arm: arms[arm].evaluate(n_images=plan.check_images) for arm in ARMS}
        diff = (out["straight"]["logits"] - out["ours"]["logits"]).abs().max().item()
        return {"timed": False, "check_images": out["ours"]["images"], "max_logit_diff": diff}
    times: Dict[str, List[float]] = {"ours": [], "straight": [], "image_floor": []}
    busy = []
    for rep in range(plan.eval_reps):
        busy.append(wait_for_quiet(quiet_wait_s))
        # floor/ours, then ours/floor (ABBA): the machine's speed drifts over minutes, this cancels a linear drift
        for what in (("image_floor", "ours") if rep % 2 == 0 else ("ours", "image_floor")):
            if what == "ours":
                ours = arms["ours"].evaluate(n_images=plan.eval_images)
                times["ours"].append(ours["seconds"])
            elif not image_conditional:  # image-conditional text has no image-only floor
                times["image_floor"].append(arms["ours"].image_floor(n_images=plan.eval_images)["seconds"])
        if rep < plan.straight_eval_reps:
            straight = arms["straight"].evaluate(n_images=plan.straight_eval_images)
            times["straight"].append(straight["seconds"])
    n = min(ours["images"], straight["images"])
    med = {k: _median(v) for k, v in times.items()}
    per_image = {"ours": med["ours"] / ours["images"], "straight": med["straight"] / straight["images"]}
    return {"timed": True, "images": ours["images"], "straight_images": straight["images"], "ours_s": med["ours"],
            "straight_s": med["straight"], "image_floor_s": med["image_floor"], "times_s": times,
            "busy_before_rep": busy, "ours_images_per_s": 1.0 / per_image["ours"],
            "straight_images_per_s": 1.0 / per_image["straight"],
            "speedup_per_image": per_image["straight"] / per_image["ours"],
            "eval_vs_image_floor": _ratio(sum(times["ours"]), sum(times["image_floor"]) or None),
            "max_logit_diff": (straight["logits"][:n] - ours["logits"][:n]).abs().max().item()}


def bench_method(method: str, plan: Plan, base: ArmSpec, local: bool = False,
                 quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """Build both arms of ``method`` (in this process with ``local``: unit tests, peak memory then not per arm),
    measure training then evaluation, and summarise."""
    specs = {arm: replace(base, method=method, arm=arm, output_dir=str(Path(base.output_dir) / method / arm))
             for arm in ARMS}
    with contextlib.ExitStack() as stack:
        try:
            arms = {arm: ArmSession(spec) if local else spawn_arm(spec, stack) for arm, spec in specs.items()}
            info = {arm: arms[arm].info() for arm in ARMS}
            if info["straight"]["initial_param_sum"] != info["ours"]["initial_param_sum"]:
                raise RuntimeError(f"{method}: the arms start from different learnable tensors (seeding broke)")
            logger.info("%s: built both arms; training steps (%d timed each)", method, plan.reps)
            train = train_phase(arms, plan, quiet_wait_s)
            logger.info("%s: train %.2f s -> %.2f s; evaluating", method, train["straight_s"], train["ours_s"])
            evaluation = eval_phase(arms, plan, info["ours"]["image_conditional"], quiet_wait_s)
        except (EOFError, ConnectionError) as err:  # e.g. killed for memory (straightforward, 1000 classes)
            raise RuntimeError(f"{method}: a worker process died ({type(err).__name__})") from err
    ours = info["ours"]
    rate = _median(train["matmul_gflops"])
    floor_s = ours["flops"]["total"] / (rate * 1e9)
    return {"config": METHODS[method], "plan": asdict(plan), **{k: ours[k] for k in (
        "batch_size", "classes", "prompts_per_step", "text_length_full", "text_length_trimmed",
        "vision_prompt_tokens", "image_conditional", "prec")},
        "train": train, "flop_floor": {"gflop": {k: v / 1e9 for k, v in ours["flops"].items()},
                                       "matmul_gflops": rate, "floor_s": floor_s,
                                       "ours_vs_floor": _ratio(train["ours_s"], floor_s),
                                       "straight_vs_floor": _ratio(train["straight_s"], floor_s)},
        "eval": evaluation, "max_logit_diff": evaluation["max_logit_diff"]}


def summarise(results: Dict[str, Dict[str, Any]], suffix: str = "") -> Dict[str, Any]:
    """The headline keys for one class count (``suffix`` e.g. ``_c500`` when several counts were run)."""
    out = {f"{m.lower()}_train_speedup{suffix}": r["train"]["speedup"] for m, r in results.items()}
    if "MaPLe" in results:
        out[f"maple_memory_ratio{suffix}"] = results["MaPLe"]["train"]["memory"]["ratio"]
    floors = {m: r["eval"]["eval_vs_image_floor"] for m, r in results.items()
              if r["eval"].get("eval_vs_image_floor") is not None}
    if floors:  # the worst method among those whose text can be computed once
        worst = max(floors, key=floors.get)
        out[f"eval_vs_image_floor{suffix}"] = floors[worst]
        out[f"eval_vs_image_floor_method{suffix}"] = worst
    out[f"max_logit_diff{suffix}"] = max(r["max_logit_diff"] for r in results.values())
    out[f"contended_methods{suffix}"] = [m for m, r in results.items() if r["train"]["contended"]]
    out[f"max_ours_vs_flop_floor{suffix}"] = max(r["flop_floor"]["ours_vs_floor"] for r in results.values())
    return out


def run_benchmark(class_counts: Sequence[int], methods: Sequence[str], plans: Dict[str, Plan], workdir: Path,
                  device: str = "cpu", imagenet_names: bool = False, weights: Optional[Path] = None,
                  resolution: int = 224, local: bool = False, quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """Measure ``methods`` at each class count (Caltech101's names, or ImageNet-length ones): per-method entries
    + the headline keys. Without ``weights``, a random-weight ViT-B/16 CLIP is written into ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    if weights is None:
        weights = workdir / "clip_vit_b16_random_fp16.pt"
        logger.info("Writing a random-weight ViT-B/16 CLIP to %s", weights)
        torch.save(make_toy_clip_state_dict(seed=0, preset="vitb16-224px"), weights)
    report: Dict[str, Any] = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "class_counts": list(class_counts), "methods": {}}
    for count in class_counts:
        n_test = max(max(p.eval_images, p.straight_eval_images, p.check_images) for p in plans.values())
        # a quarter of each class is test: enough classes x images for n_test, tiny images (the transform resizes)
        make_toy_dataset(workdir / f"data_{count}", count, 4 * -(-n_test // count), size=8,
                         classnames=imagenet_length_names(count) if imagenet_names else None)
        base = ArmSpec(method="", arm="", data_root=str(workdir / f"data_{count}"), weights=str(weights),
                       output_dir=str(workdir / f"out_{count}"), device=device, resolution=resolution)
        results = {}
        for method in methods:
            start = time.perf_counter()
            results[method] = bench_method(method, plans[method], base, local, quiet_wait_s)
            logger.info("%s done in %.0f s", method, time.perf_counter() - start)
        report["methods"][f"classes_{count}"] = results
        report.update(summarise(results, f"_c{count}" if len(class_counts) > 1 else ""))
    return report


def format_table(report: Dict[str, Any]) -> str:
    """The per-method numbers as plain text."""
    def fmt(value: Optional[float], spec: str = ".2f") -> str:
        return "-" if value is None else format(value, spec)

    head = (f"{'classes':>7} {'method':<7} {'L':>7} {'step straight':>13} {'step ours':>9} {'speedup':>7} "
            f"{'ours/FLOP floor':>15} {'mem ratio':>9} {'eval ours':>9} {'img floor':>9} {'eval/floor':>10} "
            f"{'max|dlogit|':>11}")
    lines = [head, "-" * len(head)]
    for key, results in report["methods"].items():
        for method, r in results.items():
            t, e = r["train"], r["eval"]
            flag = " (contended: other programs took CPU, see cpu_util)" if t["contended"] else ""
            lines.append(
                f"{key[8:]:>7} {method:<7} {r['text_length_full']:>3}->{r['text_length_trimmed']:<3} "
                f"{fmt(t['straight_s']):>12}s {fmt(t['ours_s']):>8}s {fmt(t['speedup']):>6}x "
                f"{fmt(r['flop_floor']['ours_vs_floor']):>14}x {fmt(t['memory']['ratio']):>9} "
                f"{fmt(e.get('ours_s')):>8}s {fmt(e.get('image_floor_s')):>8}s "
                f"{fmt(e.get('eval_vs_image_floor')):>9}x {fmt(r['max_logit_diff'], '.1e'):>11}{flag}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ ImageNet listing cache
def imagenet_index(root: Path, n_classes: int, per_class: int = 100) -> None:
    """Time the ImageNet train index and the whole reader on a fake tree (empty files; a tenth as many val
    images), cold (no cache) then cached. The OS still caches the fresh tree's directory entries: a real cold
    start (network file system, dropped caches) lists slower still."""
    from datasets.folder_index import INDEX_DIRNAME, index_cache_paths, list_class_folders
    from datasets.imagenet import ImageNet
    from engine import get_cfg_default

    ds, past = root / "imagenet", time.time() - 3600  # older than the index's settle window, as a finished download
    for c, split in ((c, split) for c in range(n_classes) for split in ("train", "val")):
        folder = ds / "images" / split / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class if split == "train" else max(1, per_class // 10)):
            (folder / f"n{c:08d}_{i}.JPEG").touch()
        os.utime(folder, (past, past))
    (ds / "classnames.txt").write_text("".join(f"n{c:08d} class number {c}\n" for c in range(n_classes)))
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    index = functools.partial(list_class_folders, str(ds / "images" / "train"), index_cache_paths(str(ds), "bench"))
    for what, build in ((f"train index ({n_classes} x {per_class} files)", index),
                        ("ImageNet reader", functools.partial(ImageNet, cfg))):
        shutil.rmtree(ds / INDEX_DIRNAME, ignore_errors=True)  # start cold
        times = []
        for _ in ("cold", "cached"):
            start = time.perf_counter()
            build()
            times.append(time.perf_counter() - start)
        print(f"{what}: cold {times[0]:.3f} s, cached {times[1]:.3f} s ({times[0] / times[1]:.1f}x)")


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU profile: 100 Caltech101 classes, reduced methods")
    p.add_argument("--imagenet-index", action="store_true",
                   help="time ImageNet's listing cache instead (--classes, default 1000, x 100 train files)")
    p.add_argument("--classes", type=int, nargs="+", help="class counts (default: 100 quick, 500 1000 full)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per arm after one warm-up")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    p.add_argument("--per-run", action="store_true", help="time whole few-shot runs of the linear probe and the "
                   "adapters against CoOp's instead (tools/benchmark_runs.py; --classes, default 10)")
    p.add_argument("--video", action="store_true", help="time an ActionCLIP run (train + evaluation) with the "
                   "trimmed text tower against the full-length one (tools/benchmark_runs.py; --classes, default 10)")
    p.add_argument("--shots", type=int, default=4, help="--per-run: shots per class")
    p.add_argument("--epochs", type=int, help="--per-run: epochs of the iterative methods (default: their config's)")
    p.add_argument("--preset", default="vitb16-224px", help="--per-run / --video: the random-weight CLIP "
                   "(tools/make_toy_clip.py presets, e.g. rn50-64px for a quick CPU run)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="prompt_bench_") as tmp:
        if args.imagenet_index:
            return imagenet_index(Path(tmp), (args.classes or [1000])[0])
        if args.video:
            from tools.benchmark_runs import run_video

            return run_video(Path(tmp), (args.classes or [10])[0], args.preset)
        if args.per_run:
            from tools.benchmark_runs import run

            return run(Path(tmp), (args.classes or [10])[0], args.shots, args.epochs, args.preset)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
        import trainers  # noqa: F401  (registers the trainers)
        from clip.tokenizer import get_tokenizer

        get_tokenizer()  # fails here, once, with the fix when the BPE vocabulary is unavailable
        report = run_benchmark(args.classes or ([100] if args.quick else [500, 1000]), args.methods,
                               plans_for(args.quick, args.reps), Path(tmp), device=args.device,
                               imagenet_names=not args.quick, quiet_wait_s=QUIET_WAIT_S * (args.device == "cpu"))
    report["mode"] = "quick" if args.quick else "full"
    report["notes"] = QUICK_NOTES if args.quick else []
    print(format_table(report))
    line = json.dumps(report, default=lambda t: t.tolist() if isinstance(t, torch.Tensor) else str(t))
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return report


if __name__ == "__main__":
    main()
