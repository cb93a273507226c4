"""Functional hash-grid encoding: argument checks, backend selection and the autograd wrapper of the kernels.

Backends (see ``docs/kernels.md``):

* ``cuda``  - our fused CUDA kernels (``kernels/hashgrid_cuda.cu``), CUDA tensors, fp32 or fp16 tables;
* ``cpu``   - our fused C++/OpenMP kernels (``kernels/hashgrid_cpu.cpp``), CPU tensors, fp32 (other table
  dtypes are cast to fp32 and the result cast back);
* ``torch`` - the pure-PyTorch reference (:mod:`simrecon.encoding.reference`), any device, the last fallback;
* ``tcnn``  - tiny-cuda-nn, only through :class:`~simrecon.encoding.HashGridEncoding` (it owns its parameters
  and uses its own vertex convention, so it takes no ``[L, T, F]`` table and is never chosen by ``auto``);
* ``auto``  - ``cuda`` for CUDA tensors, ``cpu`` for CPU tensors, when they build; else ``torch``.

``backend="auto"`` defers to the environment variable ``SIMRECON_ENCODING_BACKEND`` when it is set; an explicit
backend argument wins over the variable. An explicitly requested backend that cannot run raises
:class:`BackendUnavailableError`; ``auto`` falls back (one warning when a compiler is missing).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from simrecon.encoding import _build
from simrecon.encoding.config import (
    KERNEL_FEATURE_COUNTS,
    KERNEL_MAX_LEVELS,
    HashGridConfig,
)
from simrecon.encoding.reference import hash_grid_encode_many_reference, hash_grid_encode_reference
from simrecon.logs import get_logger

log = get_logger("simrecon.encoding")

#: Accepted backend names.
BACKENDS: tuple[str, ...] = ("auto", "cuda", "cpu", "torch", "tcnn")
#: Environment variable consulted when the backend argument is ``"auto"``.
ENV_VAR = "SIMRECON_ENCODING_BACKEND"

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run here (no CUDA, no compiler, wrong device, ...)."""


def _shape(t: torch.Tensor) -> str:
    return str(list(t.shape))


def requested_backend(backend: str) -> str:
    """Validate ``backend`` and apply ``$SIMRECON_ENCODING_BACKEND`` when it is ``"auto"``."""
    if not isinstance(backend, str) or backend.strip().lower() not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    backend = backend.strip().lower()
    if backend == "auto":
        env = os.environ.get(ENV_VAR, "").strip().lower()
        if env:
            if env not in BACKENDS:
                raise ValueError(f"${ENV_VAR} must be one of {BACKENDS}, got {env!r}")
            return env
    return backend


def kernel_supports(config: HashGridConfig) -> str | None:
    """None when the fused kernels handle ``config``, else why not."""
    if config.features_per_level not in KERNEL_FEATURE_COUNTS:
        return f"features_per_level must be one of {KERNEL_FEATURE_COUNTS} for the fused kernels"
    if config.num_levels > KERNEL_MAX_LEVELS:
        return f"the fused kernels take at most {KERNEL_MAX_LEVELS} levels"
    return None


@functools.cache
def _log_auto_choice(device_type: str, choice: str, reason: str) -> None:
    # lru_cache makes this log once per (device, choice) and process
    log.info("hash-grid encoding backend for %s tensors: %s (auto%s)", device_type, choice, reason)


def resolve_backend(backend: str, device: torch.device | str, config: HashGridConfig) -> str:
    """The backend that runs for tensors on ``device``: ``"cuda"``, ``"cpu"``, ``"torch"`` or ``"tcnn"``.

    May build a kernel (first use only). Raises :class:`BackendUnavailableError` when an explicitly requested
    backend cannot run, ``ValueError`` for an unknown name.
    """
    device = torch.device(device)
    name = requested_backend(backend)
    unsupported = kernel_supports(config)
    if name == "auto":
        kind = device.type if device.type in ("cpu", "cuda") else None
        if kind is None:
            choice, reason = "torch", f": no fused kernel for {device.type}"
        elif unsupported is not None:
            choice, reason = "torch", f": {unsupported}"
        elif _build.load_extension(kind) is not None:
            choice, reason = kind, ""
        else:
            choice, reason = "torch", f": {kind} kernel unavailable ({_build.build_failure(kind)})"
        _log_auto_choice(device.type, choice, reason)
        return choice
    if name == "torch":
        return name
    if name == "tcnn":
        if _build.tcnn_module() is None:
            raise BackendUnavailableError(
                "backend 'tcnn' requested but tinycudann is not importable or there is no CUDA device"
            )
        return name
    if name == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            f"backend 'cuda' requested but torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False); use backend='auto', 'cpu' or 'torch'"
        )
    if device.type != name:
        raise BackendUnavailableError(f"backend {name!r} needs {name} tensors, got tensors on {device}")
    if unsupported is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run this config: {unsupported}")
    if _build.load_extension(name) is None:
        raise BackendUnavailableError(f"backend {name!r} requested but its kernel is unavailable: "
                                      f"{_build.build_failure(name)}")
    return name


