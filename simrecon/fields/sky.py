"""Sky: colour as a function of direction only, composited behind everything."""

from __future__ import annotations

import torch
from torch import nn

from .mlp import mlp
from .sh import SH_DIM, sh_encode


class SkyField(nn.Module):
    def __init__(self, hidden: int = 32, appearance_dim: int = 8, num_appearance: int = 1):
        super().__init__()
        self.net = mlp(SH_DIM + appearance_dim, hidden, 2, 3)
        self.appearance = nn.Embedding(max(num_appearance, 1), appearance_dim)
        nn.init.zeros_(self.appearance.weight)

    def forward(self, dirs: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Unit directions [N, 3], appearance ids [N] -> RGB [N, 3]."""
        return torch.sigmoid(self.net(torch.cat([sh_encode(dirs), self.appearance(appearance)], dim=-1)))
