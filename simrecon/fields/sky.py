"""Sky: colour as a function of direction only, composited behind everything."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .mlp import mlp
from .sh import SH_DIM, sh_encode


class SkyField(nn.Module):
    """An MLP of the direction's spherical harmonics and the appearance code; with ``texture`` E > 0, also of
    ``texture_features`` features looked up bilinearly in an E x 2E texture over the direction's azimuth and z.

    The harmonics are global and smooth: they fit the sky just above a sharp horizon poorly, and every ray not
    yet opaque pulls the whole sky. Without the texture, a third of the runs painted the sky onto a ceiling of
    density instead (docs/reconstruction.md). The texture lets each direction keep its own colour; it starts at
    zero, so the harmonics decide where nothing was seen."""

    def __init__(self, hidden: int = 32, appearance_dim: int = 8, num_appearance: int = 1, texture: int = 0,
                 texture_features: int = 8):
        super().__init__()
        self.texture = nn.Parameter(torch.zeros(1, texture_features, texture, 2 * texture)) if texture > 0 else None
        tex_dim = texture_features if texture > 0 else 0
        self.net = mlp(SH_DIM + tex_dim + appearance_dim, hidden, 2, 3)
        self.appearance = nn.Embedding(max(num_appearance, 1), appearance_dim)
        nn.init.zeros_(self.appearance.weight)

    def forward(self, dirs: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Unit directions [N, 3], appearance ids [N] -> RGB [N, 3]."""
        parts = [sh_encode(dirs)]
        if self.texture is not None:
            parts.append(self.texture_features(dirs))
        parts.append(self.appearance(appearance))
        return torch.sigmoid(self.net(torch.cat(parts, dim=-1)))

    def texture_features(self, dirs: torch.Tensor) -> torch.Tensor:
        """Unit directions [N, 3] -> texture features [N, C], bilinear. Columns run over the azimuth (-pi to pi),
        rows over the direction's z (-1 to 1), both ends on texel centres."""
        uv = torch.stack([torch.atan2(dirs[:, 1], dirs[:, 0]) / math.pi, dirs[:, 2].clamp(-1.0, 1.0)], -1)
        feat = F.grid_sample(self.texture, uv[None, None], mode="bilinear", padding_mode="border",
                             align_corners=True)  # [1, C, 1, N]
        return feat[0, :, 0].T