def check_inputs(positions: torch.Tensor, table: torch.Tensor, config: HashGridConfig) -> None:
    """Raise ``ValueError``/``TypeError`` for bad shapes, dtypes, devices or NaN positions."""
    if not isinstance(positions, torch.Tensor) or not isinstance(table, torch.Tensor):
        raise TypeError("positions and table must be torch.Tensor")
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must be [N, 3], got {_shape(positions)}")
    if tuple(table.shape) != config.table_shape:
        raise ValueError(f"table must be [L, T, F] = {list(config.table_shape)} for this config, got {_shape(table)}")
    if positions.dtype not in _FLOAT_DTYPES or table.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"positions and table must be floating point, got {positions.dtype} and {table.dtype}")
    if positions.device != table.device:
        raise ValueError(f"positions ({positions.device}) and table ({table.device}) must be on the same device")
    if positions.numel() > 0:
        nan_rows = torch.isnan(positions).any(dim=1)
        if bool(nan_rows.any()):
            raise ValueError(
                f"positions contain NaN ({int(nan_rows.sum())} of {positions.shape[0]} points, first at index "
                f"{int(nan_rows.nonzero()[0, 0])}); NaN positions cannot be encoded"
            )


class _HashGridKernel(torch.autograd.Function):
    """Autograd wrapper of the fused kernels: positions [N, 3] f32, table [L, T, F] -> [N, L * F]."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        positions: torch.Tensor,  # [N, 3] float32 contiguous
        table: torch.Tensor,  # [L, T, F] float32 (cpu) or float32/float16 (cuda), contiguous
        kind: str,
        resolutions: list[int],
        dense: list[int],
    ) -> torch.Tensor:
        ext = _build.load_extension(kind)
        assert ext is not None  # resolve_backend checked it
        ctx.kind, ctx.resolutions, ctx.dense = kind, resolutions, dense
        ctx.save_for_backward(positions, table)
        if kind == "cuda":
            with torch.cuda.device(positions.device):
                stream = torch.cuda.current_stream(positions.device).cuda_stream
                return ext.forward(positions, table, resolutions, dense, stream)
        return ext.forward(positions, table, resolutions, dense)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor):  # type: ignore[override]
        positions, table = ctx.saved_tensors
        need_positions, need_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        ext = _build.load_extension(ctx.kind)
        grad_out = grad_out.to(table.dtype).contiguous()  # [N, L * F]
        if ctx.kind == "cuda":
            with torch.cuda.device(positions.device):
                stream = torch.cuda.current_stream(positions.device).cuda_stream
                grad_table, grad_positions = ext.backward(
                    grad_out, positions, table, ctx.resolutions, ctx.dense, need_table, need_positions, stream
                )
        else:
            grad_table, grad_positions = ext.backward(
                grad_out, positions, table, ctx.resolutions, ctx.dense, need_table, need_positions
            )
        return (
            grad_positions if need_positions else None,
            grad_table if need_table else None,
            None,
            None,
            None,
        )


def _run_kernel(kind: str, positions: torch.Tensor, table: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    native = (torch.float32,) if kind == "cpu" else (torch.float32, torch.float16)
    tab = table if table.dtype in native else table.float()  # differentiable casts, grads come back cast
    out = _HashGridKernel.apply(
        positions.float().contiguous(),
        tab.contiguous(),
        kind,
        list(config.resolutions),
        [int(d) for d in config.dense_levels],
    )
    return out if out.dtype == table.dtype else out.to(table.dtype)


def hash_grid_encode(
    positions: torch.Tensor,
    table: torch.Tensor,
    config: HashGridConfig,
    backend: str = "auto",
) -> torch.Tensor:
    """Multiresolution hash-grid encoding of ``positions``.

    Args:
        positions: ``[N, 3]`` points in ``[0, 1]^3``. Coordinates outside are clamped to ``[0, 1]``; their
            positional gradient is still the interpolation derivative at the clamped (boundary) point. NaN is
            refused with ``ValueError``. The fused kernels compute in float32.
        table: ``[L, T, F]`` feature table (``config.table_shape``).
        config: the grid hyper-parameters.
        backend: ``"auto"``, ``"cuda"``, ``"cpu"`` or ``"torch"`` (``"tcnn"`` only via the module).

    Returns:
        ``[N, L * F]`` features in ``table.dtype``, level-major (level ``l`` in columns ``l*F:(l+1)*F``).
        Differentiable with respect to ``table`` and ``positions``.
    """
    check_inputs(positions, table, config)
    name = resolve_backend(backend, positions.device, config)
    if name == "tcnn":
        raise ValueError(
            "backend 'tcnn' owns its parameters and takes no [L, T, F] table; use HashGridEncoding(backend='tcnn')"
        )
    if name == "torch":
        return hash_grid_encode_reference(positions, table, config)
    return _run_kernel(name, positions, table, config)


class _HashGridManyKernel(torch.autograd.Function):
    """Autograd wrapper of the many-table kernels: positions [N, 3] f32, table_index [N] int32, tables (each
    [L, T, F], one dtype) -> [N, L * F]."""

    @staticmethod
    def forward(ctx: Any, positions: torch.Tensor, table_index: torch.Tensor, kind: str,  # type: ignore[override]
                resolutions: list[int], dense: list[int], *tables: torch.Tensor) -> torch.Tensor:
        ext = _build.load_extension(kind)
        assert ext is not None  # resolve_backend checked it
        ctx.kind, ctx.resolutions, ctx.dense = kind, resolutions, dense
        ctx.save_for_backward(positions, table_index, *tables)
        args = (positions, table_index, list(tables), resolutions, dense)
        if kind == "cuda":
            with torch.cuda.device(positions.device):
                return ext.forward_many(*args, torch.cuda.current_stream(positions.device).cuda_stream)
        return ext.forward_many(*args)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor):  # type: ignore[override]
        positions, table_index, *tables = ctx.saved_tensors
        need_positions, need_tables = ctx.needs_input_grad[0], any(ctx.needs_input_grad[5:])
        ext = _build.load_extension(ctx.kind)
        args = (grad_out.to(tables[0].dtype).contiguous(), positions, table_index, tables, ctx.resolutions, ctx.dense,
                need_tables, need_positions)
        if ctx.kind == "cuda":
            with torch.cuda.device(positions.device):
                grad_tables, grad_positions = ext.backward_many(
                    *args, torch.cuda.current_stream(positions.device).cuda_stream)
        else:
            grad_tables, grad_positions = ext.backward_many(*args)
        grads = grad_tables if need_tables else [None] * len(tables)
        return (grad_positions if need_positions else None, None, None, None, None, *grads)


def hash_grid_encode_many(
    positions: torch.Tensor,
    table_index: torch.Tensor,
    tables: list[torch.Tensor],
    config: HashGridConfig,
    backend: str = "auto",
) -> torch.Tensor:
    """Hash-grid encoding of each point with its own table: point ``n`` uses ``tables[table_index[n]]``.

    One call for many small fields of one config (a field per tracked actor), instead of one call per field,
    whose fixed cost dominates when each field sees a few hundred points.

    Args:
        positions: ``[N, 3]`` points in ``[0, 1]^3`` (clamped as in :func:`hash_grid_encode`).
        table_index: ``[N]`` integer index into ``tables``.
        tables: ``A >= 1`` tables, each ``config.table_shape``, on the positions' device, one dtype.
        config: the grid hyper-parameters shared by all tables.
        backend: as :func:`hash_grid_encode`.

    Returns:
        ``[N, L * F]`` features, differentiable with respect to ``positions`` and every table.
    """
    if not isinstance(tables, (list, tuple)) or not tables:
        raise ValueError("tables must be a non-empty list of [L, T, F] tensors")
    check_inputs(positions, tables[0], config)  # positions (NaN scan included) once, then each table's shape
    for table in tables[1:]:
        check_inputs(positions[:0], table, config)
    if len({t.dtype for t in tables}) != 1:
        raise TypeError(f"tables must share one dtype, got {sorted(str(t.dtype) for t in tables)}")
    if not isinstance(table_index, torch.Tensor) or table_index.dim() != 1 or table_index.shape[0] != positions.shape[0]:
        shape = _shape(table_index) if isinstance(table_index, torch.Tensor) else type(table_index).__name__
        raise ValueError(f"table_index must be [N] = [{positions.shape[0]}], got {shape}")
    if table_index.dtype.is_floating_point or table_index.dtype == torch.bool:
        raise TypeError(f"table_index must be an integer tensor, got {table_index.dtype}")
    if table_index.numel() and (int(table_index.min()) < 0 or int(table_index.max()) >= len(tables)):
        raise ValueError(f"table_index must be in [0, {len(tables)}), got values in "
                         f"[{int(table_index.min())}, {int(table_index.max())}]")
    name = resolve_backend(backend, positions.device, config)
    if name == "tcnn":
        raise ValueError("backend 'tcnn' owns its parameters and takes no [L, T, F] table")
    if name == "torch":
        return hash_grid_encode_many_reference(positions, table_index, list(tables), config)
    dtype = tables[0].dtype
    native = (torch.float32,) if name == "cpu" else (torch.float32, torch.float16)
    tabs = [t if t.dtype in native else t.float() for t in tables]  # differentiable casts
    out = _HashGridManyKernel.apply(positions.float().contiguous(), table_index.to(torch.int32).contiguous(), name,
                                    list(config.resolutions), [int(d) for d in config.dense_levels],
                                    *[t.contiguous() for t in tabs])
    return out if out.dtype == dtype else out.to(dtype)
