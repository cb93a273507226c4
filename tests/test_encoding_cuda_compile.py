"""The CUDA kernels compile with nvcc (``kernels/check_cuda.sh``) even where torch is CPU-only."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "kernels" / "check_cuda.sh"


def _nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found is None and Path("/usr/local/cuda/bin/nvcc").exists():
        found = "/usr/local/cuda/bin/nvcc"
    return found


@pytest.mark.skipif(_nvcc() is None, reason="nvcc not installed")
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_cuda_sources_compile_with_nvcc():
    result = subprocess.run(
        ["bash", str(SCRIPT), sys.executable],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NVCC": _nvcc() or ""},
    )
    assert result.returncode == 0, f"nvcc failed:\n{result.stdout}\n{result.stderr}"
    assert "ok    hashgrid_cuda.cu" in result.stdout
