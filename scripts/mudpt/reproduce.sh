#!/usr/bin/env bash
# MuDPT (variant: trailing MuDPT|UMuDPT|UUMuDPT argument or VARIANT=...; default MuDPT): test released base-to-novel weights (WEIGHTSPATH/base/seedSEED) on base + new classes.
# usage: DATA=/path/to/datasets bash scripts/mudpt/reproduce.sh DATASET SEED WEIGHTSPATH
#   e.g. ... imagenet 1 [UMuDPT] /path/to/imagenet   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol mudpt reproduce "$@"
