"""Pure-PyTorch reference of the hash-grid encoding: the ground truth of the kernels and the last fallback.

Vectorised over points, levels and the 8 cell corners (the layout nerfstudio's torch path uses): one index
computation ``[N, L, 8]``, one gather from the flattened table, trilinear weights ``[N, L, 8]``. Gradients
come from autograd (``index_select``'s backward scatters into the table). It runs on any device and dtype;
float64 inputs are computed in float64 (used by ``gradcheck``), everything else in float32.
"""

from __future__ import annotations

import torch

from simrecon.encoding.config import HASH_PRIMES, HashGridConfig

# Corner c of a cell is offset by the bits of c: x = bit 0, y = bit 1, z = bit 2 (same order as the kernels).
_CORNER_OFFSETS = [[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)]


class _StraightThroughClamp(torch.autograd.Function):
    """Clamp to ``[0, 1]`` whose gradient is the identity.

    The encoding treats a clamped position as the point on the boundary, and its positional gradient is the
    interpolation derivative there (what the kernels compute), not the zero gradient of ``torch.clamp``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def grid_indices(cell: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    """Table rows (within their level) of the 8 corners of each cell.

    Args:
        cell: ``[N, L, 3]`` int64 lower corner of the cell of each point at each level.
        config: the grid.

    Returns:
        ``[N, L, 8]`` int64 row indices in ``[0, T)``.
    """
    device = cell.device
    offsets = torch.tensor(_CORNER_OFFSETS, dtype=torch.int64, device=device)  # [8, 3]
    corner = cell[:, :, None, :] + offsets  # [N, L, 8, 3]
    cx, cy, cz = corner.unbind(-1)  # each [N, L, 8]
    stride = torch.tensor([r + 1 for r in config.resolutions], dtype=torch.int64, device=device)[:, None]  # [L, 1]
    dense_idx = cx + cy * stride + cz * (stride * stride)
    # int64 products keep the low 32 bits of the uint32 products, and T divides 2**32.
    hashed = (cx * HASH_PRIMES[0]) ^ (cy * HASH_PRIMES[1]) ^ (cz * HASH_PRIMES[2])
    hash_idx = hashed & (config.table_size - 1)
    dense = torch.tensor(config.dense_levels, dtype=torch.bool, device=device)[:, None]  # [L, 1]
    return torch.where(dense, dense_idx, hash_idx)


def hash_grid_encode_reference(positions: torch.Tensor, table: torch.Tensor, config: HashGridConfig) -> torch.Tensor:
    """Encode ``positions`` ``[N, 3]`` with ``table`` ``[L, T, F]``; returns ``[N, L * F]`` in ``table.dtype``.

    Positions outside ``[0, 1]`` are clamped; their positional gradient is the interpolation derivative at
    the clamped point. No argument checking here: :func:`simrecon.encoding.hash_grid_encode` does it.
    """
    num_levels, table_size, feats = table.shape
    n = positions.shape[0]
    device = positions.device
    compute_dtype = torch.float64 if torch.float64 in (positions.dtype, table.dtype) else torch.float32

    x = _StraightThroughClamp.apply(positions.to(compute_dtype))  # [N, 3]
    res = torch.tensor(config.resolutions, dtype=compute_dtype, device=device)  # [L]
    scaled = x[:, None, :] * res[:, None]  # [N, L, 3]
    cell = torch.minimum(torch.floor(scaled.detach()), (res - 1)[:, None])  # [N, L, 3], exact integers
    frac = scaled - cell  # [N, L, 3], d frac / d x = res
    idx = grid_indices(cell.to(torch.int64), config)  # [N, L, 8]
    idx = idx + torch.arange(num_levels, device=device, dtype=torch.int64)[:, None] * table_size

    corner_bits = torch.tensor(_CORNER_OFFSETS, dtype=torch.bool, device=device)  # [8, 3]
    w3 = torch.where(corner_bits, frac[:, :, None, :], 1.0 - frac[:, :, None, :])  # [N, L, 8, 3]
    weights = w3[..., 0] * w3[..., 1] * w3[..., 2]  # [N, L, 8]

    rows = table.reshape(num_levels * table_size, feats).index_select(0, idx.reshape(-1))  # [N*L*8, F]
    rows = rows.reshape(n, num_levels, 8, feats).to(compute_dtype)
    out = (rows * weights[..., None]).sum(dim=2)  # [N, L, F]
    return out.reshape(n, num_levels * feats).to(table.dtype)


def hash_grid_encode_many_reference(positions: torch.Tensor, table_index: torch.Tensor, tables: list[torch.Tensor],
                                    config: HashGridConfig) -> torch.Tensor:
    """Point ``n`` encoded with ``tables[table_index[n]]`` (each ``[L, T, F]``): ``[N, L * F]``. The definition:
    the points of each table encoded by :func:`hash_grid_encode_reference` and put back in place."""
    rows = [(table_index == a).nonzero()[:, 0] for a in range(len(tables))]  # points of each table
    out = torch.cat([hash_grid_encode_reference(positions[r], t, config) for r, t in zip(rows, tables)])
    return out[torch.argsort(torch.cat(rows))]  # back in the points' order
