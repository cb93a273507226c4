"""Score extracted meshes against the synthetic street's ground truth (``OUT/gt/actors.json``).

Chamfer distance: points sampled uniformly on both surfaces, nearest-neighbour distances each way (KD-tree,
scipy; 400k truth points: a sampling floor under 0.5 cm); reported as the mean of each direction and their
average ("mean, both ways"). The truth is either
the actor's tight box surface or the true geometry (the union of its part boxes: body, cabin, wheels).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SIGNS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)


def sample_box_surface(center: np.ndarray, half: np.ndarray, n: int, rng: np.random.Generator,
                       normals: bool = False):
    """``n`` points uniform on the surface of the axis-aligned box (centre, half size); with ``normals``
    also their outward unit normals [n, 3]."""
    half = np.asarray(half, float)
    areas = np.array([half[1] * half[2], half[0] * half[2], half[0] * half[1]]) * 2  # per face pair, one face
    face = rng.choice(6, size=n, p=np.repeat(areas, 2) / np.repeat(areas, 2).sum())
    axis, sign = face // 2, np.where(face % 2 == 0, -1.0, 1.0)
    pts = rng.uniform(-1, 1, (n, 3)) * half
    pts[np.arange(n), axis] = sign * half[axis]
    pts += np.asarray(center, float)
    if not normals:
        return pts
    nrm = np.zeros((n, 3))
    nrm[np.arange(n), axis] = sign
    return pts, nrm


def _in_closed_box(p: np.ndarray, center: np.ndarray, half: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    return (np.abs(p - center) <= np.asarray(half) + tol).all(1)


def sample_union_surface(parts: list[tuple[np.ndarray, np.ndarray]], n: int, seed: int = 0) -> np.ndarray:
    """About ``n`` points uniform on the surface of a union of axis-aligned boxes (centre, half size).

    A face point of part i is dropped when a step along its outward normal lands in another part (it is
    inside the union: also where two faces touch back to back, as a car's body top and cabin bottom do),
    or when it lies on an earlier part (coplanar faces of two parts are sampled once)."""
    rng = np.random.default_rng(seed)
    areas = np.array([8 * (h[0] * h[1] + h[1] * h[2] + h[0] * h[2]) for _, h in parts])
    eps = 1e-5 * max(float(np.max(np.abs(h))) for _, h in parts)
    out = []
    for i, ((c, h), a) in enumerate(zip(parts, areas)):
        pts, nrm = sample_box_surface(c, h, max(1, int(round(n * a / areas.sum()))), rng, normals=True)
        drop = np.zeros(len(pts), bool)
        for j, (c2, h2) in enumerate(parts):
            if j == i:
                continue
            drop |= _in_closed_box(pts + eps * nrm, c2, h2)
            if j < i:
                drop |= _in_closed_box(pts, c2, h2)
        out.append(pts[~drop])
    return np.concatenate(out)


def chamfer(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean nearest-neighbour distance a -> b and b -> a."""
    from scipy.spatial import cKDTree

    return float(cKDTree(b).query(a)[0].mean()), float(cKDTree(a).query(b)[0].mean())


def sample_mesh(vertices: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    tri = np.asarray(vertices, float)[np.asarray(faces)]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(tri), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], 1)
    return (tri[idx] * w[..., None]).sum(1)


def load_truth(gt_dir: str | Path) -> dict[str, dict]:
    """``gt/actors.json`` entries by actor id (size, class, parts)."""
    doc = json.loads((Path(gt_dir) / "actors.json").read_text())
    return {a["id"]: a for a in doc["actors"]}


def score_mesh(vertices: np.ndarray, faces: np.ndarray, truth: dict, n: int = 50000, n_truth: int = 400000) -> dict:
    """Chamfer to the tight box surface and to the true parts, and the bounding-box error per axis."""
    size = np.asarray(truth["size"], float)
    pts = sample_mesh(vertices, faces, n)
    box = sample_union_surface([(np.zeros(3), size / 2)], n_truth, seed=1)
    parts = sample_union_surface([(np.asarray(p["center"]), np.asarray(p["half_size"])) for p in truth["parts"]],
                                 n_truth, seed=2)
    to_box, from_box = chamfer(pts, box)
    to_parts, from_parts = chamfer(pts, parts)
    ext = np.asarray(vertices).max(0) - np.asarray(vertices).min(0)
    return {
        "chamfer_box": (to_box + from_box) / 2, "chamfer_box_ways": [to_box, from_box],
        "chamfer_parts": (to_parts + from_parts) / 2, "chamfer_parts_ways": [to_parts, from_parts],
        "extent": ext.tolist(), "size": size.tolist(), "extent_error": (ext - size).tolist(),
    }
