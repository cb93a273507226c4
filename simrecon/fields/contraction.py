"""World -> hash-grid coordinates: an anisotropic box around the cameras, contracted beyond it.

Inside the box, coordinates are linear; outside, the L-infinity contraction of mip-NeRF 360 maps
all of space into [-2, 2]^3, so far buildings and hills still get a (coarser) place in the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class SceneBox:
    """Centre [3] and half extents [3] of the linear region, in world units."""

    center: np.ndarray
    half: np.ndarray

    @classmethod
    def around(cls, points: np.ndarray, margin: np.ndarray | float, min_half: float = 1e-3) -> "SceneBox":
        """The box around ``points`` [N, 3] grown by ``margin`` (scalar or per axis)."""
        lo, hi = points.min(0), points.max(0)
        center = (lo + hi) / 2
        half = np.maximum((hi - lo) / 2 + margin, min_half)
        return cls(center.astype(np.float64), half.astype(np.float64))

    def to_json(self) -> dict:
        return {"center": self.center.tolist(), "half": self.half.tolist()}

    @classmethod
    def from_json(cls, data: dict) -> "SceneBox":
        return cls(np.asarray(data["center"], dtype=np.float64), np.asarray(data["half"], dtype=np.float64))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> [-1, 1]^3 inside the box (linear)."""
        c = torch.as_tensor(self.center, dtype=x.dtype, device=x.device)
        h = torch.as_tensor(self.half, dtype=x.dtype, device=x.device)
        return (x - c) / h

    def contract(self, x: torch.Tensor) -> torch.Tensor:
        """World points [..., 3] -> [0, 1]^3: linear in the box (the middle half), contracted outside."""
        y = self.normalize(x)
        n = y.abs().amax(dim=-1, keepdim=True).clamp(min=1e-6)
        contracted = torch.where(n <= 1.0, y, (2.0 - 1.0 / n) * (y / n))
        return (contracted + 2.0) / 4.0

    def uncontract(self, u: torch.Tensor) -> torch.Tensor:
        """Inverse of ``contract``: [0, 1]^3 -> world points [..., 3] (the outer shell's last 1e-6 is clamped, as
        it stands for infinity)."""
        y = u * 4.0 - 2.0
        n = y.abs().amax(dim=-1, keepdim=True).clamp(min=1e-6, max=2.0 - 1e-6)
        y = torch.where(n <= 1.0, y, y / n / (2.0 - n))
        c = torch.as_tensor(self.center, dtype=u.dtype, device=u.device)
        h = torch.as_tensor(self.half, dtype=u.dtype, device=u.device)
        return y * h + c
