#!/usr/bin/env bash
# The one generic runner behind every script in scripts/<method>/ (sourced, not executed).
#
# It owns the only `python train.py` command line of the repository, so a wrapper states *what* to run
# (output folder, train.py flags, config opts) and never repeats *how*.
#
# Environment (all optional except DATA):
#   DATA         folder holding every dataset; passed as --root (required)
#   PYTHON       interpreter, may carry arguments (default: python)
#   EXTRA_OPTS   extra config opts appended to every run, as "KEY VALUE" pairs; shell quotes group a value,
#                e.g. EXTRA_OPTS='OPTIM.MAX_EPOCH 1 INPUT.SIZE "(32, 32)"' (they come last, so they win, but
#                they do not rename the output folder: change SHOTS etc. through the wrapper's own arguments)
#   DRY_RUN=1    print each command (shell-quoted, one per line, on stdout) instead of running it
#   OUTPUT_ROOT  root of the output trees (default: output)
#   SEEDS        seeds of the multi-seed wrappers (default: "1 2 3")
# Status messages go to stderr, so under DRY_RUN stdout holds exactly the commands.
# Needs bash >= 4.4 (mapfile -d).

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# A relative DATA means the caller's folder: resolve it before moving to the repository root.
if [[ -n "${DATA:-}" && "$DATA" != /* ]]; then
    DATA="$PWD/$DATA"
fi
cd "$REPO_ROOT"
OUTPUT_ROOT="${OUTPUT_ROOT:-output}" # relative to the repository root, as in the official scripts
SEEDS="${SEEDS:-1 2 3}"

# die MESSAGE...: print an error to stderr and stop the wrapper.
die() {
    echo "ERROR: $*" >&2
    exit 1
}

# note MESSAGE...: a status line (stderr).
note() {
    echo "$*" >&2
}

# need_args USAGE EXPECTED GIVEN: stop with the usage line when positional arguments are missing.
need_args() {
    local usage="$1" expected="$2" given="$3"
    if ((given < expected)); then
        echo "usage: $usage" >&2
        exit 2
    fi
}

# require_data: DATA must name the dataset root (the official scripts hard-code it; we read the environment).
require_data() {
    if [[ -z "${DATA:-}" ]]; then
        die "the environment variable DATA is not set: it must name the folder holding the datasets," \
            "e.g. DATA=/path/to/datasets bash $0 ..."
    fi
}

# require_config PATH: a config file named by the user must exist; list what does.
require_config() {
    local path="$1"
    if [[ ! -f "$path" ]]; then
        local names
        names="$(find "$(dirname "$path")" -maxdepth 1 -name '*.yaml' -printf '%f\n' 2>/dev/null \
            | sed 's/\.yaml$//' | sort | paste -sd ' ')"
        die "config file not found: $path (available in $(dirname "$path")/: ${names:-none})"
    fi
}

# load_extra_opts: split EXTRA_OPTS into the array EXTRA_ARGS (xargs honours quotes and runs nothing).
load_extra_opts() {
    EXTRA_ARGS=()
    [[ -z "${EXTRA_OPTS:-}" ]] && return 0
    printf '%s' "$EXTRA_OPTS" | xargs -r printf '%s\0' >/dev/null 2>&1 \
        || die "EXTRA_OPTS could not be split (unbalanced quotes?): $EXTRA_OPTS"
    mapfile -d '' -t EXTRA_ARGS < <(printf '%s' "$EXTRA_OPTS" | xargs -r printf '%s\0')
    if ((${#EXTRA_ARGS[@]} % 2 != 0)); then
        die "EXTRA_OPTS must hold KEY VALUE pairs, got ${#EXTRA_ARGS[@]} words: $EXTRA_OPTS"
    fi
}

# max_epoch_of CONFIG: OPTIM.MAX_EPOCH as EXTRA_OPTS or the config file sets it (the epoch a test loads).
max_epoch_of() {
    local cfg="$1" i epoch=""
    load_extra_opts
    for ((i = 0; i + 1 < ${#EXTRA_ARGS[@]}; i += 2)); do
        [[ "${EXTRA_ARGS[i]}" == "OPTIM.MAX_EPOCH" ]] && epoch="${EXTRA_ARGS[i + 1]}"
    done
    if [[ -z "$epoch" ]]; then
        epoch="$(sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9]\+\).*/\1/p' "$cfg" | tail -n 1)"
    fi
    [[ -n "$epoch" ]] || die "no OPTIM.MAX_EPOCH in $cfg: set LOADEP"
    echo "$epoch"
}

# is_finished OUT_DIR: the run wrote its final results.json. A results.json of the *val* split is written
#   after each epoch under TEST.FINAL_MODEL best_val, so it does not mean the run is over.
is_finished() {
    local results="$1/results.json"
    [[ -f "$results" ]] && ! grep -Eq '"split"[[:space:]]*:[[:space:]]*"val"' "$results"
}

# run_train OUT_DIR [train.py flags ...] [-- KEY VALUE ...]
#   Runs `train.py --root $DATA <flags> --output-dir OUT_DIR <opts> $EXTRA_OPTS`, unless OUT_DIR already
#   holds results.json (a finished run: skipped). An unfinished OUT_DIR is resumed by train.py itself.
run_train() {
    local out_dir="$1"
    shift
    local -a flags=() opts=()
    while (($#)) && [[ "$1" != "--" ]]; do
        flags+=("$1")
        shift
    done
    (($#)) && shift
    opts=("$@")
    require_data
    check_flag_paths "${flags[@]}"
    if is_finished "$out_dir"; then
        note "Results exist in ${out_dir}/results.json: skip this job (delete the folder to run it again)"
        return 0
    fi
    load_extra_opts
    local -a python
    read -r -a python <<<"${PYTHON:-python}"
    local -a cmd=("${python[@]}" train.py --root "$DATA" "${flags[@]}" --output-dir "$out_dir"
        "${opts[@]}" "${EXTRA_ARGS[@]}")
    if [[ "${DRY_RUN:-0}" == "1" ]]; then
        local quoted
        printf -v quoted '%q ' "${cmd[@]}"
        echo "${quoted% }"
        return 0
    fi
    if [[ -d "$out_dir" ]]; then
        note "Resume the unfinished job in ${out_dir}"
    else
        note "Run this job and save the output to ${out_dir}"
    fi
    "${cmd[@]}"
}

# check_flag_paths FLAGS...: config files must exist; a --model-dir must exist unless this is a dry run.
check_flag_paths() {
    local prev=""
    for arg in "$@"; do
        case "$prev" in
            --config-file | --dataset-config-file) require_config "$arg" ;;
            --model-dir)
                if [[ "${DRY_RUN:-0}" != "1" && ! -d "$arg" ]]; then
                    die "model directory not found: $arg (train the model first)"
                fi
                ;;
        esac
        prev="$arg"
    done
}

# base2new_dir PHASE DATASET SHOTS TRAINER CFG SEED: the MaPLe-repo base-to-novel folder,
#   ${OUTPUT_ROOT}/base2new/<PHASE>/<dataset>/shots_<K>/<trainer>/<cfg>/seed<S>
#   (PHASE: train_base, test_new, ...).
base2new_dir() {
    echo "${OUTPUT_ROOT}/base2new/$1/$2/shots_$3/$4/$5/seed$6"
}
