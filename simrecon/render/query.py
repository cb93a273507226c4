"""Which actor box holds a point: the one point-in-box test of the scene.

The scene model's point query (``SceneModel.query``), the lidar prior and the free-column builder all ask it;
the renderer's own actor test is the ray-box intersection (``samplers.box_intervals``), which gives intervals
rather than owners.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BoxOwners:
    """Which box holds each of N points, and the point (and a direction) in that box's frame."""

    slot: torch.Tensor  # [N] long: the box (placement) holding the point, -1 for none
    local: torch.Tensor  # [N, 3] the point in that box's frame (zeros where none holds it)
    local_dirs: torch.Tensor  # [N, 3] the direction in that box's frame (zeros without directions or box)


@dataclass
class PointQuery:
    """The scene's fields at N world points: each point belongs to the actor whose box holds it, or else to the
    background (``SceneModel.query``)."""

    sigma: torch.Tensor  # [N] density (per normalised unit) of the owning field
    owner: torch.Tensor  # [N] long: -1 background, else the index of the owning actor field
    rgb: torch.Tensor | None = None  # [N, 3] colour at the rows asked for (zeros elsewhere)
    sigma_proposal: torch.Tensor | None = None  # [N] proposal density at the background rows asked (zeros elsewhere)


def boxes_holding(x: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, half: torch.Tensor,
                  present: torch.Tensor, which: torch.Tensor, dirs: torch.Tensor | None = None) -> BoxOwners:
    """The first box (in placement order, where boxes overlap) holding each point x [N, 3], of P boxes posed at
    U distinct times: rot [P, U, 3, 3] box to world, trans [P, U, 3], half extents half [P, 3], present [P, U];
    ``which`` [N] is each point's time index in [0, U). ``dirs`` [N, 3] are turned into the box frame too.

    Points come from a few times (lidar sweeps, one layout), so the loop is over times, and only the points
    within a box's radius of its centre get the exact test in its frame: on a log with 97 tracked cars a loop
    over boxes on every point took twice as long (benchmarks/step.py times both)."""
    n = x.shape[0]
    out = BoxOwners(torch.full((n,), -1, dtype=torch.long, device=x.device), torch.zeros_like(x), torch.zeros_like(x))
    if not rot.shape[0] or not n:
        return out
    for u in torch.unique(which).tolist():
        boxes = present[:, u].nonzero()[:, 0]  # [Q] the boxes present at this time, in placement order
        rows = (which == u).nonzero()[:, 0]  # [M] this time's points
        if not len(boxes):
            continue
        r, t, h = rot[boxes, u], trans[boxes, u], half[boxes]  # [Q, 3, 3], [Q, 3], [Q, 3]
        # within the box's radius (and 1 % more: cdist's matmul form rounds), about the boxes' mean so that the
        # large coordinates of real logs do not cost it precision
        c = t.mean(0)
        near = torch.cdist(t - c, x[rows] - c) <= h.norm(dim=-1)[:, None] * 1.01  # [Q, M]
        q, m = near.nonzero().unbind(1)  # [K] candidate (box, point) pairs
        xl = torch.einsum("kji,kj->ki", r[q], x[rows[m]] - t[q])  # [K, 3]: R^T (x - t)
        inside = (xl.abs() <= h[q]).all(-1)
        q, m, xl = q[inside], m[inside], xl[inside]
        first = torch.full((len(rows),), len(boxes), dtype=torch.long, device=x.device)
        first.scatter_reduce_(0, m, q, "amin")  # [M] the first box holding each point
        keep = first[m] == q
        q, at = q[keep], rows[m[keep]]
        out.slot[at] = boxes[q]
        out.local[at] = xl[keep]
        if dirs is not None:
            out.local_dirs[at] = torch.einsum("kji,kj->ki", r[q], dirs[at])
    return out


def boxes_holding_loop(x: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor, half: torch.Tensor,
                       present: torch.Tensor, which: torch.Tensor, dirs: torch.Tensor | None = None) -> BoxOwners:
    """The reference for ``boxes_holding`` (same signature and results): every box tested on every point, one
    box at a time. For tests and benchmarks/step.py."""
    n = x.shape[0]
    out = BoxOwners(torch.full((n,), -1, dtype=torch.long, device=x.device), torch.zeros_like(x), torch.zeros_like(x))
    for p in range(rot.shape[0]):
        r = rot[p, which]  # [N, 3, 3]
        xl = torch.einsum("nji,nj->ni", r, x - trans[p, which])
        inside = present[p, which] & (xl.abs() <= half[p]).all(-1) & (out.slot < 0)
        out.slot[inside] = p
        out.local[inside] = xl[inside]
        if dirs is not None:
            out.local_dirs[inside] = torch.einsum("nji,nj->ni", r[inside], dirs[inside])
    return out
