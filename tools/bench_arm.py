"""One arm of ``tools/benchmark.py``: a trainer built through the real code path, measured on request.

An arm is a method in one configuration: ``straight`` (the official path: 77-token text, text recomputed per
test batch, CoCoOp's loop over images) or ``ours`` (the defaults). Each arm lives in its own process
(:func:`serve`), so its peak memory is its own; the parent sends commands and alternates between arms.
"""
from __future__ import annotations

import logging
import resource
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch.utils.data import DataLoader, Subset

from tools.bench_setup import clip_dims, step_flops

REPO = Path(__file__).resolve().parents[1]
# method -> (official config under configs/trainers, config node)
METHODS: Dict[str, tuple] = {
    "MaPLe": ("MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE"),
    "CoOp": ("CoOp/vit_b16.yaml", "COOP"),
    "CoCoOp": ("CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml", "COCOOP"),
    "IVLP": ("IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "IVLP"),
    "MuDPT": ("MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml", "MUDPT"),
}
ARMS = ("straight", "ours")


@dataclass
class ArmSpec:
    """Everything a worker needs to build its trainer (picklable)."""

    method: str
    arm: str
    data_root: str
    weights: str
    output_dir: str
    device: str = "cpu"
    prec: Optional[str] = None  # None: fp32 on CPU, the config's own PREC on CUDA
    workers: int = 0
    resolution: int = 224
    seed: int = 1


def arm_options(spec: ArmSpec) -> List[str]:
    """``KEY VALUE`` overrides selecting the arm's speed paths, precision, device and data settings."""
    node = METHODS[spec.method][1]
    on = "True" if spec.arm == "ours" else "False"
    opts = ["MODEL.TRIM_TEXT", on, "TEST.CACHE_TEXT", on]
    if spec.method == "CoCoOp":
        opts += ["TRAINER.COCOOP.BATCHED_TEXT", on]
    prec = spec.prec or ("fp32" if spec.device == "cpu" else None)
    if prec:
        opts += [f"TRAINER.{node}.PREC", prec]
    return opts + ["USE_CUDA", str(spec.device == "cuda"), "DATALOADER.NUM_WORKERS", str(spec.workers),
                   "INPUT.SIZE", f"({spec.resolution}, {spec.resolution})", "MODEL.BACKBONE.PATH", spec.weights,
                   "VERBOSE", "False"]


def build_argv(spec: ArmSpec) -> List[str]:
    """The ``train.py`` command line of this arm (official flags + overrides)."""
    if spec.arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {spec.arm!r}")
    return ["--root", spec.data_root, "--seed", str(spec.seed), "--trainer", spec.method,
            "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
            "--config-file", str(REPO / "configs/trainers" / METHODS[spec.method][0]),
            "--output-dir", spec.output_dir, *arm_options(spec)]


def _rss_mb(field: str) -> Optional[float]:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ArmSession:
    """A built trainer plus its fixed training batch and initial learnable state."""

    def __init__(self, spec: ArmSpec) -> None:
        import train
        from engine import build_trainer

        self.spec = spec
        args = train.build_parser().parse_args(build_argv(spec))
        cfg = train.setup_cfg(args)
        train.set_random_seed(cfg.SEED)
        self.trainer = build_trainer(cfg)
        self.cuda = self.trainer.device.type == "cuda"
        torch.manual_seed(cfg.SEED)
        self.batch = next(iter(self.trainer.train_loader_x))
        self.initial = [p.detach().clone() for p in self._learnable()]
        self.rss_reset = False

    def _learnable(self) -> List[torch.nn.Parameter]:
        return [p for p in self.trainer.model.parameters() if p.requires_grad]

    def _timed(self, fn: Callable[[], Any]) -> tuple:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, out

    def restore(self) -> None:
        """Put the learnable tensors back to their initial values (both arms then hold the same ones)."""
        with torch.no_grad():
            for p, v in zip(self._learnable(), self.initial):
                p.copy_(v)

    def info(self) -> Dict[str, Any]:
        """Sizes of this arm's step and its FLOP floor (image + text at the truncated text length)."""
        model = self.trainer.model
        learner = model.prompt_learner
        batch = int(self.batch["img"].shape[0])
        feats = torch.zeros(batch, model.clip.embed_dim, device=self.trainer.device)
        text_inputs = learner.text_inputs(feats)  # grad enabled: shows whether gradients reach the text tower
        ids = text_inputs["text"]  # (C, 77), or (B*C, 77) for image-conditional prompts
        tensors = [v for v in text_inputs.values() if isinstance(v, torch.Tensor)]
        tensors += [t for v in text_inputs.values() if isinstance(v, dict) for t in v.values()
                    if isinstance(t, torch.Tensor)]
        text_grad = any(t.requires_grad for t in tensors)
        shallow, deep = learner.vision_prompts()
        n_vision = 0 if shallow is None else int(shallow.shape[-2])
        trimmed = int(ids.argmax(dim=-1).max()) + 1
        flops = step_flops(clip_dims(model.clip), batch, int(ids.shape[0]), trimmed, n_vision,
                           image_backward=shallow is not None or bool(deep), text_backward=text_grad)
        initial_sum = float(sum(v.double().sum() for v in self.initial))
        return {"batch_size": batch, "classes": self.trainer.num_classes, "prompts_per_step": int(ids.shape[0]),
                "text_length_full": int(ids.shape[1]), "text_length_trimmed": trimmed,
                "vision_prompt_tokens": n_vision, "image_conditional": bool(learner.image_conditional),
                "flops": flops, "initial_param_sum": initial_sum, "device": str(self.trainer.device),
                "prec": self.trainer.precision.mode}

    def reset_peak_memory(self) -> None:
        """Start a fresh peak-memory window (CUDA stats; on Linux the process's VmHWM via clear_refs)."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.rss_reset = True
        except OSError:
            self.rss_reset = False

    def memory(self) -> Dict[str, Any]:
        """Peak memory (MB) since :meth:`reset_peak_memory`: CUDA max allocated, or peak RSS on CPU."""
        if self.cuda:
            return {"kind": "cuda_max_allocated", "peak_mb": torch.cuda.max_memory_allocated() / 2 ** 20,
                    "current_mb": torch.cuda.memory_allocated() / 2 ** 20}
        peak = _rss_mb("VmHWM") if self.rss_reset else None
        if peak is None:  # lifetime peak (includes building the model)
            lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            return {"kind": "ru_maxrss_lifetime", "peak_mb": lifetime, "current_mb": _rss_mb("VmRSS")}
        return {"kind": "peak_rss", "peak_mb": peak, "current_mb": _rss_mb("VmRSS")}

    def step(self) -> Dict[str, float]:
        """One ``trainer.forward_backward`` on the fixed batch (optimizer step included).

        ``cpu_util``: CPU seconds of this process per wall second during the step (about the thread count when
        the machine is otherwise idle; much less means another program took cores and the time is inflated).
        """
        self.trainer.set_model_mode("train")
        cpu = _cpu_seconds()
        seconds, out = self._timed(lambda: self.trainer.forward_backward(self.batch))
        return {"seconds": seconds, "loss": float(out["loss"]), "cpu_util": (_cpu_seconds() - cpu) / seconds}

    def _subset_loader(self, n_images: int) -> DataLoader:
        loader = self.trainer.dm.test_loader
        n = min(n_images, len(loader.dataset))
        return DataLoader(Subset(loader.dataset, range(n)), batch_size=loader.batch_size, shuffle=False,
                          num_workers=loader.num_workers, pin_memory=loader.pin_memory)

    def evaluate(self, n_images: int) -> Dict[str, Any]:
        """``trainer.test()`` over the first ``n_images`` test images, from the initial learnable state."""
        self.restore()
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
        return {"seconds": seconds, "images": len(self.trainer.test_loader.dataset), "logits": torch.cat(logits)}

    @torch.no_grad()
    def image_floor(self, n_images: int) -> Dict[str, Any]:
        """Time of the image tower alone (with this method's vision prompts) on the same test batches."""
        self.restore()
        self.trainer.set_model_mode("eval")
        batches = [self.trainer.parse_batch_test(b)[0] for b in self._subset_loader(n_images)]
        model, precision = self.trainer.model, self.trainer.precision

        def run() -> None:
            with precision.autocast():
                for images in batches:
                    model.image_features(images)

        seconds, _ = self._timed(run)
        return {"seconds": seconds, "images": sum(int(b.shape[0]) for b in batches)}

    def matmul_rate(self, size: int = 2048, repeat: int = 3) -> float:
        """Dense fp32 matmul rate (GFLOP/s) of this device now: best of ``repeat`` ``size^3`` products."""
        a = torch.randn(size, size, device=self.trainer.device)
        b = torch.randn(size, size, device=self.trainer.device)
        a @ b
        best = min(self._timed(lambda: a @ b)[0] for _ in range(repeat))
        return 2.0 * size ** 3 / best / 1e9


def serve(conn, spec: ArmSpec) -> None:
    """Worker loop: build the arm, answer ``(command, kwargs)`` messages until ``("stop", {})``."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        session = ArmSession(spec)
        conn.send(("ok", session.info()))
    except Exception:  # report the failure to the parent instead of dying silently
        conn.send(("error", traceback.format_exc()))
        return
    while True:
        command, kwargs = conn.recv()
        if command == "stop":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", getattr(session, command)(**kwargs)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
