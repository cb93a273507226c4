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


def run_grouped_mlp(nets: list[nn.Sequential], x: torch.Tensor, counts: list[int], low_precision: bool) -> torch.Tensor:
    """Apply ``nets[i]`` to the ``counts[i]`` rows of ``x`` [M, D] that follow those of ``nets[i - 1]``: one batched
    matmul per layer for all the nets (same architecture, made by :func:`mlp`) instead of a call per net. Each
    group is cut into chunks of C rows (C ~ the mean group size), the last one padded: padding to the largest
    group instead made the matmuls 5x too big on a real log (one car close by, sixty far away). Returns
    [M, out] float32, equal to running each net on its rows (up to summation order)."""
    dev = x.device
    cnt = torch.tensor(counts, device=dev)  # [G]
    c = max(16, 1 << (max(1, x.shape[0] // max(1, len(nets))) - 1).bit_length())  # rows per chunk, a power of 2
    chunks = (cnt + c - 1) // c  # [G] chunks of each group
    first_chunk = chunks.cumsum(0) - chunks  # [G]
    group = torch.repeat_interleave(torch.arange(len(nets), device=dev), cnt)  # [M] group of each row
    within = torch.arange(x.shape[0], device=dev) - (cnt.cumsum(0) - cnt)[group]  # [M] row index in its group
    slot = (first_chunk[group] + within // c) * c + within % c  # [M] row in the padded [n_chunks * C]
    chunk_group = torch.repeat_interleave(torch.arange(len(nets), device=dev), chunks)  # [n_chunks]
    n_chunks = int(chunk_group.shape[0])
    h = x.new_zeros(n_chunks * c, x.shape[1]).index_copy(0, slot, x).view(n_chunks, c, -1)  # [n_chunks, C, D]
    dtype = torch.bfloat16 if dev.type == "cpu" else torch.float16
    with torch.autocast(device_type=dev.type, dtype=dtype, enabled=low_precision):
        for layers in zip(*nets):
            if isinstance(layers[0], nn.Linear):
                w = torch.stack([m.weight for m in layers]).transpose(1, 2)[chunk_group]  # [n_chunks, D, out]
                b = torch.stack([m.bias for m in layers])[chunk_group, None]  # [n_chunks, 1, out]
                h = torch.baddbmm(b, h, w)
            else:
                h = torch.relu(h)
    return h.float().reshape(n_chunks * c, -1)[slot]
