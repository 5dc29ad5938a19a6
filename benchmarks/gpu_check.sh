#!/usr/bin/env bash
# The CUDA paths the CPU tests cannot reach (autocast, CUDA RNG state in checkpoints,
# teacher cache on the GPU, DDP plumbing with NCCL): see benchmarks/gpu_check.py.
# Run from the repository root on a machine with a GPU; about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 MLFLOW_DISABLE_TELEMETRY=true
exec python -m benchmarks.gpu_check "$@"
