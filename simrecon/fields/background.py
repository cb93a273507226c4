"""The static background: hash grid over contracted space -> density and view-dependent colour."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config_io import doc
from ..encoding import HashGridEncoding
from .contraction import SceneBox
from .mlp import mlp, run_mlp, trunc_exp
from .sh import sh_encode


@dataclass
class BackgroundFieldConfig:
    num_levels: int = doc(16, "hash-grid resolution levels", unit="levels")
    features_per_level: int = doc(2, "hash-grid features per level", unit="features")
    log2_hashmap_size: int = doc(19, "log2 of the hash table's entries per level", unit="log2 entries")
    base_resolution: int = doc(16, "grid cells along an axis of the contracted cube at the coarsest level",
                               unit="cells")
    max_resolution: int = doc(2048, "grid cells along an axis of the contracted cube at the finest level: "
                                    "~box size / (max_resolution / 4) per cell inside", unit="cells")
    hidden: int = doc(64, "width of the MLPs' hidden layers", unit="units")
    # 0 learned ~2 dB worse per step
    density_layers: int = doc(1, "hidden layers between the hash features and density", unit="layers")
    geo_features: int = doc(15, "geometry features from the density MLP to the colour MLP", unit="features")
    color_layers: int = doc(1, "hidden layers of the colour MLP", unit="layers")
    appearance_dim: int = doc(8, "per-camera (and optionally per-frame) appearance code", unit="features")
    sh_degree: int = doc(4, "view direction: spherical harmonics of bands 0 .. sh_degree - 1 (sh_degree**2 values)",
                         unit="bands")
    density_bias: float = doc(-3.0, "added to the density MLP's output before exp: starts nearly transparent (per "
                                    "normalised unit), avoiding floaters at the cameras", unit="log density")
    low_precision: bool = doc(True, "MLPs in bf16 (CPU) or fp16 (CUDA)", unit="-")
    backend: str = doc("auto", "hash-grid implementation: auto, cuda, cpu, torch or tcnn", unit="-")


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

    def color_of_samples(self, geo: torch.Tensor, rows: torch.Tensor, dirs: torch.Tensor,
                         appearance: torch.Tensor) -> torch.Tensor:
        """``color`` for M samples scattered over R rays: geometry features [M, G] of samples on rays ``rows`` [M],
        the rays' unit directions [R, 3] and appearance ids [R] -> RGB [M, 3]; the direction encoding and the
        appearance code are computed once per ray."""
        per_ray = torch.cat([sh_encode(dirs, self.cfg.sh_degree), self.appearance(appearance)], dim=-1)
        inp = torch.cat([geo, per_ray[rows]], dim=-1)
        return torch.sigmoid(run_mlp(self.color_net, inp, self.cfg.low_precision))

    def color_along_rays(self, geo: torch.Tensor, dirs: torch.Tensor, appearance: torch.Tensor) -> torch.Tensor:
        """``color`` for S samples on each of R rays: geometry features [R, S, G], the rays' unit directions [R, 3]
        and appearance ids [R] -> RGB [R, S, 3]. The direction encoding and the appearance code are looked up
        once per ray, not per sample (the embedding's backward over one index per sample cost ~3 ms a step)."""
        r, s, _ = geo.shape
        per_ray = torch.cat([sh_encode(dirs, self.cfg.sh_degree), self.appearance(appearance)], dim=-1)  # [R, D^2+A]
        inp = torch.cat([geo, per_ray[:, None].expand(r, s, -1)], dim=-1).view(r * s, -1)
        return torch.sigmoid(run_mlp(self.color_net, inp, self.cfg.low_precision)).view(r, s, 3)
