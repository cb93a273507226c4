"""The learned lidar heads' last fit, on the final fields' features.

During training the heads chase moving features: the fields change every step, and each step's head rays
(``sampling.lidar_head_rays``, replayed for a few steps) are all the heads see. Once the fields are final, the
heads' inputs no longer move, so this fit renders ``rays`` rays of the training sweeps once and fits the heads
alone on them for ``steps`` Adam steps (seconds on a CPU; the fields are not touched). The losses are the
training ones (``head_loss_terms``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ..config_io import doc
from ..fields.lidar_heads import LidarHeadInputs, LidarHeadOutput


@dataclass
class HeadFitConfig:
    rays: int = doc(65536, "rays of the training sweeps rendered once with the final fields for the heads' last "
                           "fit (0: no last fit)", unit="rays")
    steps: int = doc(1000, "Adam steps of the last fit, on the heads alone", unit="steps")
    batch: int = doc(8192, "rays per step of the last fit", unit="rays")
    lr: float = doc(3e-3, "learning rate of the last fit", unit="step size")

    def check(self, where: str = "config.head_fit") -> None:
        if self.rays < 0 or self.steps < 0 or self.batch < 1 or not self.lr > 0:
            raise ValueError(f"{where}: rays and steps must be >= 0, batch >= 1 and lr > 0, got {self.rays}, "
                             f"{self.steps}, {self.batch} and {self.lr}")


@dataclass
class HeadTargets:
    """What the log says about R head rays."""

    intensity: torch.Tensor  # [R] target in 0..1 (NaN: unknown)
    returned: torch.Tensor  # [R] bool
    drop_known: torch.Tensor  # [R] bool: the ray's sweep has a layout (a missing point there is a drop)

    @staticmethod
    def cat(parts: list["HeadTargets"]) -> "HeadTargets":
        return HeadTargets(*(torch.cat([getattr(p, f) for p in parts]) for f in
                             ("intensity", "returned", "drop_known")))


def head_loss_terms(pred: LidarHeadOutput, t: HeadTargets, intensity_weight: float,
                    drop_weight: float) -> dict[str, torch.Tensor]:
    """The heads' losses: squared intensity error on returned rays of known intensity, and the drop logit's
    binary cross-entropy on rays whose drops are known (a term is absent when it has no ray or no weight)."""
    losses: dict[str, torch.Tensor] = {}
    rows = t.returned & torch.isfinite(t.intensity)
    if pred.intensity is not None and intensity_weight and bool(rows.any()):
        losses["intensity"] = intensity_weight * torch.mean((pred.intensity[rows] - t.intensity[rows]) ** 2)
    if pred.drop_logit is not None and drop_weight and bool(t.drop_known.any()):
        known = t.drop_known
        losses["drop"] = drop_weight * F.binary_cross_entropy_with_logits(pred.drop_logit[known],
                                                                          (~t.returned[known]).float())
    return losses


def _rows(x: LidarHeadInputs, idx: torch.Tensor) -> LidarHeadInputs:
    return LidarHeadInputs(*(getattr(x, f)[idx] for f in ("feats", "weights", "dist", "dirs", "acc", "depth")))


def fit_heads(heads: torch.nn.Module, render: Callable[[int], tuple[LidarHeadInputs, HeadTargets]],
              cfg: HeadFitConfig, weights: tuple[float, float], gen: torch.Generator) -> dict[str, float]:
    """Fit ``heads`` on ``cfg.rays`` rays that ``render(n)`` gives (features without gradient, in pieces of at most
    ``cfg.batch``), ``weights`` = (intensity, drop) loss weights. Returns the losses before and after (the mean
    over the rays, ``<name>_before`` / ``<name>_after``); nothing when there is nothing to fit."""
    if not cfg.rays or not cfg.steps:
        return {}
    parts = [render(min(cfg.batch, cfg.rays - start)) for start in range(0, cfg.rays, cfg.batch)]
    x = LidarHeadInputs.cat([p[0] for p in parts])
    t = HeadTargets.cat([p[1] for p in parts])

    def total() -> dict[str, float]:
        with torch.no_grad():
            return {k: float(v) for k, v in head_loss_terms(heads(x), t, *weights).items()}

    before = total()
    if not before:
        return {}
    params = [p for p in heads.parameters() if p.requires_grad]
    optim = torch.optim.Adam(params, lr=cfg.lr)
    n = len(t.returned)
    for _ in range(cfg.steps):
        idx = torch.randint(0, n, (min(cfg.batch, n),), generator=gen).to(t.returned.device)
        loss = sum(head_loss_terms(heads(_rows(x, idx)), HeadTargets(t.intensity[idx], t.returned[idx],
                                                                     t.drop_known[idx]), *weights).values())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
    after = total()
    return {**{f"{k}_before": v for k, v in before.items()}, **{f"{k}_after": v for k, v in after.items()}}
