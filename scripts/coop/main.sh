#!/usr/bin/env bash
# CoOp few-shot training, seeds 1 2 3 (official scripts/coop/main.sh arguments and output tree).
# usage: DATA=/path/to/datasets bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC
#   e.g. DATA=/path/to/datasets bash scripts/coop/main.sh caltech101 rn50 end 16 16 False
# Environment: see scripts/_run.sh (DATA, PYTHON, EXTRA_OPTS, DRY_RUN, OUTPUT_ROOT, SEEDS).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_run.sh"
need_args "$0 DATASET CFG CTP NCTX SHOTS CSC" 6 $#

TRAINER=CoOp
DATASET=$1
CFG=$2   # config file in configs/trainers/CoOp/
CTP=$3   # class token position (end or middle)
NCTX=$4  # number of context tokens
SHOTS=$5 # number of shots (1, 2, 4, 8, 16)
CSC=$6   # class-specific context (False or True)

SETTING=${CFG}_${SHOTS}shots/nctx${NCTX}_csc${CSC}_ctp${CTP}
for SEED in $SEEDS; do
    run_train "${OUTPUT_ROOT}/${DATASET}/${TRAINER}/${SETTING}/seed${SEED}" \
        --seed "$SEED" --trainer "$TRAINER" \
        --dataset-config-file "configs/datasets/${DATASET}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${CFG}.yaml" \
        -- TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" \
        DATASET.NUM_SHOTS "$SHOTS"
done
