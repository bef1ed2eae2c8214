#!/usr/bin/env bash
# MuDPT (variant: trailing MuDPT|UMuDPT|UUMuDPT argument or VARIANT=...; default MuDPT): few-shot learning on all classes, SHOTS default 1 2 4 8 16.
# usage: DATA=/path/to/datasets bash scripts/mudpt/few_shot.sh DATASET SEED [SHOTS...]
#   e.g. ... caltech101 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol mudpt few_shot "$@"
