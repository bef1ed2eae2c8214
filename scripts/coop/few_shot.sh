#!/usr/bin/env bash
# CoOp: few-shot learning on all classes, SHOTS default 1 2 4 8 16.
# Config per shots (COOP.md schedule; CFG overrides): 1 shot vit_b16_ep50, 2-4 vit_b16_ep100, 8-16 vit_b16;
# imagenet: vit_b16_ep50.
# usage: DATA=/path/to/datasets bash scripts/coop/few_shot.sh DATASET SEED [SHOTS...]
#   e.g. ... caltech101 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol coop few_shot "$@"
