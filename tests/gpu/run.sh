#!/usr/bin/env bash
# The GPU checks in one go (README, "GPU checks"): the CUDA tests, then the full benchmark on the GPU.
# Usage: bash tests/gpu/run.sh [folder for the reports, default gpu_reports]
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-gpu_reports}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
python -m pytest -q tests/gpu 2>&1 | tee "$out/gpu_tests.txt"
python tools/benchmark.py --device cuda --out "$out/benchmark_cuda.json" 2>&1 | tee "$out/benchmark_cuda.txt"
python tools/benchmark.py --video 2>&1 | tee "$out/benchmark_video.txt"  # ActionCLIP, on the GPU when there is one
