#!/usr/bin/env bash
# CoOp: base-to-novel, phase 1: train on the base classes (16 shots), test on them.
# Config (CFG overrides): vit_b16_ctxv1, vit_b16_ep50_ctxv1 on imagenet (the CoCoOp paper's CoOp baseline).
# usage: DATA=/path/to/datasets bash scripts/coop/base2new_train.sh DATASET SEED
#   e.g. ... imagenet 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol coop base2new_train "$@"
