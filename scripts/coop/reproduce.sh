#!/usr/bin/env bash
# CoOp: test released base-to-novel weights (WEIGHTSPATH/base/seedSEED) on base + new classes.
# Config (CFG overrides): vit_b16_ctxv1, vit_b16_ep50_ctxv1 on imagenet (the CoCoOp paper's CoOp baseline).
# usage: DATA=/path/to/datasets bash scripts/coop/reproduce.sh DATASET SEED WEIGHTSPATH
#   e.g. ... imagenet 1 /path/to/imagenet   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol coop reproduce "$@"
