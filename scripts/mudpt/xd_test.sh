#!/usr/bin/env bash
# MuDPT (variant: trailing MuDPT|UMuDPT|UUMuDPT argument or VARIANT=...; default MuDPT): cross-dataset + DG: test the ImageNet model on DATASET.
# usage: DATA=/path/to/datasets bash scripts/mudpt/xd_test.sh DATASET SEED
#   e.g. ... imagenet_sketch 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol mudpt xd_test "$@"
