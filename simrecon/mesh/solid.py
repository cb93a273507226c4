"""The unseen inside of a solid object: fill it before marching cubes.

No ray ever entered a car, so its field's density inside is arbitrary: a seen car is often a shell of dense
voxels around low-density pockets, and those pockets mesh into surfaces inside the car, half a metre from the
true surface (on the synthetic street, filling them took the mean Chamfer error over 8 cars from 9.5 to
7.4 cm). A voxel is *exterior* when, along at least two of the 26 grid directions (axes, face and body
diagonals), nothing dense lies between it and the grid's border; every other empty voxel is inside and gets
filled. Gaps open on two sides, such as the space under a car's body between its wheels, stay empty.
"""

from __future__ import annotations

import itertools

import numpy as np

# One of each opposite pair: the line through a voxel along d and along -d is the same line.
HALF_DIRECTIONS = [d for d in itertools.product((-1, 0, 1), repeat=3) if d > (0, 0, 0)]


def _seen_along_line(occ: np.ndarray, d: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """[N] flat bool each: the voxel sees the border along +d, and along -d, without passing an occupied voxel."""
    shape = np.array(occ.shape)
    idx = np.indices(occ.shape).reshape(3, -1).T  # [N, 3]
    dv = np.array(d)
    a = int(np.flatnonzero(dv)[0])
    pos = idx[:, a] * dv[a]  # position along the line (grows by 1 per step along +d)
    base = idx - pos[:, None] * dv  # [N, 3] the line's point with pos 0: the same for every voxel on a line
    m = int(shape.max())  # base coordinates lie in [-m, 2m): offset them to index the line
    line = np.ravel_multi_index((base + m).T, (3 * m,) * 3)
    order = np.lexsort((pos, line))
    s = occ.reshape(-1)[order].astype(np.int32)
    ln = line[order]
    starts = np.flatnonzero(np.r_[True, ln[1:] != ln[:-1]])
    seg = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(ln)]))
    csum = np.cumsum(s)
    before_line = np.r_[0, csum][starts][seg]  # occupied voxels on earlier lines
    line_total = np.r_[csum[starts[1:] - 1], csum[-1]][seg] - before_line
    upto = csum - before_line  # occupied at positions <= this one on its line
    behind = upto - s  # strictly before along +d
    ahead = line_total - upto  # strictly after along +d
    fwd, back = np.empty(len(s), bool), np.empty(len(s), bool)
    fwd[order], back[order] = ahead == 0, behind == 0
    return fwd, back


def interior_mask(occupied: np.ndarray, min_directions: int = 2) -> np.ndarray:
    """Empty voxels that see the grid's border along fewer than ``min_directions`` of the 26 grid directions
    (same shape as ``occupied``). Two, not one: a pocket behind a small hole sees out through it along a
    single direction only, and would otherwise stay a tube of empty voxels (a surface inside the object)."""
    occ = np.asarray(occupied, bool)
    count = np.zeros(occ.size, np.int8)
    for d in HALF_DIRECTIONS:
        fwd, back = _seen_along_line(occ, d)
        count += fwd
        count += back
    return ~occ & (count.reshape(occ.shape) < min_directions)


def fill_interior(volume: np.ndarray, level: float) -> int:
    """Raise, in place, the density of ``interior_mask(volume > level)`` voxels to twice ``level``; returns how
    many were filled. Voxels next to the surface keep their own density where they are exterior, so the
    surface marching cubes finds outside is unchanged."""
    inside = interior_mask(volume > level)
    volume[inside] = np.maximum(volume[inside], 2.0 * level)
    return int(inside.sum())
