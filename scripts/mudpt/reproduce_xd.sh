#!/usr/bin/env bash
# MuDPT (variant: trailing MuDPT|UMuDPT|UUMuDPT argument or VARIANT=...; default MuDPT): evaluate released ImageNet weights (WEIGHTSPATH/seedSEED) on DATASET.
# usage: DATA=/path/to/datasets bash scripts/mudpt/reproduce_xd.sh DATASET SEED WEIGHTSPATH
#   e.g. ... food101 1 /path/to/imagenet   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol mudpt reproduce_xd "$@"
