#!/usr/bin/env bash
# CoOp: base-to-novel, phase 2: test the base2new_train model on the new classes.
# Config (CFG overrides): vit_b16_ctxv1, vit_b16_ep50_ctxv1 on imagenet (the CoCoOp paper's CoOp baseline).
# usage: DATA=/path/to/datasets bash scripts/coop/base2new_test.sh DATASET SEED
#   e.g. ... imagenet 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol coop base2new_test "$@"
