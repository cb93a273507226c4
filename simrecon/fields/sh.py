"""Real spherical-harmonics encoding of unit directions (degree 4: 16 features), as in Instant-NGP."""

from __future__ import annotations

import torch


def sh_encode(d: torch.Tensor, degree: int = 4) -> torch.Tensor:
    """Unit directions [N, 3] -> SH basis values [N, degree**2] (bands 0 to degree - 1; degree 1 to 4)."""
    if not 1 <= degree <= 4:
        raise ValueError(f"sh_encode: degree must be 1 to 4, got {degree}")
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, yz, xz = x * y, y * z, x * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x,
        1.0925484305920792 * xy, -1.0925484305920792 * yz, 0.94617469575755997 * zz - 0.31539156525251999,
        -1.0925484305920792 * xz, 0.54627421529603959 * (xx - yy),
        0.59004358992664352 * y * (-3.0 * xx + yy), 2.8906114426405538 * xy * z,
        0.45704579946446572 * y * (1.0 - 5.0 * zz), 0.3731763325901154 * z * (5.0 * zz - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * zz), 1.4453057213202769 * z * (xx - yy),
        0.59004358992664352 * x * (-xx + 3.0 * yy),
    ][:degree * degree], dim=-1)


SH_DIM = 16
