#!/usr/bin/env python
"""Speed benchmark: the straightforward path (official) vs ours, per method, in one run.

    python tools/benchmark.py --quick                      # CPU, 100 Caltech101 classes (~12 min on 2 idle cores)
    python tools/benchmark.py --device cuda                # full mode: 500 and 1000 ImageNet-length classes
    python tools/benchmark.py --classes 500 --methods MaPLe CoCoOp --reps 5 --out results.json

For each method (official config, built by ``train.setup_cfg`` + ``engine.build_trainer`` on a random-weight CLIP
of OpenAI's ViT-B/16 shape at 224 px and a synthetic Caltech101-layout dataset) two worker processes are built:
``straight`` (``MODEL.TRIM_TEXT False``, ``TEST.CACHE_TEXT False``, ``TRAINER.COCOOP.BATCHED_TEXT False``: the
official computation) and ``ours`` (the defaults). The parent alternates between them:

* training step: ``trainer.forward_backward`` on one fixed batch of the official batch size; one warm-up step
  per arm, then ``reps`` timed steps, the arm order flipping every repetition; medians and their ratio;
* FLOP floor: matmul FLOPs of the same step at the truncated text length (``tools.bench_setup.tower_flops``)
  divided by the dense fp32 matmul rate measured before every repetition (best of three 2048^3 products);
* peak memory of each arm's process over its training steps (peak RSS on CPU, ``max_memory_allocated`` on CUDA);
* evaluation: ``trainer.test()`` over the test images from the same initial learnable tensors in both arms,
  the max |logit difference| between the arms, and ``eval_vs_image_floor`` = our test time / the time of the
  image tower alone (``image_features``, same batches already in memory), the two timed in ABBA order.

CPU timings on a shared machine are only as good as the machine is idle: before every repetition the parent
waits (``--quiet-wait``) until other programs leave the CPUs idle, records how busy they were, and each step
reports its CPU utilisation; ``contended`` flags a method whose numbers were taken under load.

The last line printed is one JSON object (also written to ``--out``). Timings come from this tool, never from
unit tests.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from tools.bench_arm import ARMS, METHODS, ArmSession, ArmSpec, serve  # noqa: E402
from tools.bench_setup import classnames_for, write_dataset, write_vit_b16_weights  # noqa: E402

logger = logging.getLogger("benchmark")


@dataclass(frozen=True)
class Plan:
    """What is measured for one method: timed steps, and how many test images each evaluation covers."""

    reps: int = 3  # timed training steps per arm, after one warm-up step
    eval_images: int = 200  # ours and the image floor; 0 = no timed evaluation (a logit check only)
    straight_eval_images: int = 200
    eval_reps: int = 1  # repetitions of ours + image floor (alternating order)
    straight_eval_reps: int = 1
    check_images: int = 4  # images of the logit check when there is no timed evaluation


def quick_plans(reps: int) -> Dict[str, Plan]:
    """--quick on 2 CPU cores: the targets' measurements in full, the other methods reduced (see ``notes``)."""
    secondary = Plan(reps=1, eval_images=0, straight_eval_images=0)
    return {"MaPLe": Plan(reps=reps, eval_images=200, straight_eval_images=100, eval_reps=2),
            # 2 images = 2 x 100 class prompts per test image; the official loop at 77 tokens costs ~15 s each
            "CoCoOp": Plan(reps=reps, eval_images=2, straight_eval_images=2),
            "CoOp": secondary, "IVLP": secondary, "MuDPT": secondary}


def full_plans(reps: int, eval_images: int) -> Dict[str, Plan]:
    """Full mode: every method measured alike (CoCoOp evaluates one test batch: its text depends on the image)."""
    plan = Plan(reps=reps, eval_images=eval_images, straight_eval_images=eval_images, eval_reps=reps,
                straight_eval_reps=reps)
    cocoop = replace(plan, eval_images=min(eval_images, 100), straight_eval_images=min(eval_images, 100))
    return {m: cocoop if m == "CoCoOp" else plan for m in METHODS}


class ArmProcess:
    """An arm in its own process (:func:`tools.bench_arm.serve`), driven over a pipe."""

    def __init__(self, spec: ArmSpec, ctx) -> None:
        self.spec = spec
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, spec), daemon=True)
        self.proc.start()

    def _receive(self) -> Any:
        try:
            status, payload = self.conn.recv()
        except EOFError:  # e.g. killed for memory (the straightforward path at 1000 classes on a small machine)
            self.proc.join(timeout=5)
            raise RuntimeError(f"{self.spec.method}/{self.spec.arm} worker died (exit code {self.proc.exitcode})")
        if status != "ok":
            raise RuntimeError(f"{self.spec.method}/{self.spec.arm} worker failed:\n{payload}")
        return payload

    def ready(self) -> Dict[str, Any]:
        return self._receive()

    def call(self, command: str, **kwargs: Any) -> Any:
        self.conn.send((command, kwargs))
        return self._receive()

    def close(self) -> None:
        if self.proc.is_alive():
            self.conn.send(("stop", {}))
            self.proc.join(timeout=30)


