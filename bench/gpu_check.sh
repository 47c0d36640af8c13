#!/usr/bin/env bash
# The embedded study's heaviest cells on one GPU in bf16: per-stage seconds and peak memory, as JSON.
#   bench/gpu_check.sh [results/gpu_check.json]
# Exits 2, saying why, when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
OUTPUT="${1:-results/gpu_check.json}"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU found (nvidia-smi missing or failing); this check needs one GPU" >&2
    exit 2
fi
nvidia-smi -L

make install  # creates .venv and installs e2u unless done (or a virtual environment is active)
PYTHON="${VIRTUAL_ENV:-${CONDA_PREFIX:-.venv}}/bin/python"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: nvidia-smi sees a GPU but this torch cannot use it ($("$PYTHON" -c 'import torch; print(torch.__version__)'));" \
         "install a CUDA build of torch into the environment" >&2
    exit 2
fi
exec "$PYTHON" bench/gpu_check.py "$OUTPUT"
