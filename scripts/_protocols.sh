#!/usr/bin/env bash
# The evaluation protocols shared by every method (sourced by the wrappers in scripts/<method>/).
#
# A wrapper is two lines: `source _protocols.sh` and `run_protocol METHOD PROTOCOL "$@"`. The method table
# (method_trainer / method_cfg) holds each method's trainer and official config per protocol; the protocol
# functions hold the official argument lists and output trees; _run.sh holds the one `python train.py`.
#
# Protocols (arguments as the official MaPLe/CoCoOp scripts; output trees identical to theirs):
#   base2new_train DATASET SEED   train on the base classes (16 shots), test on them at the end
#       -> ${OUTPUT_ROOT}/base2new/train_base/DATASET/shots_16/TRAINER/CFG/seedSEED
#   base2new_test DATASET SEED    evaluate that model on the new classes (SUB=base re-tests the base classes)
#       -> ${OUTPUT_ROOT}/base2new/test_new/DATASET/shots_16/TRAINER/CFG/seedSEED
#   xd_train [DATASET] SEED       train on all classes of DATASET (default imagenet), 16 shots
#       -> ${OUTPUT_ROOT}/DATASET/TRAINER/CFG_16shots/seedSEED
#   xd_test DATASET SEED          evaluate the ImageNet model on DATASET: cross-dataset transfer (10 targets) and
#                                 domain generalisation (imagenetv2, imagenet_sketch, imagenet_a, imagenet_r)
#       -> ${OUTPUT_ROOT}/evaluation/TRAINER/CFG_16shots/DATASET/seedSEED
#   reproduce DATASET SEED WEIGHTSPATH      evaluate released base-to-novel weights (WEIGHTSPATH/base/seedSEED)
#       on the base and the new classes -> the test_base and test_new trees above
#   reproduce_xd DATASET SEED WEIGHTSPATH   evaluate released ImageNet weights (WEIGHTSPATH/seedSEED) on DATASET
#       -> the xd_test tree above
#   few_shot DATASET SEED [SHOTS...]        few-shot training on all classes, SHOTS default "1 2 4 8 16"
#       -> ${OUTPUT_ROOT}/DATASET/TRAINER/CFG_Kshots/seedSEED (the CoOp few-shot tree, without CoOp's sub-folder)
#
# Environment (besides those of _run.sh): CFG (config name in configs/trainers/TRAINER/, overrides the method's
# default), SHOTS (16; not for few_shot), SUB (base2new_test: new), LOADEP (epoch to load; default: the last one,
# OPTIM.MAX_EPOCH of EXTRA_OPTS or of the config -- the official xd_test of IVLP/VPT/CoOp loads an epoch the
# config never saves), SRC_DATASET (xd_test: imagenet), SHOTS_LIST (few_shot: "1 2 4 8 16").
# A run whose folder holds a final results.json is skipped; an unfinished one is resumed by train.py.

source "$(dirname "${BASH_SOURCE[0]}")/_run.sh"

# method_trainer METHOD: the registered trainer of a scripts/ folder.
method_trainer() {
    case "$1" in
        coop) echo CoOp ;;
        cocoop) echo CoCoOp ;;
        maple) echo MaPLe ;;
        vpt) echo VPT ;;
        ivlp | language) echo IVLP ;;
        mudpt)
            case "${VARIANT:-MuDPT}" in
                MuDPT | UMuDPT | UUMuDPT) echo "${VARIANT:-MuDPT}" ;;
                *) die "unknown MuDPT variant '${VARIANT}' (known: MuDPT UMuDPT UUMuDPT)" ;;
            esac
            ;;
        *) die "unknown method '$1' (known: coop cocoop maple vpt ivlp language mudpt)" ;;
    esac
}

