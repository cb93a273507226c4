"""One field per tracked actor, living in the actor's box frame (so it moves with its track).

Coordinates: the box (grown by ``margin``) maps to [0, 1]^3; density is zero outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config_io import doc
from ..encoding import HashGridEncoding, hash_grid_encode_many
from .mlp import mlp, run_grouped_mlp, run_mlp, trunc_exp
from .sh import SH_DIM, sh_encode


@dataclass
class ActorFieldConfig:
    num_levels: int = doc(8, "hash-grid resolution levels", unit="levels")
    features_per_level: int = doc(2, "hash-grid features per level", unit="features")
    log2_hashmap_size: int = doc(15, "log2 of the hash table's entries per level", unit="log2 entries")
    base_resolution: int = doc(8, "grid cells along the box's axis at the coarsest level", unit="cells")
    max_resolution: int = doc(256, "grid cells along the box's axis at the finest level", unit="cells")
    hidden: int = doc(32, "width of the MLPs' hidden layer", unit="units")
    geo_features: int = doc(15, "geometry features from the density MLP to the colour MLP", unit="features")
    margin: float = doc(0.1, "relative growth of the box: tracks are not exact", unit="fraction")
    density_bias: float = doc(-3.0, "added to the density MLP's output before exp: starts nearly transparent",
                              unit="log density")
    low_precision: bool = doc(True, "MLPs in bf16 (CPU) or fp16 (CUDA)", unit="-")
    backend: str = doc("auto", "hash-grid implementation: auto, cuda, cpu, torch or tcnn", unit="-")


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


def evaluate_actor_fields(fields: list[ActorField], x_local: torch.Tensor, dirs_local: torch.Tensor,
                          counts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Many actor fields in one pass: the first ``counts[0]`` points [M, 3] (box frame) and directions [M, 3]
    go to ``fields[0]``, the next ``counts[1]`` to ``fields[1]``, ... Returns density [M] and RGB [M, 3], what
    each field's ``forward`` gives on its points, with one hash-grid call (a table per point) and one batched
    matmul per layer instead of ~25 small ops per field: on a log with tens of tracked cars the per-field
    fixed cost dominated. Fields of different configs fall back to one call each."""
    if len(fields) != len(counts) or sum(counts) != x_local.shape[0] or x_local.shape != dirs_local.shape:
        raise ValueError(f"evaluate_actor_fields: {len(fields)} fields, counts {counts} and points "
                         f"{list(x_local.shape)} / directions {list(dirs_local.shape)} do not match")
    used = [(f, c) for f, c in zip(fields, counts) if c]  # unused fields get no gradient (as with a call each)
    if not used:
        return x_local.new_zeros(0), x_local.new_zeros(0, 3)
    fields, counts = [f for f, _ in used], [c for _, c in used]
    cfg = fields[0].cfg
    if len(fields) == 1 or any(f.cfg != cfg or f.grid.tcnn_encoding is not None for f in fields):
        parts = [f(x, d) for f, x, d in zip(fields, x_local.split(counts), dirs_local.split(counts))]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    per_point = torch.repeat_interleave(torch.arange(len(fields), device=x_local.device),
                                        torch.tensor(counts, device=x_local.device))  # [M] field of each point
    half = torch.stack([f.half_size for f in fields])[per_point]  # [M, 3]
    u = x_local / (2 * half) + 0.5
    inside = ((u >= 0) & (u <= 1)).all(dim=-1)
    feats = hash_grid_encode_many(u.clamp(0.0, 1.0), per_point, [f.grid.table for f in fields], fields[0].grid.config,
                                  backend=fields[0].grid.backend)
    h = run_grouped_mlp([f.density_net for f in fields], feats, counts, cfg.low_precision)
    sigma = trunc_exp(h[:, 0] + cfg.density_bias) * inside
    rgb = torch.sigmoid(run_grouped_mlp([f.color_net for f in fields],
                                        torch.cat([h[:, 1:], sh_encode(dirs_local)], -1), counts, cfg.low_precision))
    return sigma, rgb