class LocalArm:
    """The same interface in this process (unit tests; peak memory is then not per arm)."""

    def __init__(self, spec: ArmSpec, ctx=None) -> None:
        self.session = ArmSession(spec)

    def ready(self) -> Dict[str, Any]:
        return self.session.info()

    def call(self, command: str, **kwargs: Any) -> Any:
        return getattr(self.session, command)(**kwargs)

    def close(self) -> None:
        self.session = None


def _median(values: Sequence[float]) -> Optional[float]:
    return statistics.median(values) if values else None


def _ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return a / b if a is not None and b else None


def cpu_busy_fraction(interval: float = 0.5) -> Optional[float]:
    """Fraction of all CPUs busy over ``interval`` seconds (/proc/stat); None where unavailable."""
    def sample() -> List[int]:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:]]
    try:
        a = sample()
        time.sleep(interval)
        b = sample()
    except (OSError, ValueError):
        return None
    delta = [y - x for x, y in zip(a, b)]
    total = sum(delta[:8])  # user nice system idle iowait irq softirq steal
    return (total - delta[3] - delta[4]) / total if total else None


def wait_for_quiet(max_wait_s: float, threshold: float = 0.2) -> Optional[float]:
    """Between measurements our workers are idle: wait (up to ``max_wait_s``) until other programs leave the
    CPUs mostly idle; returns the last busy fraction seen (recorded with each repetition)."""
    start = time.perf_counter()
    busy = cpu_busy_fraction()
    while busy is not None and busy > threshold and time.perf_counter() - start < max_wait_s:
        busy = cpu_busy_fraction(2.0)
    return busy


