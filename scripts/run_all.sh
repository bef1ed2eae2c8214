#!/usr/bin/env bash
# Run a whole protocol of the papers for one method: every dataset x every seed, in the order the official
# instructions give (docs/RUN.md of MaPLe). Finished runs are skipped, unfinished ones resumed, so the command
# can simply be started again after an interruption.
# usage: DATA=/path/to/datasets bash scripts/run_all.sh METHOD PROTOCOL
#   METHOD:   coop cocoop maple vpt ivlp language mudpt (a folder of scripts/; mudpt: VARIANT=...)
#   PROTOCOL: base2new  base2new_train + base2new_test on the 11 datasets
#             xd        xd_train on imagenet + xd_test on the 10 cross-dataset targets
#             dg        xd_train on imagenet + xd_test on imagenetv2 imagenet_sketch imagenet_a imagenet_r
#             few_shot  few_shot (SHOTS_LIST, default 1 2 4 8 16) on the 11 datasets
# Environment: DATASETS (replaces the protocol's dataset list), SEEDS ("1 2 3") and those of
# scripts/_protocols.sh. Then: python tools/make_tables.py output
source "$(dirname "${BASH_SOURCE[0]}")/_protocols.sh"
need_args "$0 METHOD PROTOCOL" 2 $#

ELEVEN="imagenet caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft sun397 dtd eurosat ucf101"
XD_TARGETS="${ELEVEN#imagenet }"
DG_TARGETS="imagenetv2 imagenet_sketch imagenet_a imagenet_r"
WRAPPERS="$REPO_ROOT/scripts/$1"
[[ -d "$WRAPPERS" ]] || die "unknown method '$1' (a folder of scripts/: coop cocoop maple vpt ivlp language mudpt)"

case "$2" in
    base2new) STEPS=(base2new_train base2new_test) LIST="${DATASETS:-$ELEVEN}" ;;
    xd) STEPS=(xd_test) LIST="${DATASETS:-$XD_TARGETS}" ;;
    dg) STEPS=(xd_test) LIST="${DATASETS:-$DG_TARGETS}" ;;
    few_shot) STEPS=(few_shot) LIST="${DATASETS:-$ELEVEN}" ;;
    *) die "unknown protocol '$2' (base2new xd dg few_shot)" ;;
esac

for SEED in $SEEDS; do
    if [[ "$2" == xd || "$2" == dg ]]; then
        bash "$WRAPPERS/xd_train.sh" "${SRC_DATASET:-imagenet}" "$SEED"
    fi
    for DATASET in $LIST; do
        for STEP in "${STEPS[@]}"; do
            bash "$WRAPPERS/$STEP.sh" "$DATASET" "$SEED"
        done
    done
done
