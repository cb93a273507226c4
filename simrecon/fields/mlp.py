"""Small MLPs, optionally run in bfloat16 on CPU (several times faster there than float32)."""

from __future__ import annotations

import torch
from torch import nn


def mlp(in_dim: int, hidden: int, layers: int, out_dim: int) -> nn.Sequential:
    """``layers`` hidden ReLU layers of width ``hidden``; no output activation."""
    mods: list[nn.Module] = []
    d = in_dim
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU(inplace=True)]
        d = hidden
    mods.append(nn.Linear(d, out_dim))
    return nn.Sequential(*mods)


def run_mlp(net: nn.Module, x: torch.Tensor, low_precision: bool) -> torch.Tensor:
    """Apply ``net``; with ``low_precision`` under bf16 autocast (CPU) or fp16 (CUDA); result float32."""
    if not low_precision:
        return net(x)
    dtype = torch.bfloat16 if x.device.type == "cpu" else torch.float16
    with torch.autocast(device_type=x.device.type, dtype=dtype):
        return net(x).float()


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    """exp with the input clamped so densities cannot overflow (gradient of exp inside the range)."""
    return torch.exp(x.clamp(max=15.0))
