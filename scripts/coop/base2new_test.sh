#!/usr/bin/env bash
# CoOp base-to-novel generalisation, phase 2: evaluate the model of base2new_train.sh on the novel classes.
# usage: DATA=/path/to/datasets bash scripts/coop/base2new_test.sh DATASET SEED
#   e.g. DATA=/path/to/datasets bash scripts/coop/base2new_test.sh caltech101 1
# Output: ${OUTPUT_ROOT}/base2new/test_${SUB}/${DATASET}/shots_${SHOTS}/CoOp/${CFG}/seed${SEED}
# Environment: CFG and SHOTS as in base2new_train.sh; SUB (new; base re-tests the base classes);
# LOADEP (default: the last epoch = OPTIM.MAX_EPOCH of EXTRA_OPTS or of the config);
# and those of scripts/_run.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../_run.sh"
need_args "$0 DATASET SEED" 2 $#

TRAINER=CoOp
DATASET=$1
SEED=$2
CFG="$(coop_base2new_cfg "$DATASET")"
SHOTS=${SHOTS:-16}
SUB=${SUB:-new}
CFG_FILE="configs/trainers/${TRAINER}/${CFG}.yaml"
if [[ -z "${LOADEP:-}" ]]; then
    require_config "$CFG_FILE"
    LOADEP="$(max_epoch_of "$CFG_FILE")"
fi

run_train "$(base2new_dir "test_${SUB}" "$DATASET" "$SHOTS" "$TRAINER" "$CFG" "$SEED")" \
    --seed "$SEED" --trainer "$TRAINER" \
    --dataset-config-file "configs/datasets/${DATASET}.yaml" \
    --config-file "$CFG_FILE" \
    --model-dir "$(base2new_dir train_base "$DATASET" "$SHOTS" "$TRAINER" "$CFG" "$SEED")" \
    --load-epoch "$LOADEP" --eval-only \
    -- DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$SUB"
