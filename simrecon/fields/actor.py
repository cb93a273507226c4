"""One field per tracked actor, living in the actor's box frame (so it moves with its track).

Coordinates: the box (grown by ``margin``) maps to [0, 1]^3; density is zero outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..encoding import HashGridEncoding
from .mlp import mlp, run_mlp, trunc_exp
from .sh import SH_DIM, sh_encode


@dataclass
class ActorFieldConfig:
    num_levels: int = 8
    features_per_level: int = 2
    log2_hashmap_size: int = 15
    base_resolution: int = 8
    max_resolution: int = 256
    hidden: int = 32
    geo_features: int = 15
    margin: float = 0.1  # relative growth of the box: tracks are not exact
    density_bias: float = -3.0
    low_precision: bool = True
    backend: str = "auto"


class ActorField(nn.Module):
    def __init__(self, cfg: ActorFieldConfig, size: np.ndarray):
        super().__init__()
        self.cfg = cfg
        half = torch.as_tensor(np.asarray(size, dtype=np.float32) / 2 * (1 + cfg.margin))
        self.register_buffer("half_size", half, persistent=True)  # [3] half extent of the field's box
        self.grid = HashGridEncoding(cfg.num_levels, cfg.features_per_level, cfg.log2_hashmap_size,
                                     cfg.base_resolution, cfg.max_resolution, backend=cfg.backend)
        self.density_net = mlp(self.grid.output_dim, cfg.hidden, 1, 1 + cfg.geo_features)
        self.color_net = mlp(cfg.geo_features + SH_DIM, cfg.hidden, 1, 3)

    def forward(self, x_local: torch.Tensor, dirs_local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box-frame points [N, 3] and unit directions [N, 3] -> density [N], RGB [N, 3]."""
        u = x_local / (2 * self.half_size) + 0.5
        inside = ((u >= 0) & (u <= 1)).all(dim=-1)
        h = run_mlp(self.density_net, self.grid(u.clamp(0.0, 1.0)), self.cfg.low_precision)
        sigma = trunc_exp(h[:, 0] + self.cfg.density_bias) * inside
        rgb = torch.sigmoid(run_mlp(self.color_net, torch.cat([h[:, 1:], sh_encode(dirs_local)], -1),
                                    self.cfg.low_precision))
        return sigma, rgb
