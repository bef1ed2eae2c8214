#!/usr/bin/env bash
# Evaluate the CoOp models trained on ImageNet by scripts/coop/main.sh on another dataset, seeds 1 2 3
# (official scripts/coop/eval.sh: distribution shift to imagenetv2, imagenet_sketch, imagenet_a, imagenet_r).
# usage: DATA=/path/to/datasets bash scripts/coop/eval.sh DATASET CFG
#   e.g. DATA=/path/to/datasets bash scripts/coop/eval.sh imagenetv2 rn50
# Model: ${OUTPUT_ROOT}/${SRC_DATASET}/CoOp/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/seed${SEED}
# Output: ${OUTPUT_ROOT}/evaluation/CoOp/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}/${DATASET}/seed${SEED}
# Official settings, overridable from the environment:
#   SRC_DATASET=imagenet SHOTS=16 NCTX=16 CSC=False CTP=end LOADEP=50
# Environment: see scripts/_run.sh (DATA, PYTHON, EXTRA_OPTS, DRY_RUN, OUTPUT_ROOT, SEEDS).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_run.sh"
need_args "$0 DATASET CFG" 2 $#

TRAINER=CoOp
DATASET=$1
CFG=$2
SRC_DATASET=${SRC_DATASET:-imagenet}
SHOTS=${SHOTS:-16}
NCTX=${NCTX:-16}
CSC=${CSC:-False}
CTP=${CTP:-end}
LOADEP=${LOADEP:-50}

SETTING=${TRAINER}/${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}
for SEED in $SEEDS; do
    run_train "${OUTPUT_ROOT}/evaluation/${SETTING}/${DATASET}/seed${SEED}" \
        --seed "$SEED" --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        --model-dir "${OUTPUT_ROOT}/${SRC_DATASET}/${SETTING}/seed${SEED}" \
        --load-epoch "$LOADEP" --eval-only \
        -- TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP"
done
