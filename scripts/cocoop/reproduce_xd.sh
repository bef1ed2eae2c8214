#!/usr/bin/env bash
# CoCoOp: evaluate released ImageNet weights (WEIGHTSPATH/seedSEED) on DATASET.
# usage: DATA=/path/to/datasets bash scripts/cocoop/reproduce_xd.sh DATASET SEED WEIGHTSPATH
#   e.g. ... food101 1 /path/to/imagenet   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol cocoop reproduce_xd "$@"
