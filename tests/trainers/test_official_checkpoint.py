"""Official-format checkpoints (tests/fixtures train runs) evaluate to the recorded accuracy, macro-F1 and
per-image predictions, on the base and on the new classes."""
from __future__ import annotations

import pytest

from .helpers import caltech_argv, check_official_run
from .test_kgcoop import KGCOOP_OPTS

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
    "KgCoOp": ("kgcoop/train_runs/caltech101/KgCoOp", "KgCoOp/vit_b16_ep100_ctxv1.yaml", KGCOOP_OPTS, 1e-4),
}


@pytest.mark.parametrize("subsample", ["base", "new"])
@pytest.mark.parametrize("name", sorted(RUNS))
def test_official_checkpoint_reproduces_accuracy(name, subsample, fixtures_dir, data_root, vit_b16_32px_path,
                                                 tmp_path):
    folder, config, extra, logits_atol = RUNS[name]
    argv = caltech_argv(data_root, tmp_path / "out", vit_b16_32px_path, name, config, 32, extra)
    check_official_run(argv, fixtures_dir / folder, subsample, data_root, tmp_path / "out", logits_atol)
