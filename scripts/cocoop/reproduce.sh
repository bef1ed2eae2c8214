#!/usr/bin/env bash
# CoCoOp: test released base-to-novel weights (WEIGHTSPATH/base/seedSEED) on base + new classes.
# usage: DATA=/path/to/datasets bash scripts/cocoop/reproduce.sh DATASET SEED WEIGHTSPATH
#   e.g. ... imagenet 1 /path/to/imagenet   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol cocoop reproduce "$@"
