#!/usr/bin/env bash
# Compile-check every CUDA source in kernels/ with nvcc (-c only, nothing is linked or run), using torch's
# include directories, so that the CUDA kernels are known to compile even on a machine whose torch is CPU-only;
# then syntax-check the CUDA op's torch binding (hashgrid_cuda.cpp, no CUDA header) with the host C++ compiler,
# which a CPU-only torch never builds.
# Usage: kernels/check_cuda.sh [python]   (python defaults to $PYTHON, then .venv/bin/python, then python3)
# Exits non-zero when nvcc is missing or a file fails to compile.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
py="${1:-${PYTHON:-}}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py="python3"; fi
fi
nvcc_bin="${NVCC:-$(command -v nvcc || true)}"
if [[ -z "$nvcc_bin" && -x /usr/local/cuda/bin/nvcc ]]; then nvcc_bin=/usr/local/cuda/bin/nvcc; fi
if [[ -z "$nvcc_bin" ]]; then
  echo "check_cuda.sh: nvcc not found" >&2
  exit 2
fi

includes=()
while IFS= read -r dir; do
  [[ -n "$dir" ]] && includes+=("-I$dir")
done < <("$py" -c "from torch.utils.cpp_extension import include_paths; print('\n'.join(include_paths()))")

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0
shopt -s nullglob
for src in "$here"/*.cu; do
  obj="$tmp/$(basename "$src" .cu).o"
  if "$nvcc_bin" -std=c++17 -O3 -c "$src" -o "$obj" -I"$here" "${includes[@]}"; then
    echo "ok    $(basename "$src")"
  else
    echo "FAIL  $(basename "$src")" >&2
    status=1
  fi
done
pyinc="$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")"
cxx="${CXX:-c++}"
for src in "$here"/hashgrid_cuda.cpp; do
  if "$cxx" -std=c++17 -fsyntax-only -w -DTORCH_EXTENSION_NAME=check "$src" -I"$here" "${includes[@]}" -I"$pyinc"; then
    echo "ok    $(basename "$src")"
  else
    echo "FAIL  $(basename "$src")" >&2
    status=1
  fi
done
exit "$status"
