"""Ray casting against triangle meshes: Open3D's RaycastingScene when installed, else our own
vectorised Möller–Trumbore in torch over a two-level hierarchy (triangles sorted along a Morton curve
and grouped into blocks with bounding boxes; rays are tested against block boxes first, then against
the triangles of the blocks they cross).

Both give, per ray, the distance to the closest hit (inf where none), the triangle index (-1 where
none) and the barycentric coordinates (u, v) of the hit in that triangle (vertex weights 1-u-v, u, v).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 32  # triangles per leaf block
PAIR_BUDGET = 1 << 21  # (ray, triangle) tests per batch: bounds peak memory (~200 MB of temporaries)


@dataclass
class MeshHits:
    t: np.ndarray  # [N] float32 distance along the (unit) ray; inf where nothing is hit
    face: np.ndarray  # [N] int64 triangle index; -1 where nothing is hit
    uv: np.ndarray  # [N, 2] float32 barycentric coordinates of the hit (weights of vertices 1 and 2)


def open3d_available() -> bool:
    try:
        import open3d  # noqa: F401
    except Exception:  # noqa: BLE001 (open3d can fail to import for many reasons: missing libusb, ...)
        return False
    return True


class TorchRaycaster:
    """Closest-hit queries against one triangle mesh (vertices [V, 3], faces [F, 3]), CPU torch."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, block: int = BLOCK):
        v = np.asarray(vertices, dtype=np.float64)
        f = np.asarray(faces, dtype=np.int64)
        tri = v[f]  # [F, 3, 3]
        # Sort triangles along a Morton curve of their centroids so each block is spatially compact.
        c = tri.mean(1)
        lo, hi = c.min(0), c.max(0)
        q = ((c - lo) / np.maximum(hi - lo, 1e-9) * 1023).astype(np.int64)
        order = np.argsort(_morton(q[:, 0]) | (_morton(q[:, 1]) << 1) | (_morton(q[:, 2]) << 2), kind="stable")
        nf = len(f)
        nb = max(1, -(-nf // block))
        pad = nb * block - nf
        order_p = np.concatenate([order, np.full(pad, -1, np.int64)])
        self.face_of = torch.as_tensor(order_p)  # [nb * block]: original triangle index, -1 for padding
        # Padding triangles are degenerate (one point of the last real triangle): never hit.
        fill = np.repeat(tri[order[-1:], :1], 3, axis=1) if nf else np.zeros((1, 3, 3))
        tri_p = np.concatenate([tri[order], np.repeat(fill, pad, 0)]) if nf else np.zeros((0, 3, 3))
        t = torch.as_tensor(tri_p, dtype=torch.float32)
        self.v0 = t[:, 0].contiguous()
        self.e1 = (t[:, 1] - t[:, 0]).contiguous()
        self.e2 = (t[:, 2] - t[:, 0]).contiguous()
        tb = t.view(nb, block, 3, 3)
        self.block_lo = tb.amin(dim=(1, 2)) - 1e-5
        self.block_hi = tb.amax(dim=(1, 2)) + 1e-5
        self.block = block
        self.lo = self.block_lo.amin(0)
        self.hi = self.block_hi.amax(0)

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> MeshHits:
        o_all = torch.as_tensor(np.asarray(origins, dtype=np.float32))
        d_all = torch.as_tensor(np.asarray(dirs, dtype=np.float32))
        n = o_all.shape[0]
        best_t = torch.full((n,), float("inf"))
        best_f = torch.full((n,), -1, dtype=torch.long)
        best_uv = torch.zeros(n, 2)
        if n == 0 or len(self.v0) == 0:
            return MeshHits(best_t.numpy(), best_f.numpy(), best_uv.numpy())
        # Rays that miss the whole mesh's box are done.
        cand = _slab(o_all, d_all, self.lo[None], self.hi[None])[:, 0].nonzero()[:, 0]
        nb = len(self.block_lo)
        chunk = max(1, PAIR_BUDGET // max(nb, 1))
        for s in range(0, len(cand), chunk):
            rows = cand[s:s + chunk]
            o, d = o_all[rows], d_all[rows]
            hit_b = _slab(o, d, self.block_lo, self.block_hi)  # [R, nb]
            ri, bi = hit_b.nonzero(as_tuple=True)
            # Expand (ray, block) pairs into (ray, triangle) tests in sub-batches.
            step = max(1, PAIR_BUDGET // self.block)
            for p in range(0, len(ri), step):
                r_p = ri[p:p + step]
                b_p = bi[p:p + step]
                r_t = r_p.repeat_interleave(self.block)
                f_t = (b_p[:, None] * self.block + torch.arange(self.block)).reshape(-1)
                t, u, v, ok = _moller_trumbore(o[r_t], d[r_t], self.v0[f_t], self.e1[f_t], self.e2[f_t])
                t = torch.where(ok, t, torch.full_like(t, float("inf")))
                rows_t = rows[r_t]
                cur = best_t.clone()
                best_t.scatter_reduce_(0, rows_t, t, reduce="amin")
                # Pairs that set a new minimum write their triangle and barycentrics.
                win = torch.isfinite(t) & (t == best_t[rows_t]) & (t < cur[rows_t])
                if bool(win.any()):
                    best_f[rows_t[win]] = self.face_of[f_t[win]]
                    best_uv[rows_t[win]] = torch.stack([u[win], v[win]], -1)
        return MeshHits(best_t.numpy(), best_f.numpy(), best_uv.numpy())


class Open3DRaycaster:
    """The same queries through Open3D's RaycastingScene (embree BVH)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import open3d as o3d

        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(np.asarray(vertices, np.float32)),
                                 o3d.core.Tensor(np.asarray(faces, np.uint32)))
        self._o3d = o3d

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> MeshHits:
        rays = np.concatenate([np.asarray(origins, np.float32), np.asarray(dirs, np.float32)], axis=1)
        ans = self.scene.cast_rays(self._o3d.core.Tensor(rays))
        t = ans["t_hit"].numpy().astype(np.float32)
        face = ans["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t)
        face = np.where(hit, face, -1)
        uv = np.where(hit[:, None], ans["primitive_uvs"].numpy().astype(np.float32), 0.0)
        return MeshHits(t, face, uv)


def make_raycaster(vertices: np.ndarray, faces: np.ndarray, backend: str = "auto"):
    """``backend``: "auto" (Open3D if it imports, else torch), "open3d" or "torch"."""
    if backend not in ("auto", "open3d", "torch"):
        raise ValueError(f"raycast backend: expected auto, open3d or torch, got {backend!r}")
    if backend == "open3d" or (backend == "auto" and open3d_available()):
        return Open3DRaycaster(vertices, faces)
    return TorchRaycaster(vertices, faces)


def _morton(x: np.ndarray) -> np.ndarray:
    """Spread the low 10 bits of x so two zero bits follow each one."""
    x = x & 0x3FF
    x = (x | (x << 16)) & 0x030000FF
    x = (x | (x << 8)) & 0x0300F00F
    x = (x | (x << 4)) & 0x030C30C3
    x = (x | (x << 2)) & 0x09249249
    return x


def _slab(o: torch.Tensor, d: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Rays [R, 3] vs boxes [B, 3] -> [R, B] bool: the ray (t >= 0) crosses the box."""
    inv = 1.0 / torch.where(d.abs() < 1e-12, torch.full_like(d, 1e-12), d)
    t1 = (lo[None] - o[:, None]) * inv[:, None]
    t2 = (hi[None] - o[:, None]) * inv[:, None]
    tmin = torch.minimum(t1, t2).amax(-1)
    tmax = torch.maximum(t1, t2).amin(-1)
    return (tmax >= tmin.clamp(min=0.0))


def _moller_trumbore(o, d, v0, e1, e2, eps: float = 1e-9):
    p = torch.cross(d, e2, dim=-1)
    det = (e1 * p).sum(-1)
    ok = det.abs() > eps
    inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
    s = o - v0
    u = (s * p).sum(-1) * inv
    q = torch.cross(s, e1, dim=-1)
    v = (d * q).sum(-1) * inv
    t = (e2 * q).sum(-1) * inv
    ok = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-6)
    return t, u, v, ok
