#!/usr/bin/env bash
# CoOp base-to-novel generalisation, phase 1: train on the base half of the classes (16 shots) and test on it.
# usage: DATA=/path/to/datasets bash scripts/coop/base2new_train.sh DATASET SEED
#   e.g. DATA=/path/to/datasets bash scripts/coop/base2new_train.sh caltech101 1
# Output: ${OUTPUT_ROOT}/base2new/train_base/${DATASET}/shots_${SHOTS}/CoOp/${CFG}/seed${SEED}
# Environment: CFG (default vit_b16_ctxv1; vit_b16_ep50_ctxv1 for imagenet), SHOTS (16), and those of
# scripts/_run.sh (DATA, PYTHON, EXTRA_OPTS, DRY_RUN, OUTPUT_ROOT).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_run.sh"
need_args "$0 DATASET SEED" 2 $#

TRAINER=CoOp
DATASET=$1
SEED=$2
CFG="$(coop_base2new_cfg "$DATASET")"
SHOTS=${SHOTS:-16}

run_train "$(base2new_dir train_base "$DATASET" "$SHOTS" "$TRAINER" "$CFG" "$SEED")" \
    --seed "$SEED" --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
    -- DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
