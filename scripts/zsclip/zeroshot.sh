#!/usr/bin/env bash
# Zero-shot CLIP evaluation (official scripts/zsclip/zeroshot.sh; the CoOp configs give the backbone).
# usage: DATA=/path/to/datasets bash scripts/zsclip/zeroshot.sh DATASET CFG
#   CFG: rn50, rn101, vit_b32 or vit_b16 (configs/trainers/CoOp/), e.g. ... zeroshot.sh caltech101 vit_b16
# Environment: see scripts/_run.sh (DATA, PYTHON, EXTRA_OPTS, DRY_RUN, OUTPUT_ROOT).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_run.sh"
need_args "$0 DATASET CFG" 2 $#

TRAINER=ZeroshotCLIP
DATASET=$1
CFG=$2

run_train "${OUTPUT_ROOT}/${TRAINER}/${CFG}/${DATASET}" \
    --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "configs/trainers/CoOp/${CFG}.yaml" \
    --eval-only
