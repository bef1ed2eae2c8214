"""Official-format checkpoints (tests/fixtures train runs) evaluate to the recorded accuracy, macro-F1 and
per-image predictions, on the base and on the new classes."""
from __future__ import annotations

import pytest

from .helpers import caltech_argv, check_official_run
from .test_kgcoop import KGCOOP_OPTS
from .test_official_runs import PROGRAD_OPTS, TCP_OPTS

RUNS = {
    # trainer: (run folder under tests/fixtures, config, extra opts, logits tolerance)
    "CoOp": ("train_runs/caltech101/CoOp", "CoOp/vit_b16.yaml",
             ["TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CLASS_TOKEN_POSITION", "end", "TRAINER.COOP.PREC", "fp32"],
             1e-4),
    # The official MaPLe run rounded its prompts to fp16: logits agree to that precision; predictions exactly.
    "MaPLe": ("train_runs/caltech101/MaPLe", "MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", ["TRAINER.MAPLE.PREC", "fp32"],
              5e-4),
    "MuDPT": ("mudpt/train_runs/caltech101/MuDPT", "MuDPT/vit_b16_bz4_ep10_nctx4_depth9.yaml",
              ["TRAINER.MUDPT.N_CTX", "4", "TRAINER.MUDPT.DEEP_PROMPT_DEPTH", "9", "TRAINER.MUDPT.PREC", "fp32"],
              None),
    # MMRL: base classes scored by the fused heads, new classes by the class token alone (TASK B2N).
    "MMRL": ("mmrl/train_runs/caltech101/MMRL", "MMRL/vit_b16.yaml",
             ["TRAINER.MMRL.PREC", "fp32", "TRAINER.MMRL.REP_LAYERS", "[6,12]"], 1e-4),
    # 3 epochs (the Gaussian average of the prompts of 3 epochs); the official run rounded its prompts to fp16
    "PromptSRC": ("promptsrc/train_runs/caltech101/PromptSRC", "PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml",
                  ["TRAINER.PROMPTSRC.PREC", "fp32"], 5e-4),
    "KgCoOp": ("kgcoop/train_runs/caltech101/KgCoOp", "KgCoOp/vit_b16_ep100_ctxv1.yaml", KGCOOP_OPTS, 1e-4),
    # DePT over CoOp: base classes scored by 0.3 x similarity + 0.7 x the head, new classes by the similarity alone
    # (the file's head is skipped there)
    "ExtrasLinearProbeCoOp": ("dept/train_runs/caltech101/ExtrasLinearProbeCoOp",
                              "ExtrasLinearProbeCoOp/vit_b16_ep10_bs4_lr35.yaml", ["TRAINER.COOP.PREC", "fp32"], 1e-4),
    "ProGrad": ("prograd/train_runs/caltech101/ProGrad", "ProGrad/rn50_ep100.yaml", PROGRAD_OPTS, 1e-4),
    # the official default run, its meta-net fp16 (ours too): the same fp32 tolerance as the others
    "TCP": ("tcp/train_runs/caltech101/TCP", "TCP/vit_b16_ep100_ctxv1.yaml", TCP_OPTS, 1e-4),
}
EPOCHS = {"PromptSRC": 3}
WEIGHTS = {"ProGrad": ("rn50_64px_path", 64)}  # (conftest fixture, input size); default the ViT-B/16 32 px weights


@pytest.mark.parametrize("subsample", ["base", "new"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_official_checkpoint_reproduces_accuracy(name, subsample, fixtures_dir, data_root, request, tmp_path):
    folder, config, extra, logits_atol = RUNS[name]
    weights, size = WEIGHTS.get(name, ("vit_b16_32px_path", 32))
    argv = caltech_argv(data_root, tmp_path / "out", request.getfixturevalue(weights), name, config, size, extra)
    check_official_run(argv, fixtures_dir / folder, subsample, data_root, tmp_path / "out", logits_atol,
                       EPOCHS.get(name, 2))
