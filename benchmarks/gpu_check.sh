#!/usr/bin/env bash
# GPU check on a lent device (see benchmarks/gpu_check.py and docs/kernels.md, "GPU check"):
#   bash benchmarks/gpu_check.sh [options of benchmarks/gpu_check.py]
# Runs benchmarks/gpu_check.py with $PYTHON (default python3: on the device machine, the python that holds CUDA
# torch; the project's .venv does not travel there), the repository on PYTHONPATH (no install needed) and
# unbuffered output. Exit status: the script's (2 without a CUDA device).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
if ! command -v "$py" >/dev/null 2>&1; then
  echo "gpu_check: no python '$py' on PATH (set PYTHON to the python that holds CUDA torch)" >&2
  exit 2
fi
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$py" "$root/benchmarks/gpu_check.py" "$@"
