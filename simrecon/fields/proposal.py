"""Proposal density: a small hash grid that only says where the surfaces are, to place samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config_io import doc
from ..encoding import HashGridEncoding
from .contraction import SceneBox
from .mlp import mlp, run_mlp, trunc_exp


@dataclass
class ProposalFieldConfig:
    num_levels: int = doc(5, "hash-grid resolution levels", unit="levels")
    features_per_level: int = doc(2, "hash-grid features per level", unit="features")
    log2_hashmap_size: int = doc(17, "log2 of the hash table's entries per level", unit="log2 entries")
    base_resolution: int = doc(16, "grid cells along an axis of the contracted cube at the coarsest level",
                               unit="cells")
    max_resolution: int = doc(256, "grid cells along an axis of the contracted cube at the finest level",
                              unit="cells")
    hidden: int = doc(16, "width of the MLP's hidden layer", unit="units")
    density_bias: float = doc(-3.0, "added to the density MLP's output before exp: starts nearly transparent",
                              unit="log density")
    # its skinny matmuls ~2x faster, same quality
    low_precision: bool = doc(True, "MLP in bf16 (CPU) or fp16 (CUDA)", unit="-")
    backend: str = doc("auto", "hash-grid implementation: auto, cuda, cpu, torch or tcnn", unit="-")


class ProposalField(nn.Module):
    def __init__(self, cfg: ProposalFieldConfig, box: SceneBox):
        super().__init__()
        self.cfg = cfg
        self.box = box
        self.grid = HashGridEncoding(cfg.num_levels, cfg.features_per_level, cfg.log2_hashmap_size,
                                     cfg.base_resolution, cfg.max_resolution, backend=cfg.backend)
        self.net = mlp(self.grid.output_dim, cfg.hidden, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """World points [N, 3] -> density [N]."""
        h = run_mlp(self.net, self.grid(self.box.contract(x)), self.cfg.low_precision)  # [N, 1]
        return trunc_exp(h[:, 0] + self.cfg.density_bias)
