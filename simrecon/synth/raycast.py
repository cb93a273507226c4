"""Exact ray casting against a z=0 ground plane and oriented boxes (vectorised, torch on CPU).

Every object of the synthetic street is a union of oriented boxes, so one slab test per box and
ray gives exact depth, surface normal and hit point: ground truth for any camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GROUND = -1  # primitive index of the ground plane
NOTHING = -2  # primitive index where the ray hits nothing (sky)


@dataclass
class Boxes:
    """Oriented boxes in world: centres [B, 3], box-to-world rotations [B, 3, 3], half sizes [B, 3]."""

    centers: torch.Tensor
    rotations: torch.Tensor
    half: torch.Tensor

    def __len__(self) -> int:
        return self.centers.shape[0]


@dataclass
class Hits:
    """Closest hit per ray: distance t [N] (inf: none), primitive [N] (GROUND, NOTHING or box index),
    world point [N, 3], world normal [N, 3] and box-local point [N, 3] (zeros for non-box hits)."""

    t: torch.Tensor
    prim: torch.Tensor
    point: torch.Tensor
    normal: torch.Tensor
    local: torch.Tensor


def cast(origins: torch.Tensor, dirs: torch.Tensor, boxes: Boxes, ground_range: float = 250.0) -> Hits:
    """Closest intersection of rays (origins [N, 3], unit dirs [N, 3]) with the ground and ``boxes``."""
    n = origins.shape[0]
    eps = 1e-4
    best_t = torch.full((n,), float("inf"))
    best = torch.full((n,), NOTHING, dtype=torch.long)
    # Ground plane z = 0, seen from above only, limited in range so the far horizon is sky not noise.
    dz = dirs[:, 2]
    t_ground = torch.where(dz < -1e-9, -origins[:, 2] / dz.clamp(max=-1e-9), torch.full_like(dz, float("inf")))
    hit_ground = (t_ground > eps) & (t_ground < ground_range)
    best_t = torch.where(hit_ground, t_ground, best_t)
    best = torch.where(hit_ground, torch.full_like(best, GROUND), best)
    if len(boxes):
        # All boxes at once: two GEMMs move rays into every box frame ([N, 3] @ [3, B*3]).
        nb = len(boxes)
        rot_cat = boxes.rotations.transpose(0, 1).reshape(3, nb * 3)  # column block b = R_b
        shift = torch.einsum("bi,bij->bj", boxes.centers, boxes.rotations)  # [B, 3] centre in box frame
        o = (origins @ rot_cat).view(n, nb, 3) - shift
        d = (dirs @ rot_cat).view(n, nb, 3)
        d = torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
        inv = 1.0 / d
        t1 = (-boxes.half - o) * inv
        t2 = (boxes.half - o) * inv
        tmin = torch.minimum(t1, t2).amax(dim=2)  # [N, B]
        tmax = torch.maximum(t1, t2).amin(dim=2)
        t_box = torch.where((tmin <= tmax) & (tmin > eps), tmin, torch.full_like(tmin, float("inf")))
        t_near, b_near = t_box.min(dim=1)
        closer = t_near < best_t
        best_t = torch.where(closer, t_near, best_t)
        best = torch.where(closer, b_near, best)
    point = origins + best_t.clamp(max=1e9)[:, None] * dirs
    normal = torch.zeros_like(origins)
    local = torch.zeros_like(origins)
    normal[best == GROUND] = torch.tensor([0.0, 0.0, 1.0])
    on_box = best >= 0
    if on_box.any():
        idx = best[on_box]
        rot = boxes.rotations[idx]  # [M, 3, 3]
        loc = torch.einsum("mi,mij->mj", point[on_box] - boxes.centers[idx], rot)
        rel = loc / boxes.half[idx]
        axis = rel.abs().argmax(dim=1)
        n_local = torch.zeros_like(loc)
        n_local[torch.arange(len(idx)), axis] = torch.sign(rel[torch.arange(len(idx)), axis])
        normal[on_box] = torch.einsum("mij,mj->mi", rot, n_local)
        local[on_box] = loc
    return Hits(best_t, best, point, normal, local)
