"""Just-in-time build and loading of the fused kernels (``kernels/`` at the repository root).

Nothing here runs at import: :func:`load_extension` compiles on first use through
``torch.utils.cpp_extension.load`` into a persistent cache directory (``$SIMRECON_CACHE`` or
``~/.cache/simrecon/kernels``), keyed by a hash of the sources, the flags, the torch and ninja versions, so later
processes only load the shared library. A failed build (no compiler, no nvcc, compile error) is logged as one
warning and remembered, and the callers fall back to the next backend.

The only module state is the cache of loaded extension handles (``_HANDLES``) and of build failures.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from simrecon.logs import get_logger

log = get_logger("simrecon.encoding")

#: Sources of each extension, relative to the kernels directory.
SOURCES: dict[str, tuple[str, ...]] = {
    "cpu": ("hashgrid_cpu.cpp",),
    "cuda": ("hashgrid_cuda.cpp", "hashgrid_cuda.cu"),
}
_HEADERS: dict[str, tuple[str, ...]] = {
    "cpu": ("hashgrid_common.h", "hashgrid_cpu_impl.h"),
    "cuda": ("hashgrid_common.h", "hashgrid_cuda.h"),
}

_CPU_CFLAGS = ["-O3", "-fopenmp", "-fno-math-errno"]
_CPU_LDFLAGS = ["-fopenmp"]
_CUDA_CFLAGS = ["-O3"]
_NVCC_FLAGS = ["-O3"]  # no --use_fast_math: flushing denormals would break exact parity

# kind -> loaded module (the one piece of cached global state) and kind -> reason the build failed
_HANDLES: dict[str, ModuleType] = {}
_FAILURES: dict[str, str] = {}


def kernels_dir() -> Path:
    """Directory holding the C++/CUDA sources (``$SIMRECON_KERNELS_DIR`` overrides the repository's)."""
    env = os.environ.get("SIMRECON_KERNELS_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "kernels"


def cache_dir() -> Path:
    """Persistent build cache (``$SIMRECON_CACHE`` or ``~/.cache/simrecon/kernels``)."""
    env = os.environ.get("SIMRECON_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "simrecon" / "kernels"


def _cpu_isa_flags() -> list[str]:
    """AVX2/FMA code generation when this CPU has it (the ISA level is part of the cache key)."""
    if platform.machine().lower() in ("x86_64", "amd64") and torch.backends.cpu.get_cpu_capability() in (
        "AVX2",
        "AVX512",
    ):
        return ["-march=x86-64-v3"]
    return []


def _cflags(kind: str) -> tuple[list[str], list[str]]:
    """(host compiler flags, nvcc or linker flags) of an extension."""
    if kind == "cpu":
        return _CPU_CFLAGS + _cpu_isa_flags(), _CPU_LDFLAGS
    return _CUDA_CFLAGS, _NVCC_FLAGS


def _source_hash(kind: str) -> str:
    digest = hashlib.sha256()
    root = kernels_dir()
    for name in SOURCES[kind] + _HEADERS[kind]:
        path = root / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    cflags, other = _cflags(kind)
    digest.update(" ".join(cflags + other).encode())
    digest.update(torch.__version__.encode())
    digest.update(f"{sys.version_info[:2]}-{platform.machine()}".encode())
    digest.update(_ninja_version().encode())
    return digest.hexdigest()[:16]


def _ninja_version() -> str:
    """The version of the ``ninja`` on PATH that torch will build with. Two ninjas (a system one and a
    virtual environment's) write incompatible build logs into one folder, and each then rebuilds the
    kernel from scratch, so each gets its own build folder."""
    exe = shutil.which("ninja")
    if exe is None:
        return "no-ninja"
    try:
        done = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "ninja-unknown"
    return done.stdout.strip()


def extension_name(kind: str) -> str:
    """Module name of a build: ``simrecon_hashgrid_<kind>_<hash of sources, flags, torch version>``."""
    return f"simrecon_hashgrid_{kind}_{_source_hash(kind)}"


def compiler_available(kind: str) -> bool:
    """Whether the toolchain a build of ``kind`` needs is on this machine (a cheap check, no compile)."""
    if kind == "cpu":
        cxx = os.environ.get("CXX", "c++")
        return shutil.which(cxx) is not None
    if kind == "cuda":
        if not torch.cuda.is_available() or torch.version.cuda is None:
            return False
        from torch.utils.cpp_extension import CUDA_HOME

        return CUDA_HOME is not None
    raise ValueError(f"unknown extension kind {kind!r}")


def load_extension(kind: str, verbose: bool = False) -> ModuleType | None:
    """Build (first time) or load (afterwards) the ``kind`` extension; None when it cannot be built.

    A failure is warned about once per process and cached, so that callers can fall back cheaply.
    """
    if kind in _HANDLES:
        return _HANDLES[kind]
    if kind in _FAILURES:
        return None
    if kind == "cuda" and not (torch.cuda.is_available() and torch.version.cuda is not None):
        _FAILURES[kind] = "torch has no CUDA device (CPU-only build or no GPU)"
        return None
    missing = [name for name in SOURCES[kind] if not (kernels_dir() / name).exists()]
    if missing:
        _fail(kind, f"kernel sources not found in {kernels_dir()}: {missing}")
        return None
    if not compiler_available(kind):
        _fail(kind, "no C++ compiler found" if kind == "cpu" else "CUDA toolkit (nvcc) not found")
        return None

    from torch.utils.cpp_extension import load

    name = extension_name(kind)
    build_dir = cache_dir() / name
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = [str(kernels_dir() / s) for s in SOURCES[kind]]
    log.info("building/loading %s extension %s in %s", kind, name, build_dir)
    try:
        if kind == "cpu":
            module = load(
                name=name,
                sources=sources,
                extra_cflags=_cflags("cpu")[0],
                extra_ldflags=_CPU_LDFLAGS,
                extra_include_paths=[str(kernels_dir())],
                build_directory=str(build_dir),
                verbose=verbose,
            )
        else:
            module = load(
                name=name,
                sources=sources,
                extra_cflags=_CUDA_CFLAGS,
                extra_cuda_cflags=_NVCC_FLAGS,
                extra_include_paths=[str(kernels_dir())],
                build_directory=str(build_dir),
                verbose=verbose,
            )
    except Exception as exc:  # noqa: BLE001 - any build failure (compiler, toolchain, linker) means fall back
        message = str(exc).strip()
        _fail(kind, f"{type(exc).__name__}: {message.splitlines()[-1] if message else ''}")
        return None
    _HANDLES[kind] = module
    return module


def _fail(kind: str, reason: str) -> None:
    _FAILURES[kind] = reason
    warnings.warn(
        f"simrecon: could not build the {kind} hash-grid kernel ({reason}); falling back to another backend",
        RuntimeWarning,
        stacklevel=3,
    )
    log.warning("could not build the %s hash-grid kernel: %s", kind, reason)


def build_failure(kind: str) -> str | None:
    """Why the ``kind`` extension could not be built in this process, if it was tried and failed."""
    return _FAILURES.get(kind)


def tcnn_module() -> Any | None:
    """``tinycudann`` when importable and a CUDA device is present, else None (never raises)."""
    if not torch.cuda.is_available():
        return None
    try:
        import tinycudann  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - a broken tinycudann install must not break import of simrecon
        return None
    return tinycudann


def build_kernels(verbose: bool = False) -> dict[str, dict[str, Any]]:
    """Build (or load from the cache) every kernel this machine can build and report per backend.

    Returns:
        ``{backend: {"available": bool, "built": bool, "detail": str}}`` for ``cpu``, ``cuda``, ``tcnn``
        and ``torch``; ``built`` says whether a compiled extension is loaded, ``detail`` gives its module name
        and cache directory or the reason it is missing.
    """
    report: dict[str, dict[str, Any]] = {}
    for kind in ("cpu", "cuda"):
        module = load_extension(kind, verbose=verbose)
        if module is not None:
            detail = f"{module.__name__} in {cache_dir() / module.__name__}"
        else:
            detail = build_failure(kind) or "not built"
        report[kind] = {"available": module is not None, "built": module is not None, "detail": detail}
    tcnn = tcnn_module()
    report["tcnn"] = {
        "available": tcnn is not None,
        "built": False,
        "detail": "tinycudann importable" if tcnn is not None else "tinycudann not importable or no CUDA device",
    }
    report["torch"] = {"available": True, "built": False, "detail": "pure-PyTorch reference (always available)"}
    return report
