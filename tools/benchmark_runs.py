"""Time per few-shot run: the feature-based baselines (linear probe, adapters) against a prompt method; and
ActionCLIP's run with the trimmed text tower against the full-length one.

    python tools/benchmark.py --per-run                   # toy data, a random-weight ViT-B/16 CLIP at 224 px
    python tools/benchmark.py --per-run --classes 20 --shots 4 --epochs 5
    python tools/benchmark.py --video                     # ActionCLIP on synthetic UCF101-format videos

Each method runs ``train.main`` once on a fresh feature cache of its own (cold: its image features are computed)
and, for the feature-based ones, again on the filled cache (cached: a rerun, or another seed's run on the same
test split). Iterative methods (CoOp, CLIP_Adapter, TipAdapterF) train ``--epochs`` epochs (default: their
config's). One line per method, then a summary line, then one JSON object (the last line).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
# method -> config; the feature-based trainers and CoOp, the prompt method they are compared with
RUN_METHODS = {"CoOp": "CoOp/vit_b16.yaml", "LinearProbeCLIP": "LinearProbeCLIP/vit_b16.yaml",
               "TipAdapter": "TipAdapter/vit_b16.yaml", "TipAdapterF": "TipAdapterF/vit_b16.yaml",
               "CLIP_Adapter": "CLIP_Adapter/vit_b16.yaml"}
FEATURE_BASED = ("LinearProbeCLIP", "TipAdapter", "TipAdapterF", "CLIP_Adapter")


def time_runs(data_root: Path, weights: Path, resolution: int, workdir: Path, shots: int = 4,
              epochs: Optional[int] = None, methods: Sequence[str] = tuple(RUN_METHODS)) -> Dict[str, Dict]:
    """Seconds of one ``train.py`` run per method (``cold_s``; feature-based also ``cached_s``) and its accuracy."""
    import train

    report: Dict[str, Dict] = {}
    for method in methods:
        times = []
        for phase in ("cold", "cached") if method in FEATURE_BASED else ("cold",):
            argv = ["--root", str(data_root), "--seed", "1", "--trainer", method, "--dataset-config-file",
                    str(REPO / "configs/datasets/caltech101.yaml"), "--config-file",
                    str(REPO / "configs/trainers" / RUN_METHODS[method]),
                    "--output-dir", str(workdir / f"{method}_{phase}"), "DATASET.NUM_SHOTS", str(shots),
                    "INPUT.SIZE", f"({resolution}, {resolution})", "DATALOADER.NUM_WORKERS", "0",
                    "MODEL.BACKBONE.PATH", str(weights),
                    "DATALOADER.FEATURE_CACHE_DIR", str(workdir / "features" / method),
                    "TRAIN.PRINT_FREQ", "1000"]
            if epochs and method in ("CoOp", "CLIP_Adapter", "TipAdapterF"):
                argv += ["OPTIM.MAX_EPOCH", str(epochs)]
            start = time.perf_counter()
            train.main(argv)
            times.append(time.perf_counter() - start)
        results = json.loads((workdir / f"{method}_{phase}" / "results.json").read_text())
        report[method] = {"cold_s": times[0], "cached_s": times[1] if len(times) > 1 else None,
                          "accuracy": results["accuracy"]}
    return report


def time_video_runs(data_root: Path, weights: Path, resolution: int, workdir: Path, frames: int = 8,
                    batch: int = 4, epochs: int = 1) -> Dict[str, Dict]:
    """ActionCLIP: seconds of one ``train.py`` run (training, then the template-averaged evaluation) with the text
    tower trimmed to the longest prompt (``MODEL.TRIM_TEXT True``, ours) and at the full 77 tokens (the official
    path); both must report the same top-1 (the trimmed path only skips padding that never reaches EOT)."""
    import train

    report: Dict[str, Dict] = {}
    for arm, trim in (("straight", "False"), ("ours", "True")):
        out = workdir / f"ActionCLIP_{arm}"
        argv = ["--root", str(data_root), "--seed", "1", "--trainer", "ActionCLIP",
                "--dataset-config-file", str(REPO / "configs/datasets/ucf101_video.yaml"),
                "--config-file", str(REPO / "configs/trainers/ActionCLIP/ucf_train.yaml"), "--output-dir", str(out),
                "MODEL.BACKBONE.PATH", str(weights), "MODEL.TRIM_TEXT", trim, "INPUT.SIZE",
                f"({resolution}, {resolution})", "DATALOADER.NUM_WORKERS", "0", "OPTIM.MAX_EPOCH", str(epochs),
                "DATALOADER.TRAIN_X.BATCH_SIZE", str(batch), "DATALOADER.TEST.BATCH_SIZE", str(batch),
                "TRAINER.ACTIONCLIP.NUM_SEGMENTS", str(frames), "TRAIN.PRINT_FREQ", "1000"]
        start = time.perf_counter()
        train.main(argv)
        seconds = time.perf_counter() - start
        results = json.loads((out / "results.json").read_text())
        report[arm] = {"seconds": seconds, "top1": results["accuracy"], "top5": results["top5"]}
    report["speedup"] = {"run": report["straight"]["seconds"] / report["ours"]["seconds"]}
    return report


def format_runs(report: Dict[str, Dict], shots: int) -> str:
    lines = [f"{m}: {r['cold_s']:.1f} s" + (f" (features cached: {r['cached_s']:.1f} s)" if r["cached_s"] else "")
             + f", accuracy {r['accuracy']:.2f}" for m, r in report.items()]
    if "CoOp" in report:
        ref = report["CoOp"]["cold_s"]
        lines.append(f"time per run ({shots} shots) vs CoOp: " + ", ".join(
            f"{m} {r['cold_s'] / ref:.2f}x" + (f" / {r['cached_s'] / ref:.2f}x cached" if r["cached_s"] else "")
            for m, r in report.items() if m != "CoOp"))
    return "\n".join(lines)


def run_video(workdir: Path, classes: int, preset: str = "vitb16-224px", frames: int = 8) -> Dict[str, Dict]:
    """Synthetic UCF101-format videos and random weights in ``workdir``; ActionCLIP timed both ways."""
    import torch

    from tools.make_synthetic_videos import make_videos
    from tools.make_toy_clip import PRESETS, make_toy_clip_state_dict

    resolution = PRESETS[preset]["image_resolution"]
    weights = workdir / "clip.pt"
    torch.save(make_toy_clip_state_dict(seed=0, preset=preset), weights)
    make_videos(str(workdir / "data"), "UCF101Video", classes=classes, train=2, val=1, size=(resolution, resolution))
    logging.getLogger().setLevel(logging.WARNING)
    report = time_video_runs(workdir / "data", weights, resolution, workdir, frames)
    print(f"ActionCLIP run, {classes} classes, {frames} frames: full text {report['straight']['seconds']:.1f} s, "
          f"trimmed {report['ours']['seconds']:.1f} s ({report['speedup']['run']:.2f}x), top-1 "
          f"{report['straight']['top1']:.2f} / {report['ours']['top1']:.2f}")
    print(json.dumps({"video_run": report, "classes": classes, "frames": frames, "preset": preset}))
    return report


def run(workdir: Path, classes: int, shots: int, epochs: Optional[int], preset: str = "vitb16-224px"
        ) -> Dict[str, Dict]:
    """Build the toy data and weights in ``workdir``, time every method, print the lines and the JSON."""
    import torch

    from tools.make_toy_clip import PRESETS, make_toy_clip_state_dict
    from tools.make_toy_dataset import make_toy_dataset

    resolution = PRESETS[preset]["image_resolution"]
    weights = workdir / "clip.pt"
    torch.save(make_toy_clip_state_dict(seed=0, preset=preset), weights)
    make_toy_dataset(workdir / "data", n_classes=classes, per_class=max(16, 2 * shots + 8), size=resolution)
    logging.getLogger().setLevel(logging.WARNING)
    report = time_runs(workdir / "data", weights, resolution, workdir, shots, epochs)
    print(format_runs(report, shots))
    print(json.dumps({"per_run": report, "classes": classes, "shots": shots, "epochs": epochs, "preset": preset}))
    return report
