#!/usr/bin/env bash
# MuDPT (variant: trailing MuDPT|UMuDPT|UUMuDPT argument or VARIANT=...; default MuDPT): base-to-novel, phase 2: test the base2new_train model on the new classes.
# usage: DATA=/path/to/datasets bash scripts/mudpt/base2new_test.sh DATASET SEED
#   e.g. ... imagenet 1 [UMuDPT]   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol mudpt base2new_test "$@"
