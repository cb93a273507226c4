"""Class shape priors for actors the cameras barely saw.

A car parked 60 m ahead of a 2-second log covers ~10x6 pixels per frame: its field is fog, and marching cubes
on fog gives a blob or nothing (docs/meshes.md). Such an actor borrows its shape from the best-seen actor of
the same class and a similar size in the same log (the template), scaled to its own box; its colours stay its
own. How much it borrows follows how much it was seen: ``weight = min(1, pixels / min_pixels)`` of its own
density, the rest the template's, where ``pixels`` is the area its box covered in the training images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class ShapePriorConfig:
    min_pixels: float = 20000.0  # training-image pixels (box area, summed over frames) at which an actor is its own
    max_size_ratio: float = 1.25  # a template's box is within this factor of the actor's on every axis
    min_fill: float = 0.8  # a template's surface spans at least this share of its box on every axis


def observed_pixels(log, actor_id: str, holdout: set[str] | frozenset = frozenset()) -> float:
    """Pixels the actor's box covered in the training images: per frame where it is present and entirely in
    front of the camera, the area of its projected corners' bounding rectangle clipped to the image."""
    actor = log.actor(actor_id)
    total = 0.0
    for f in log.frames:
        if f.file_path in holdout:
            continue
        corners = actor.corners_at(f.timestamp)  # [8, 3] or None
        if corners is None:
            continue
        px, depth = f.project(corners)  # [8, 2], [8]
        if not np.all(depth > 0):
            continue
        size = np.array([f.intrinsics.w, f.intrinsics.h], float)
        lo, hi = np.clip(px.min(0), 0, size), np.clip(px.max(0), 0, size)
        total += float(np.prod(np.clip(hi - lo, 0, None)))
    return total


def choose_template(scene, actor_id: str, cfg: ShapePriorConfig,
                    usable: Callable[[str], bool] | None = None) -> tuple[str | None, float]:
    """(template actor id or None, weight of the actor's own density in [0, 1]). An actor no training image
    saw gets no template (nothing says it is there to be meshed); ``usable(id)`` vets candidate templates,
    best-seen first (``spans_box``: a template whose own field is still fog would spread its blob)."""
    log = scene.log
    holdout = set(scene.info.holdout)
    with_fields = list(scene.info.actors)[:scene.model.num_actor_fields]
    own = observed_pixels(log, actor_id, holdout)
    weight = min(1.0, own / cfg.min_pixels) if cfg.min_pixels > 0 else 1.0
    if weight >= 1.0 or own <= 0:
        return None, 1.0
    me = log.actor(actor_id)
    size = np.asarray(me.size, float)
    candidates = []
    for other in with_fields:
        if other == actor_id:
            continue
        a = log.actor(other)
        if str(a.cls).lower() != str(me.cls).lower():
            continue
        ratio = np.asarray(a.size, float) / size
        if np.any(ratio > cfg.max_size_ratio) or np.any(ratio < 1 / cfg.max_size_ratio):
            continue
        px = observed_pixels(log, other, holdout)
        if px >= cfg.min_pixels:
            candidates.append((px, other))
    for _, other in sorted(candidates, reverse=True):
        if usable is None or usable(other):
            return other, weight
    return None, 1.0


@torch.no_grad()
def spans_box(field, level: float, size: np.ndarray, min_fill: float, mirror: bool, resolution: int = 32) -> bool:
    """Whether ``field``'s density above ``level`` (on a coarse grid over its tracked box of ``size``, mirrored
    left/right with ``mirror``) spans at least ``min_fill`` of the box on every axis."""
    from .extract import grid_shape, sample_density

    half = np.asarray(size, float) / 2
    shape, h = grid_shape(-half, half, resolution)
    vol = sample_density(field, -half, shape, h, device=field.half_size.device)
    if mirror:
        vol = np.maximum(vol, np.flip(vol, axis=1))
    occ = np.argwhere(vol > level)
    if not len(occ):
        return False
    extent = (occ.max(0) - occ.min(0) + 1) * h
    return bool(np.all(extent >= min_fill * 2 * half))


class PriorField:
    """An actor field whose density is ``weight`` of its own and the rest the template field's, the template
    stretched from its box onto the actor's; colours are the actor's own (``DensityField`` interface)."""

    def __init__(self, field, template, weight: float):
        self.field = field
        self.template = template
        self.weight = float(weight)
        self.half_size = field.half_size
        self.stretch = (template.half_size / field.half_size).detach()  # [3] actor box -> template box

    def __call__(self, x: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma, rgb = self.field(x, dirs)  # [N], [N, 3]
        t_sigma, _ = self.template(x * self.stretch, dirs)
        return self.weight * sigma + (1 - self.weight) * t_sigma, rgb
