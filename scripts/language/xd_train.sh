#!/usr/bin/env bash
# Language prompting (IVLP): cross-dataset + DG, phase 1: train on all ImageNet classes (16 shots).
# usage: DATA=/path/to/datasets bash scripts/language/xd_train.sh [DATASET] SEED
#   e.g. ... imagenet 1   (protocol, outputs and environment: scripts/_protocols.sh)
source "$(dirname "${BASH_SOURCE[0]}")/../_protocols.sh"
run_protocol language xd_train "$@"
