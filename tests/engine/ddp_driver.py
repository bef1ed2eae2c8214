"""``[torchrun --nproc_per_node=N] python ddp_driver.py OUT DATA WEIGHTS [cpu|cuda]``: one short ``train.main``
run per registered trainer (tiny CLIP, no random augmentation, fp32), each into ``OUT/<trainer>``. The DDP tests run
it with 1 and with 2 processes and compare the results (gloo on the CPU; NCCL in tests/gpu)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import train  # noqa: E402
from engine import TRAINER_REGISTRY  # noqa: E402
from engine.features import FeatureTrainer  # noqa: E402

CONFIGS = {"CoOp": "CoOp/vit_b16.yaml", "CoCoOp": "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
           "MaPLe": "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "VPT": "VPT/vit_b16_c2_ep5_batch4_4.yaml",
           "IVLP": "IVLP/vit_b16_c2_ep5_batch4_2+2ctx.yaml", "MuDPT": "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml",
           "UMuDPT": "UMuDPT/vit_b16_bz4_ep5_nctx2_depth9.yaml",
           "UUMuDPT": "UUMuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml",
           "PromptSRC": "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
           "ExtrasLinearProbeCoOp": "ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml",
           "ExtrasLinearProbeCoCoOp": "ExtrasLinearProbeCoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
           "ExtrasLinearProbeKgCoOp": "ExtrasLinearProbeKgCoOp/vit_b16_ep10_ctxv1_bs4_lr35.yaml",
           "ExtrasLinearProbeMaPLe": "ExtrasLinearProbeMaPLe/vit_b16_c2_ep10_batch4_2ctx.yaml",
           "MMRL": "MMRL/vit_b16.yaml", "ProGrad": "ProGrad/rn50_ep100.yaml", "TCP": "TCP/vit_b16_ep100_ctxv1.yaml"}
# MMRL: the official layers 6..12 are past the tiny CLIP's 2; TCP: its scripts' 4 context tokens, and its meta-net
# in fp32 (its default fp16 gradients, averaged over processes, round differently from one process's)
TINY_OPTS = {"MMRL": ["TRAINER.MMRL.REP_LAYERS", "[1, 2]"],
             "TCP": ["TRAINER.COOP.N_CTX", "4", "TRAINER.COCOOP.PREC", "fp32"]}


# Variants whose training step is another listed trainer's (MuDPT's two others; DePT's mixin over CoCoOp and
# KgCoOp, as over CoOp and MaPLe): left out of the CPU test for suite time, run on GPUs (tests/gpu).
SAME_STEP_AS_ANOTHER = {"UMuDPT", "UUMuDPT", "ExtrasLinearProbeCoCoOp", "ExtrasLinearProbeKgCoOp"}


def single_process(cls) -> bool:
    """Trainers the DDP tests leave out: no weights to train, cached features (a fit takes seconds), videos."""
    return cls.EVALUATES_WITHOUT_WEIGHTS or issubclass(cls, FeatureTrainer) or getattr(cls, "VIDEO", False)


def main(out: str, data: str, weights: str, device: str = "cpu") -> None:
    for name, cls in TRAINER_REGISTRY:
        if single_process(cls) or (device == "cpu" and name in SAME_STEP_AS_ANOTHER):
            continue
        node = cls.CFG_NODE
        train.main(["--root", data, "--seed", "3", "--trainer", name,
                    "--dataset-config-file", str(REPO / "configs/datasets/caltech101.yaml"),
                    "--config-file", str(REPO / "configs/trainers" / CONFIGS.get(name, "CoOp/vit_b16.yaml")),
                    "--output-dir", f"{out}/{name}", "DATASET.NUM_SHOTS", "4", "DATASET.SUBSAMPLE_CLASSES", "base",
                    "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']", "MODEL.BACKBONE.PATH", weights,
                    "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.02", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
                    "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "8", f"TRAINER.{node}.PREC", "fp32",
                    "USE_CUDA", str(device == "cuda"), *TINY_OPTS.get(name, ())])


if __name__ == "__main__":
    main(*sys.argv[1:5])
