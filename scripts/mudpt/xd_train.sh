#!/usr/bin/env bash
# MuDPT (variant: trailing MuDPT|UMuDPT|UUMuDPT argument or VARIANT=...; default MuDPT): cross-dataset + DG, phase 1: train on all ImageNet classes (16 shots).
# usage: DATA=/path/to/datasets bash scripts/mudpt/xd_train.sh [DATASET] SEED
#   e.g. ... imagenet 1 [UMuDPT]   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol mudpt xd_train "$@"