def train_phase(arms: Dict[str, Any], plan: Plan, quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """Warm-up step per arm, then ``plan.reps`` alternating timed steps; peak memory over all of them."""
    base = {}
    for arm in ARMS:
        arms[arm].call("reset_peak_memory")
        base[arm] = arms[arm].call("memory")["current_mb"]
    warm = {arm: arms[arm].call("step") for arm in ARMS}
    times: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    util: Dict[str, List[float]] = {arm: [] for arm in ARMS}
    rates: List[float] = []
    busy: List[Optional[float]] = []
    for rep in range(plan.reps):
        busy.append(wait_for_quiet(quiet_wait_s) if quiet_wait_s > 0 else None)
        rates.append(arms["ours"].call("matmul_rate"))
        for arm in (ARMS if rep % 2 == 0 else ARMS[::-1]):
            out = arms[arm].call("step")
            times[arm].append(out["seconds"])
            util[arm].append(out["cpu_util"])
    memory = {arm: arms[arm].call("memory") for arm in ARMS}
    med = {arm: _median(times[arm]) for arm in ARMS}
    peak = {arm: memory[arm]["peak_mb"] for arm in ARMS}
    step_mb = {arm: peak[arm] - (base[arm] or 0.0) for arm in ARMS}
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
    """Timed ``trainer.test()`` of both arms (+ the image-tower floor), or a logit check on a few images."""
    if plan.eval_images <= 0:
        out = {arm: arms[arm].call("evaluate", n_images=plan.check_images) for arm in ARMS}
        diff = (out["straight"]["logits"] - out["ours"]["logits"]).abs().max().item()
        return {"timed": False, "check_images": out["ours"]["images"], "max_logit_diff": diff}
    times: Dict[str, List[float]] = {"ours": [], "straight": [], "image_floor": []}
    busy: List[Optional[float]] = []
    for rep in range(plan.eval_reps):
        busy.append(wait_for_quiet(quiet_wait_s) if quiet_wait_s > 0 else None)
        # floor/ours, then ours/floor (ABBA): the machine's speed drifts over minutes, this cancels a linear drift
        for what in (("image_floor", "ours") if rep % 2 == 0 else ("ours", "image_floor")):
            if what == "ours":
                ours = arms["ours"].call("evaluate", n_images=plan.eval_images)
                times["ours"].append(ours["seconds"])
            elif not image_conditional:  # image-conditional text has no image-only floor
                times["image_floor"].append(arms["ours"].call("image_floor", n_images=plan.eval_images)["seconds"])
        if rep < plan.straight_eval_reps:
            straight = arms["straight"].call("evaluate", n_images=plan.straight_eval_images)
            times["straight"].append(straight["seconds"])
    n = min(ours["images"], straight["images"])
    diff = (straight["logits"][:n] - ours["logits"][:n]).abs().max().item()
    med = {k: _median(v) for k, v in times.items()}
    per_image = {"ours": med["ours"] / ours["images"], "straight": med["straight"] / straight["images"]}
    return {"timed": True, "images": ours["images"], "straight_images": straight["images"], "ours_s": med["ours"],
            "straight_s": med["straight"], "image_floor_s": med["image_floor"],
            "times_s": times, "busy_before_rep": busy,
            "ours_images_per_s": 1.0 / per_image["ours"], "straight_images_per_s": 1.0 / per_image["straight"],
            "speedup_per_image": per_image["straight"] / per_image["ours"],
            "eval_vs_image_floor": _ratio(sum(times["ours"]), sum(times["image_floor"]) or None),
            "max_logit_diff": diff}


def bench_method(method: str, plan: Plan, base: ArmSpec, arm_cls=ArmProcess,
                 quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """Build both arms of ``method``, measure training then evaluation, and summarise."""
    ctx = mp.get_context("spawn")
    arms = {arm: arm_cls(replace(base, method=method, arm=arm,
                                 output_dir=str(Path(base.output_dir) / method / arm)), ctx) for arm in ARMS}
    try:
        info = {arm: arms[arm].ready() for arm in ARMS}
        if info["straight"]["initial_param_sum"] != info["ours"]["initial_param_sum"]:
            raise RuntimeError(f"{method}: the arms start from different learnable tensors (seeding broke)")
        logger.info("%s: built both arms; training steps (%d timed each)", method, plan.reps)
        train = train_phase(arms, plan, quiet_wait_s)
        logger.info("%s: train %.2f s -> %.2f s; evaluating", method, train["straight_s"], train["ours_s"])
        evaluation = eval_phase(arms, plan, info["ours"]["image_conditional"], quiet_wait_s)
    finally:
        for arm in arms.values():
            arm.close()
    ours = info["ours"]
    rate = _median(train["matmul_gflops"])
    floor_s = ours["flops"]["total"] / (rate * 1e9)
    return {"config": METHODS[method][0], "plan": asdict(plan), **{k: ours[k] for k in (
        "batch_size", "classes", "prompts_per_step", "text_length_full", "text_length_trimmed",
        "vision_prompt_tokens", "image_conditional", "prec")},
        "train": train, "flop_floor": {"gflop": {k: v / 1e9 for k, v in ours["flops"].items()},
                                       "matmul_gflops": rate, "floor_s": floor_s,
                                       "ours_vs_floor": _ratio(train["ours_s"], floor_s),
                                       "straight_vs_floor": _ratio(train["straight_s"], floor_s)},
        "eval": evaluation, "max_logit_diff": evaluation["max_logit_diff"]}


def summarise(results: Dict[str, Dict[str, Any]], suffix: str = "") -> Dict[str, Any]:
    """The headline keys for one class count (``suffix`` e.g. ``_c500`` when several counts were run)."""
    out: Dict[str, Any] = {}
    for method, key in (("MaPLe", "maple"), ("CoCoOp", "cocoop"), ("CoOp", "coop"), ("IVLP", "ivlp"),
                        ("MuDPT", "mudpt")):
        if method in results:
            out[f"{key}_train_speedup{suffix}"] = results[method]["train"]["speedup"]
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


def quick_notes() -> List[str]:
    return ["--quick: CoOp, IVLP and MuDPT get 1 timed step per arm (after the warm-up) and no timed evaluation "
            "(their logits are compared on 4 test images); MaPLe's evaluation: ours and the image floor twice each "
            "over 200 images in ABBA order, the straightforward path once over 100 of them (throughput is "
            "compared per image); CoCoOp evaluates 2 images (its text depends on the "
            "image: 200 test images x 100 classes at 77 tokens would take over 30 minutes on 2 cores).",
            "CPU timings on a shared machine drift over minutes: arms alternate, and the matmul rate for the FLOP "
            "floor is measured before every repetition."]


def run_benchmark(class_counts: Sequence[int], methods: Sequence[str], plans: Dict[str, Plan], workdir: Path,
                  device: str = "cpu", imagenet_names: bool = False, weights: Optional[Path] = None,
                  resolution: int = 224, prec: Optional[str] = None, workers: int = 0,
                  arm_cls=ArmProcess, quiet_wait_s: float = 0.0) -> Dict[str, Any]:
    """Measure ``methods`` at each class count; returns the report (per-method entries + headline keys)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if weights is None:
        weights = workdir / "clip_vit_b16_random_fp16.pt"
        if not weights.exists():
            logger.info("Writing a random-weight ViT-B/16 CLIP to %s", weights)
            write_vit_b16_weights(weights)
    report: Dict[str, Any] = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                              "class_counts": list(class_counts), "methods": {}}
    for count in class_counts:
        suffix = f"_c{count}" if len(class_counts) > 1 else ""
        names = classnames_for(count, imagenet_names)
        n_test = max(max(p.eval_images, p.straight_eval_images, p.check_images) for p in plans.values())
        root = write_dataset(workdir / f"data_{count}", names, n_train=64, n_test=n_test)
        base = ArmSpec(method="", arm="", data_root=str(root), weights=str(weights),
                       output_dir=str(workdir / f"out_{count}"), device=device, prec=prec, workers=workers,
                       resolution=resolution)
        results = {}
        for method in methods:
            start = time.perf_counter()
            results[method] = bench_method(method, plans[method], base, arm_cls, quiet_wait_s)
            logger.info("%s done in %.0f s", method, time.perf_counter() - start)
        report["methods"][f"classes_{count}"] = results
        report.update(summarise(results, suffix))
    return report


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: Dict[str, Any]) -> str:
    """A plain-text table of the per-method numbers."""
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
                f"{_fmt(t['straight_s']):>12}s {_fmt(t['ours_s']):>8}s {_fmt(t['speedup']):>6}x "
                f"{_fmt(r['flop_floor']['ours_vs_floor']):>14}x {_fmt(t['memory']['ratio']):>9} "
                f"{_fmt(e.get('ours_s')):>8}s {_fmt(e.get('image_floor_s')):>8}s "
                f"{_fmt(e.get('eval_vs_image_floor')):>9}x {_fmt(r['max_logit_diff'], '.1e'):>11}{flag}")
    return "\n".join(lines)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="CPU profile: 100 Caltech101 classes, reduced methods")
    p.add_argument("--classes", type=int, nargs="+", help="class counts (default: 100 quick, 500 1000 full)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), help=f"subset of {list(METHODS)}")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per arm after one warm-up")
    p.add_argument("--eval-images", type=int, default=1000, help="test images per evaluation (full mode)")
    p.add_argument("--prec", choices=("fp32", "fp16", "bf16", "amp"), help="default: fp32 on CPU, config's on CUDA")
    p.add_argument("--workers", type=int, default=0, help="DATALOADER.NUM_WORKERS of the evaluation")
    p.add_argument("--quiet-wait", type=float, default=60.0,
                   help="before each repetition wait up to this many seconds for other programs to leave the CPUs "
                        "idle (0: never wait)")
    p.add_argument("--workdir", type=Path, help="where weights/data/outputs go (default: a temp dir)")
    p.add_argument("--out", type=Path, help="also write the JSON report here")
    return p.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    import trainers  # noqa: F401  (registers the trainers)
    from engine import TRAINER_REGISTRY, get_cfg_default

    cfg = get_cfg_default()
    if "TRIM_TEXT" not in cfg.MODEL or "CACHE_TEXT" not in cfg.TEST:
        raise SystemExit("MODEL.TRIM_TEXT / TEST.CACHE_TEXT are not defined: this code has no speed paths to compare")
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; choose from {list(METHODS)}")
    methods = [m for m in args.methods if m in TRAINER_REGISTRY]
    from clip.tokenizer import get_tokenizer

    get_tokenizer()  # fails here, once, with the download hint when the BPE vocabulary is unavailable
    plans = quick_plans(args.reps) if args.quick else full_plans(args.reps, args.eval_images)
    counts = args.classes or ([100] if args.quick else [500, 1000])
    with tempfile.TemporaryDirectory(prefix="prompt_bench_") as tmp:
        report = run_benchmark(counts, methods, plans, args.workdir or Path(tmp), device=args.device,
                               imagenet_names=not args.quick, prec=args.prec, workers=args.workers,
                               quiet_wait_s=args.quiet_wait if args.device == "cpu" else 0.0)
    report["mode"] = "quick" if args.quick else "full"
    report["notes"] = quick_notes() if args.quick else []
    print(format_table(report))
    line = json.dumps(report, default=lambda t: t.tolist() if isinstance(t, torch.Tensor) else str(t))
    if args.out:
        args.out.write_text(line + "\n")
    print(line)
    return report


if __name__ == "__main__":
    main()
