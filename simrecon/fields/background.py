"""The static background: hash grid over contracted space -> density and view-dependent colour."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..encoding import HashGridEncoding
from .contraction import SceneBox
from .mlp import mlp, run_mlp, trunc_exp
from .sh import sh_encode


@dataclass
class BackgroundFieldConfig:
    num_levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048  # over the contracted cube: ~box size / (max_resolution / 4) per cell inside
    hidden: int = 64
    density_layers: int = 1  # hidden layers between the hash features and density (0 learned ~2 dB worse per step)
    geo_features: int = 15
    color_layers: int = 1
    appearance_dim: int = 8  # per-camera (and optionally per-frame) appearance code
    sh_degree: int = 4  # view direction: spherical harmonics of bands 0 .. sh_degree - 1 (sh_degree**2 values)
    density_bias: float = -3.0  # start nearly transparent (per normalised unit): avoids floaters at the cameras
    low_precision: bool = True  # bf16 MLPs on CPU
    backend: str = "auto"


class BackgroundField(nn.Module):
    def __init__(self, cfg: BackgroundFieldConfig, box: SceneBox, num_appearance: int):
        super().__init__()
        self.cfg = cfg
        self.box = box
        self.grid = HashGridEncoding(cfg.num_levels, cfg.features_per_level, cfg.log2_hashmap_size,
                                     cfg.base_resolution, cfg.max_resolution, backend=cfg.backend)
        self.density_net = mlp(self.grid.output_dim, cfg.hidden, cfg.density_layers, 1 + cfg.geo_features)
        color_in = cfg.geo_features + cfg.sh_degree**2 + cfg.appearance_dim
        self.color_net = mlp(color_in, cfg.hidden, cfg.color_layers, 3)
        self.appearance = nn.Embedding(max(num_appearance, 1), cfg.appearance_dim)
        nn.init.zeros_(self.appearance.weight)

    def density(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points [N, 3] -> density [N] and geometry features [N, G]."""
        h = run_mlp(self.density_net, self.grid(self.box.contract(x)), self.cfg.low_precision)
        return trunc_exp(h[:, 0] + self.cfg.density_bias), h[:, 1:]

    def color(self, geo: torch.Tensor, dirs: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """Geometry features [N, G], unit view directions [N, 3], appearance ids [N] -> RGB [N, 3]."""
        inp = torch.cat([geo, sh_encode(dirs, self.cfg.sh_degree), self.appearance(appearance)], dim=-1)
        return torch.sigmoid(run_mlp(self.color_net, inp, self.cfg.low_precision))

    def color_along_rays(self, geo: torch.Tensor, dirs: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """``color`` for S samples on each of R rays: geometry features [R, S, G], the rays' unit directions [R, 3]
        and appearance ids [R] -> RGB [R, S, 3]. The direction encoding and the appearance code are looked up
        once per ray, not per sample (the embedding's backward over one index per sample cost ~3 ms a step)."""
        r, s, _ = geo.shape
        per_ray = torch.cat([sh_encode(dirs, self.cfg.sh_degree), self.appearance(appearance)], dim=-1)  # [R, D^2+A]
        inp = torch.cat([geo, per_ray[:, None].expand(r, s, -1)], dim=-1).view(r * s, -1)
        return torch.sigmoid(run_mlp(self.color_net, inp, self.cfg.low_precision)).view(r, s, 3)
