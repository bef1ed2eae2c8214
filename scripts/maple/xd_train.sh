#!/usr/bin/env bash
# MaPLe: cross-dataset + DG, phase 1: train on all ImageNet classes (16 shots).
# usage: DATA=/path/to/datasets bash scripts/maple/xd_train.sh [DATASET] SEED
#   e.g. ... imagenet 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol maple xd_train "$@"