# method_cfg METHOD PROTOCOL DATASET [SHOTS]: the official config of a method for a protocol (CFG wins).
#   PROTOCOL: base2new, xd or few_shot.
method_cfg() {
    local method="$1" protocol="$2" dataset="$3" shots="${4:-16}"
    if [[ -n "${CFG:-}" ]]; then
        echo "$CFG"
        return 0
    fi
    case "$method:$protocol" in
        # CoOp as the CoCoOp paper's baseline: "a photo of a" init; ImageNet always trains 50 epochs (CoOp paper).
        coop:base2new | coop:xd) [[ "$dataset" == imagenet ]] && echo vit_b16_ep50_ctxv1 || echo vit_b16_ctxv1 ;;
        coop:few_shot) coop_few_shot_cfg "$dataset" "$shots" ;;
        cocoop:*) echo vit_b16_c4_ep10_batch1_ctxv1 ;;
        maple:xd) echo vit_b16_c2_ep5_batch4_2ctx_cross_datasets ;;
        # Few-shot configs are ours (the official repositories ship none): see the comment in each file.
        maple:few_shot) echo vit_b16_c2_ep50_batch4_2ctx_few_shot ;;
        maple:*) echo vit_b16_c2_ep5_batch4_2ctx ;;
        vpt:few_shot) echo vit_b16_c2_ep5_batch4_4_few_shot ;;
        vpt:*) echo vit_b16_c2_ep5_batch4_4 ;;
        ivlp:few_shot) echo "vit_b16_c2_ep5_batch4_2+2ctx_few_shot" ;;
        ivlp:*) echo "vit_b16_c2_ep5_batch4_2+2ctx" ;;
        language:few_shot) echo vit_b16_c2_ep5_batch4_4ctx_language_only_few_shot ;;
        language:*) echo vit_b16_c2_ep5_batch4_4ctx_language_only ;;
        # MuDPT: the authors' scripts (main: N_CTX 4, 10 epochs; UMuDPT: N_CTX 2, 5 epochs; their cross-dataset
        # evaluation names the N_CTX 2, 5-epoch file); UUMuDPT has no official config (MuDPT's settings).
        mudpt:xd) [[ "${TRAINER}" == MuDPT ]] && echo vit_b16_bz4_ep5_nctx2_depth9 || mudpt_main_cfg ;;
        mudpt:*) mudpt_main_cfg ;;
        *) die "no config for method '$method', protocol '$protocol'" ;;
    esac
}

# coop_few_shot_cfg DATASET SHOTS: CoOp's few-shot schedule (COOP.md) on ViT-B/16: 1 shot 50 epochs, 2-4 shots
#   100 epochs, 8-16 shots 200 epochs; ImageNet 50 epochs at every shot count.
coop_few_shot_cfg() {
    if [[ "$1" == imagenet || "$2" -le 1 ]]; then
        echo vit_b16_ep50
    elif (("$2" <= 4)); then
        echo vit_b16_ep100
    else
        echo vit_b16
    fi
}

# load_epoch CFG_FILE: LOADEP, else the last epoch the config trains.
load_epoch() {
    if [[ -n "${LOADEP:-}" ]]; then
        echo "$LOADEP"
    else
        require_config "$1"
        max_epoch_of "$1"
    fi
}

# xd_dir DATASET TRAINER CFG SHOTS SEED: the official cross-dataset (and few-shot) training folder.
xd_dir() {
    echo "${OUTPUT_ROOT}/$1/$2/$3_$4shots/seed$5"
}

# eval_dir DATASET TRAINER CFG SHOTS SEED: the official cross-dataset evaluation folder.
eval_dir() {
    echo "${OUTPUT_ROOT}/evaluation/$2/$3_$4shots/$1/seed$5"
}

# common_flags DATASET SEED CFG: the flags every protocol passes to train.py.
common_flags() {
    COMMON=(--seed "$2" --trainer "$TRAINER" --dataset-config-file "configs/datasets/$1.yaml"
        --config-file "configs/trainers/${TRAINER}/$3.yaml")
}

protocol_base2new_train() {
    need_args "$0 DATASET SEED" 2 $#
    local dataset="$1" seed="$2" cfg shots="${SHOTS:-16}"
    cfg="$(method_cfg "$METHOD" base2new "$dataset")"
    common_flags "$dataset" "$seed" "$cfg"
    run_train "$(base2new_dir train_base "$dataset" "$shots" "$TRAINER" "$cfg" "$seed")" "${COMMON[@]}" \
        -- DATASET.NUM_SHOTS "$shots" DATASET.SUBSAMPLE_CLASSES base
}

protocol_base2new_test() {
    need_args "$0 DATASET SEED" 2 $#
    local dataset="$1" seed="$2" cfg shots="${SHOTS:-16}" sub="${SUB:-new}" epoch
    cfg="$(method_cfg "$METHOD" base2new "$dataset")"
    epoch="$(load_epoch "configs/trainers/${TRAINER}/${cfg}.yaml")"
    common_flags "$dataset" "$seed" "$cfg"
    run_train "$(base2new_dir "test_${sub}" "$dataset" "$shots" "$TRAINER" "$cfg" "$seed")" "${COMMON[@]}" \
        --model-dir "$(base2new_dir train_base "$dataset" "$shots" "$TRAINER" "$cfg" "$seed")" \
        --load-epoch "$epoch" --eval-only \
        -- DATASET.NUM_SHOTS "$shots" DATASET.SUBSAMPLE_CLASSES "$sub"
}

