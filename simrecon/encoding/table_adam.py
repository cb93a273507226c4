"""Adam for hash tables that leaves untouched entries alone (tiny-cuda-nn's rule for encoding parameters).

A training step's points touch a minority of a hash table's rows (38-40 % of the background table's on the
synthetic street). Torch's Adam updates every entry: one that got a gradient once keeps moving for ~10 more
steps on its decaying momentum (the first moment decays by 0.9 a step, the root of the second by only 0.995),
so a single touch moves it about ten learning rates. Here an entry whose gradient is exactly zero keeps its
value, its moments and its own step count, and the bias correction follows that count, as in Instant-NGP.

:func:`table_adam_step` runs the fused C++ (CPU) or CUDA kernel (``kernels/table_adam_common.h``) when it builds,
else :func:`table_adam_step_reference`, the pure-PyTorch rule with the same signature.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from simrecon.encoding import _build
from simrecon.encoding.functional import BackendUnavailableError, requested_backend

#: The bias correction is tabulated up to the count where beta^t < this for both betas (then it is 1).
_CORRECTION_FLOOR = 1e-7
_MAX_TABLE = 1 << 22


def bias_correction(beta1: float, beta2: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``corr[t] = sqrt(1 - beta2^t) / (1 - beta1^t)`` for t in [0, K] (float32 [K + 1]; ``corr[0]`` is unused),
    where K is the first count at which both betas' powers fall below 1e-7: from there the correction is 1 to
    float precision, so per-entry counts saturate at K."""
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        raise ValueError(f"betas must be in [0, 1), got ({beta1}, {beta2})")
    worst = max(beta1, beta2)
    k = 1 if worst == 0.0 else min(_MAX_TABLE, max(1, math.ceil(math.log(_CORRECTION_FLOOR) / math.log(worst))))
    t = np.arange(k + 1, dtype=np.float64)
    t[0] = 1.0
    corr = np.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
    return torch.from_numpy(corr.astype(np.float32)).to(device)


def _check(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
           steps: torch.Tensor, corr: torch.Tensor) -> None:
    for name, t in (("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq), ("steps", steps)):
        if t.shape != param.shape:
            raise ValueError(f"table_adam: {name} must have param's shape {list(param.shape)}, got {list(t.shape)}")
        if t.device != param.device:
            raise ValueError(f"table_adam: {name} is on {t.device}, param on {param.device}")
    for name, t in (("param", param), ("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if t.dtype != torch.float32:
            raise TypeError(f"table_adam: {name} must be float32, got {t.dtype}")
    if steps.dtype != torch.int32:
        raise TypeError(f"table_adam: steps must be int32, got {steps.dtype}")
    if corr.dim() != 1 or corr.shape[0] < 2 or corr.dtype != torch.float32:
        raise ValueError(f"table_adam: corr must be a float32 vector of >= 2 entries, got {corr.dtype} "
                         f"{list(corr.shape)}")


def _f32(x: float) -> float:
    """``x`` rounded to float32: the kernels take their scalars as float and compute in float."""
    return float(np.float32(x))


def table_adam_step_reference(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor,
                              exp_avg_sq: torch.Tensor, steps: torch.Tensor, corr: torch.Tensor, lr: float,
                              beta1: float, beta2: float, eps: float) -> None:
    """The rule in plain PyTorch, in place; every tensor has param's shape (float32; ``steps`` int32) and ``corr``
    is :func:`bias_correction`'s table. For each entry with a non-zero gradient g:
    m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; t = min(t + 1, K); p -= lr corr[t] m / (sqrt(v) + eps)."""
    _check(param, grad, exp_avg, exp_avg_sq, steps, corr)
    b1, b2 = _f32(beta1), _f32(beta2)
    c1, c2 = _f32(np.float32(1) - np.float32(b1)), _f32(np.float32(1) - np.float32(b2))  # as the kernels round
    touched = grad != 0
    m = torch.where(touched, b1 * exp_avg + c1 * grad, exp_avg)
    v = torch.where(touched, b2 * exp_avg_sq + c2 * (grad * grad), exp_avg_sq)
    t = torch.where(touched, (steps + 1).clamp(max=corr.shape[0] - 1), steps)
    step = (_f32(lr) * corr.to(param.device)[t.long()]) * m / (v.sqrt() + _f32(eps))
    exp_avg.copy_(m)
    exp_avg_sq.copy_(v)
    steps.copy_(t)
    param.copy_(torch.where(touched, param - step, param))


def _resolve(backend: str, device: torch.device) -> str:
    """``cpu``/``cuda`` (the fused kernel of that device) or ``torch``; ``tcnn`` has no table Adam, so it means
    ``auto`` here. Explicit kernels that cannot run raise :class:`BackendUnavailableError`."""
    name = requested_backend(backend)
    if name in ("auto", "tcnn"):
        kind = device.type
        return kind if kind in ("cpu", "cuda") and _build.load_extension(kind) is not None else "torch"
    if name == "torch":
        return name
    if device.type != name:
        raise BackendUnavailableError(f"table_adam: backend {name!r} needs {name} tensors, got {device}")
    if _build.load_extension(name) is None:
        raise BackendUnavailableError(f"table_adam: backend {name!r} is unavailable: {_build.build_failure(name)}")
    return name


@torch.no_grad()
def table_adam_step(param: torch.Tensor, grad: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor,
                    steps: torch.Tensor, corr: torch.Tensor, lr: float, beta1: float, beta2: float, eps: float,
                    backend: str = "auto") -> None:
    """One Adam step over a hash table, in place, skipping the entries whose gradient is zero (module docstring).

    Args:
        param: the table (any shape, float32, contiguous); grad: its gradient; exp_avg, exp_avg_sq: the moments
            (float32); steps: each entry's update count (int32, saturating at ``len(corr) - 1``), all of param's
            shape and device.
        corr: :func:`bias_correction` ``(beta1, beta2)`` on param's device.
        backend: ``auto`` (the fused kernel of the tensors' device when it builds, else ``torch``), ``cpu``,
            ``cuda`` or ``torch``.
    """
    _check(param, grad, exp_avg, exp_avg_sq, steps, corr)
    name = _resolve(backend, param.device)
    tensors = (param, grad, exp_avg, exp_avg_sq, steps)
    if name == "torch" or not all(t.is_contiguous() for t in tensors):
        table_adam_step_reference(param, grad, exp_avg, exp_avg_sq, steps, corr, lr, beta1, beta2, eps)
        return
    ext = _build.load_extension(name)
    corr = corr.to(param.device).contiguous()
    if name == "cuda":
        with torch.cuda.device(param.device):
            ext.table_adam_step(*tensors, corr, lr, beta1, beta2, eps,
                                torch.cuda.current_stream(param.device).cuda_stream)
    else:
        ext.table_adam_step(*tensors, corr, lr, beta1, beta2, eps)
