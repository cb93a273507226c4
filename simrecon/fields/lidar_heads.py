"""Learned lidar heads: a return's intensity and a ray's drop probability, read off the scene's fields.

The scene model (``SceneModel.lidar_head_outputs``) takes the K heaviest samples of each rendered lidar ray and
gives this module their features: the colour the fields see there from the ray's direction (RGB), the
background's geometry features (zeros at actor samples) and whether an actor field owns the sample. Then:

- **intensity**: a small MLP per sample on (features, the ray's direction, the sample's distance) -> 0..1,
  composited along the ray with the samples' render weights (normalised over the K): the expected intensity;
- **drop**: a small MLP per ray on (the composited features, the ray's opacity and expected distance, its
  direction, the predicted intensity) -> the logit of the probability that the ray returns nothing (absorbing or
  specular surfaces at grazing angles, sky, ...).

Their inputs are detached from the fields: the heads learn from the fields, never the other way round, so they
cannot bend the geometry or the colours the cameras see. A head is built when its setting is ``on``; the trainer
turns ``auto`` into ``on`` or ``off`` from the log before it builds the model, and a scene records which.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config_io import doc
from .mlp import mlp
from .sh import sh_encode

MODES = ("auto", "on", "off")
DIR_DEGREE = 3  # spherical-harmonics bands of the ray direction the heads see (9 values)


@dataclass
class LidarHeadsConfig:
    intensity: str = doc("auto", "learned lidar intensity: auto (on when the log's training sweeps carry intensity), "
                                 "on or off; a trained scene records on or off", unit="-")
    drop: str = doc("auto", "learned ray drop: auto (on when training sweeps have a beam/column layout, drive-log "
                            "v1.1, of a described sensor), on or off; a trained scene records on or off", unit="-")
    samples: int = doc(4, "the heaviest samples of a lidar ray whose features the heads read (composited with "
                          "their render weights)", unit="samples")
    hidden: int = doc(32, "width of the heads' hidden layers", unit="units")
    layers: int = doc(2, "hidden layers of each head", unit="layers")

    def check(self, where: str) -> None:
        for name in ("intensity", "drop"):
            if getattr(self, name) not in MODES:
                raise ValueError(f"{where}.{name}: expected auto, on or off, got {getattr(self, name)!r}")
        if self.samples < 1 or self.hidden < 1 or self.layers < 0:
            raise ValueError(f"{where}: samples and hidden must be >= 1 and layers >= 0, got {self.samples}, "
                             f"{self.hidden} and {self.layers}")

    @property
    def any_on(self) -> bool:
        return self.intensity == "on" or self.drop == "on"


@dataclass
class LidarHeadInputs:
    """What the heads read of R rendered lidar rays, K samples each (``SceneModel.lidar_head_inputs``)."""

    feats: torch.Tensor  # [R, K, F] sample features (``sample_feature_dim``)
    weights: torch.Tensor  # [R, K] the samples' render weights
    dist: torch.Tensor  # [R, K] the samples' normalised distances along the ray
    dirs: torch.Tensor  # [R, 3] unit ray directions
    acc: torch.Tensor  # [R] opacity
    depth: torch.Tensor  # [R] expected normalised distance

    @staticmethod
    def cat(parts: list["LidarHeadInputs"]) -> "LidarHeadInputs":
        return LidarHeadInputs(*(torch.cat([getattr(p, f) for p in parts]) for f in
                                 ("feats", "weights", "dist", "dirs", "acc", "depth")))


@dataclass
class LidarHeadOutput:
    """What the heads say about R lidar rays."""

    intensity: torch.Tensor | None  # [R] expected intensity in [0, 1] (times ``intensity_scale``: the log's units)
    drop_logit: torch.Tensor | None  # [R] logit of P(the ray returns nothing); None without a drop head

    def drop_probability(self) -> torch.Tensor | None:
        return torch.sigmoid(self.drop_logit) if self.drop_logit is not None else None


def sample_feature_dim(geo_features: int) -> int:
    """Features per sample: RGB (3), the background's geometry features, the actor flag (1)."""
    return 3 + geo_features + 1


class LidarHeads(nn.Module):
    def __init__(self, cfg: LidarHeadsConfig, feature_dim: int):
        """``feature_dim``: features per sample (``sample_feature_dim``)."""
        super().__init__()
        self.cfg = cfg
        # the log's intensity per unit of the head's 0..1 output (set by training: train/lidar_heads.py)
        self.register_buffer("intensity_scale", torch.ones(1), persistent=True)  # [1]
        dirs = DIR_DEGREE ** 2
        self.intensity_net = mlp(feature_dim + dirs + 1, cfg.hidden, cfg.layers, 1) if cfg.intensity == "on" \
            else None
        self.drop_net = mlp(feature_dim + dirs + 3, cfg.hidden, cfg.layers, 1) if cfg.drop == "on" else None
        if self.drop_net is not None:  # an untrained drop head keeps almost every ray (P(drop) ~ 5 %)
            nn.init.constant_(self.drop_net[-1].bias, -3.0)

    def forward(self, x: LidarHeadInputs) -> LidarHeadOutput:
        feats, weights, dist, dirs, acc, depth = x.feats, x.weights, x.dist, x.dirs, x.acc, x.depth
        r, k, _ = feats.shape
        w = weights / weights.sum(1, keepdim=True).clamp(min=1e-8)  # [R, K]
        d = sh_encode(dirs, DIR_DEGREE)  # [R, 9]
        intensity = None
        if self.intensity_net is not None:
            inp = torch.cat([feats, d[:, None].expand(r, k, -1), torch.log1p(dist.clamp(min=0))[..., None]], -1)
            per_sample = torch.sigmoid(self.intensity_net(inp.view(r * k, -1))).view(r, k)
            intensity = (w * per_sample).sum(1)
        logit = None
        if self.drop_net is not None:
            mean = (w[..., None] * feats).sum(1)  # [R, F]
            cue = intensity.detach() if intensity is not None else acc.new_zeros(r)
            inp = torch.cat([mean, d, acc[:, None], torch.log1p(depth.clamp(min=0))[:, None], cue[:, None]], -1)
            logit = self.drop_net(inp)[:, 0]
        return LidarHeadOutput(intensity, logit)