# reproduce DATASET SEED WEIGHTSPATH: both test phases from released weights (the official script tests an
#   undefined folder; here each phase is skipped on its own once its results.json exists).
protocol_reproduce() {
    need_args "$0 DATASET SEED WEIGHTSPATH" 3 $#
    local dataset="$1" seed="$2" weights="$3" cfg shots="${SHOTS:-16}" epoch sub
    cfg="$(method_cfg "$METHOD" base2new "$dataset")"
    epoch="$(load_epoch "configs/trainers/${TRAINER}/${cfg}.yaml")"
    common_flags "$dataset" "$seed" "$cfg"
    for sub in base new; do
        run_train "$(base2new_dir "test_${sub}" "$dataset" "$shots" "$TRAINER" "$cfg" "$seed")" "${COMMON[@]}" \
            --model-dir "${weights%/}/base/seed${seed}" --load-epoch "$epoch" --eval-only \
            -- DATASET.NUM_SHOTS "$shots" DATASET.SUBSAMPLE_CLASSES "$sub"
    done
}

# xd_train [DATASET] SEED: MaPLe's scripts take DATASET SEED, CoCoOp's take SEED alone (DATASET=imagenet).
protocol_xd_train() {
    need_args "$0 [DATASET] SEED" 1 $#
    local dataset=imagenet seed="$1" cfg shots="${SHOTS:-16}"
    if (($# >= 2)); then
        dataset="$1"
        seed="$2"
    fi
    cfg="$(method_cfg "$METHOD" xd "$dataset")"
    common_flags "$dataset" "$seed" "$cfg"
    run_train "$(xd_dir "$dataset" "$TRAINER" "$cfg" "$shots" "$seed")" "${COMMON[@]}" \
        -- DATASET.NUM_SHOTS "$shots"
}

# xd_eval DATASET SEED MODEL_DIR: evaluate a cross-dataset model on DATASET (xd_test and reproduce_xd).
xd_eval() {
    local dataset="$1" seed="$2" model_dir="$3" cfg shots="${SHOTS:-16}" epoch
    cfg="$(method_cfg "$METHOD" xd "${SRC_DATASET:-imagenet}")"
    epoch="$(load_epoch "configs/trainers/${TRAINER}/${cfg}.yaml")"
    common_flags "$dataset" "$seed" "$cfg"
    run_train "$(eval_dir "$dataset" "$TRAINER" "$cfg" "$shots" "$seed")" "${COMMON[@]}" \
        --model-dir "${model_dir:-$(xd_dir "${SRC_DATASET:-imagenet}" "$TRAINER" "$cfg" "$shots" "$seed")}" \
        --load-epoch "$epoch" --eval-only
}

protocol_xd_test() {
    need_args "$0 DATASET SEED" 2 $#
    xd_eval "$1" "$2" ""
}

protocol_reproduce_xd() {
    need_args "$0 DATASET SEED WEIGHTSPATH" 3 $#
    xd_eval "$1" "$2" "${3%/}/seed$2"
}

# few_shot DATASET SEED [SHOTS...]: one run per shot count (default SHOTS_LIST="1 2 4 8 16").
protocol_few_shot() {
    need_args "$0 DATASET SEED [SHOTS...]" 2 $#
    local dataset="$1" seed="$2" cfg shots
    shift 2
    local -a all_shots=("$@")
    ((${#all_shots[@]})) || read -r -a all_shots <<<"${SHOTS_LIST:-1 2 4 8 16}"
    for shots in "${all_shots[@]}"; do
        [[ "$shots" =~ ^[1-9][0-9]*$ ]] || die "SHOTS must be positive integers, got '$shots'"
        cfg="$(method_cfg "$METHOD" few_shot "$dataset" "$shots")"
        common_flags "$dataset" "$seed" "$cfg"
        run_train "$(xd_dir "$dataset" "$TRAINER" "$cfg" "$shots" "$seed")" "${COMMON[@]}" \
            -- DATASET.NUM_SHOTS "$shots"
    done
}

# mudpt_main_cfg: the main config of the selected MuDPT variant (TRAINER).
mudpt_main_cfg() {
    [[ "$TRAINER" == UMuDPT ]] && echo vit_b16_bz4_ep5_nctx2_depth9 || echo vit_b16_bz4_ep10_nctx4_depth9
}

# run_protocol METHOD PROTOCOL ARGS...: the entry point of every wrapper. For mudpt a trailing argument
# MuDPT | UMuDPT | UUMuDPT selects the variant (as does VARIANT=...; default MuDPT).
run_protocol() {
    METHOD="$1"
    local name="protocol_$2"
    shift 2
    if [[ "$METHOD" == mudpt && $# -gt 0 && "${!#}" =~ ^U{0,2}MuDPT$ ]]; then
        VARIANT="${!#}"
        set -- "${@:1:$(($# - 1))}"
    fi
    TRAINER="$(method_trainer "$METHOD")"
    declare -F "$name" >/dev/null || die "unknown protocol '${name#protocol_}'"
    "$name" "$@"
}
