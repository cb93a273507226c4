"""Marching cubes on radiance-field densities: actor fields in their box frame, the background in a region.

Pipeline (``extract_field``): sample the density on an isotropic grid (``resolution`` points along the
longest side) padded with one empty layer so surfaces close -> marching cubes (scikit-image) at a
density threshold -> keep the largest connected component (actors) or drop specks (background) ->
fill small holes -> decimate to ``target_faces`` -> orient faces outward -> bake a colour per vertex
by compositing the field along a short ray that enters the surface along the inward normal.

Threshold: densities are per normalised distance (world units / ``scale``, docs/reconstruction.md), so
a step of ``h`` metres has opacity ``1 - exp(-sigma * h / scale)``. The surface is where that opacity
reaches ``opacity`` (default 0.5): ``sigma = -ln(1 - opacity) * scale / h``. ``h`` is the voxel size, or
``step`` when that is larger: actors use their training sample spacing (the field box's mean extent over
``actor_samples``), since a field only learns to be opaque over the steps it was trained with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from .clean import clean_mesh
from .solid import fill_interior

DEFAULT_RESOLUTION = 128
DEFAULT_TARGET_FACES = 20000
MAX_GRID_POINTS = 64_000_000  # background regions: refuse grids that would not fit in memory


class DensityField(Protocol):
    """What extraction needs: ``forward(x [N, 3], dirs [N, 3]) -> (density [N], rgb [N, 3])`` in the
    field's own frame (an ``ActorField`` in its box frame), as ``__call__``."""

    def __call__(self, x: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class MeshData:
    """A coloured triangle mesh: vertices [V, 3] float32 (metres), faces [F, 3] int64 (outward
    counter-clockwise winding), colours [V, 3] uint8, and what it is (``meta``, written to the sidecar)."""

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    meta: dict = field(default_factory=dict)

    @property
    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corner."""
        return np.stack([self.vertices.min(0), self.vertices.max(0)])


class MirroredField:
    """``field`` made symmetric about the plane ``x[axis] = 0``: the denser of a point and its mirror image
    gives density and colour (the mirror image seen with the mirrored view direction)."""

    def __init__(self, field: DensityField, axis: int):
        self.field = field
        self.axis = axis

    def __call__(self, x: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flip = torch.ones(3, dtype=x.dtype, device=x.device)
        flip[self.axis] = -1
        s1, c1 = self.field(x, dirs)  # [N], [N, 3]
        s2, c2 = self.field(x * flip, dirs * flip)
        other = s2 > s1
        return torch.where(other, s2, s1), torch.where(other[:, None], c2, c1)


def density_threshold(step: float, scale: float, opacity: float = 0.5) -> float:
    """Density at which a step of ``step`` world units has opacity ``opacity`` (densities are per
    normalised distance, world / ``scale``)."""
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"opacity must be in (0, 1), got {opacity}")
    if step <= 0 or scale <= 0:
        raise ValueError(f"step and scale must be > 0, got {step} and {scale}")
    return -math.log(1.0 - opacity) * scale / step


def iso_level(voxel: float, threshold: float | None, scale: float, opacity: float,
              step: float | None) -> tuple[float, float]:
    """(step used, density iso-level) of an extraction with voxel size ``voxel``: ``threshold`` when given,
    else ``density_threshold`` over the larger of the voxel and ``step`` (see ``extract_field``)."""
    step_used = max(voxel, float(step)) if step is not None else voxel
    return step_used, density_threshold(step_used, scale, opacity) if threshold is None else float(threshold)


def grid_shape(lo: np.ndarray, hi: np.ndarray, resolution: int) -> tuple[tuple[int, int, int], float]:
    """Isotropic grid over [lo, hi]: ``resolution`` points along the longest side. Returns (shape, spacing)."""
    if resolution < 8:
        raise ValueError(f"resolution must be >= 8, got {resolution}")
    ext = np.asarray(hi, float) - np.asarray(lo, float)
    if np.any(ext <= 0):
        raise ValueError(f"empty region: min {list(lo)} is not below max {list(hi)}")
    h = float(ext.max()) / (resolution - 1)
    shape = tuple(int(max(2, math.ceil(e / h - 1e-6) + 1)) for e in ext)
    return shape, h  # type: ignore[return-value]


@torch.no_grad()
def sample_density(fn: Callable, lo: np.ndarray, shape: tuple[int, int, int], h: float,
                   chunk: int = 1 << 18, device: torch.device | str = "cpu") -> np.ndarray:
    """Density on the grid ``lo + h * (i, j, k)`` -> float32 [nx, ny, nz]."""
    axes = [torch.arange(n, dtype=torch.float32, device=device) * h + float(lo[i]) for i, n in enumerate(shape)]
    out = np.empty(shape, np.float32)
    flat = out.reshape(-1)
    nyz = shape[1] * shape[2]
    gy, gz = torch.meshgrid(axes[1], axes[2], indexing="ij")
    plane = torch.stack([gy.reshape(-1), gz.reshape(-1)], -1)  # [ny * nz, 2]
    rows = max(1, chunk // nyz)
    dirs = None
    for i0 in range(0, shape[0], rows):
        xs = axes[0][i0:i0 + rows]
        pts = torch.cat([xs.repeat_interleave(nyz)[:, None], plane.repeat(len(xs), 1)], -1)
        if dirs is None or dirs.shape[0] != pts.shape[0]:
            dirs = torch.zeros_like(pts)
            dirs[:, 2] = -1.0
        sigma = fn(pts, dirs)[0]
        flat[i0 * nyz:(i0 + len(xs)) * nyz] = sigma.float().cpu().numpy()
    return out


def marching_cubes(volume: np.ndarray, level: float, lo: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of ``volume`` (higher = inside) at ``level``; the volume is padded with one empty layer
    so surfaces are closed. Returns vertices [V, 3] in the grid's world frame and faces [F, 3]."""
    try:
        from skimage import measure
    except ImportError:
        raise ImportError("mesh extraction needs scikit-image: pip install 'simrecon[mesh]'") from None
    vol = np.pad(volume, 1, mode="constant", constant_values=0.0)
    if not np.isfinite(level) or vol.max() <= level:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64)
    verts, faces, _, _ = measure.marching_cubes(vol, level=level, spacing=(h, h, h), allow_degenerate=False)
    verts = verts - h + np.asarray(lo, dtype=np.float64)  # undo the padding layer
    return verts.astype(np.float32), faces.astype(np.int64)


@torch.no_grad()
def bake_colors(fn: Callable, vertices: np.ndarray, normals: np.ndarray, h: float, scale: float,
                samples: int = 8, chunk: int = 1 << 16, device: torch.device | str = "cpu") -> np.ndarray:
    """Per-vertex colour [V, 3] uint8: a short ray from 2 voxels outside to 2 voxels inside each vertex,
    looking along the inward normal, volume-composited (the field's colour where it becomes opaque)."""
    v = torch.as_tensor(np.asarray(vertices, np.float32), device=device)
    n = torch.as_tensor(np.asarray(normals, np.float32), device=device)
    n = n / n.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    offs = torch.linspace(2 * h, -2 * h, samples, device=device)  # outside -> inside
    delta = 4 * h / (samples - 1) / scale
    out = np.zeros((len(v), 3), np.uint8)
    per = max(1, chunk // samples)
    for s in range(0, len(v), per):
        vs, ns = v[s:s + per], n[s:s + per]
        m = len(vs)
        pts = vs[:, None] + ns[:, None] * offs[None, :, None]  # [m, S, 3]
        dirs = (-ns)[:, None].expand(m, samples, 3)
        sigma, rgb = fn(pts.reshape(-1, 3), dirs.reshape(-1, 3))
        sigma = sigma.float().view(m, samples)
        rgb = rgb.float().view(m, samples, 3)
        alpha = 1 - torch.exp(-sigma * delta)
        trans = torch.cumprod(torch.cat([torch.ones(m, 1, device=device), 1 - alpha[:, :-1] + 1e-10], 1), 1)
        w = alpha * trans
        ws = w.sum(1, keepdim=True)
        col = (w[..., None] * rgb).sum(1) / ws.clamp(min=1e-8)
        at_vertex = rgb[:, samples // 2]
        col = torch.where(ws > 1e-4, col, at_vertex)
        out[s:s + m] = (col.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    return out


def extract_field(fn: Callable, lo: np.ndarray, hi: np.ndarray, resolution: int = DEFAULT_RESOLUTION,
                  threshold: float | None = None, scale: float = 1.0, opacity: float = 0.5, step: float | None = None,
                  target_faces: int | None = DEFAULT_TARGET_FACES, keep: str = "largest",
                  device: torch.device | str = "cpu", chunk: int = 1 << 18, clip: tuple | None = None,
                  mirror_axis: int | None = None, solid: bool = False, timings: dict | None = None) -> MeshData:
    """Mesh of the field ``fn`` (``DensityField``) inside [lo, hi] (the field's frame).

    ``threshold``: the density iso-level; None uses ``density_threshold(step, scale, opacity)`` with ``step``
    the voxel size, or ``step`` when given and larger (e.g. the field's training sample spacing).
    ``keep``: "largest" (one connected component: an actor) or "all" (drop only specks: background).
    ``clip``: (lo [3], hi [3]) in the field's frame: density outside that box is ignored (actors: below the
    box bottom, i.e. the ground, or outside the tracked box).
    The grid is centred on [lo, hi] (it may reach past it by less than a voxel).
    Returns an empty MeshData (no faces) when nothing in the region reaches the threshold.
    """
    import time

    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    shape, h = grid_shape(lo, hi, resolution)
    lo = (lo + hi) / 2 - h * (np.asarray(shape) - 1) / 2
    if int(np.prod(shape)) > MAX_GRID_POINTS:
        raise ValueError(f"grid of {shape[0]}x{shape[1]}x{shape[2]} points is too large: lower the resolution "
                         f"or the region (at most {MAX_GRID_POINTS} points)")
    step_used, level = iso_level(h, threshold, scale, opacity, step)
    if mirror_axis is not None:
        if mirror_axis not in (0, 1, 2):
            raise ValueError(f"mirror_axis: expected 0, 1 or 2, got {mirror_axis!r}")
        centre = lo[mirror_axis] + h * (shape[mirror_axis] - 1) / 2  # of the grid, which is centred on [lo, hi]
        if abs(centre) > 1e-6 * max(1.0, abs(hi[mirror_axis])):
            raise ValueError(f"mirror_axis {mirror_axis}: the region must be centred on 0 on that axis, got "
                             f"[{lo[mirror_axis]}, {hi[mirror_axis]}]")
    t0 = time.perf_counter()
    vol = sample_density(fn, lo, shape, h, chunk=chunk, device=device)
    if mirror_axis is not None:  # the grid is centred on 0: a flip of the samples is the mirror image
        vol = np.maximum(vol, np.flip(vol, axis=mirror_axis))
        fn = MirroredField(fn, mirror_axis)  # colours baked from the denser side
    if clip is not None:
        for ax in range(3):
            c = lo[ax] + h * np.arange(shape[ax])
            out = (c < clip[0][ax]) | (c > clip[1][ax])
            idx = [slice(None)] * 3
            idx[ax] = out
            vol[tuple(idx)] = 0.0
    filled = fill_interior(vol, level) if solid else 0
    t1 = time.perf_counter()
    verts, faces = marching_cubes(vol, level, lo, h)
    t2 = time.perf_counter()
    verts, faces, normals = clean_mesh(verts, faces, keep=keep, target_faces=target_faces)
    t3 = time.perf_counter()
    colors = bake_colors(fn, verts, normals, h, scale, device=device) if len(verts) else np.zeros((0, 3), np.uint8)
    t4 = time.perf_counter()
    if timings is not None:
        timings.update(density=t1 - t0, marching_cubes=t2 - t1, clean=t3 - t2, colors=t4 - t3, total=t4 - t0)
    meta = {"grid": list(shape), "voxel_size": h, "step": step_used, "threshold": level, "opacity": opacity,
            "mirror_axis": mirror_axis, "filled_voxels": int(filled),
            "raw_peak_density": float(vol.max()) if vol.size else 0.0}
    return MeshData(verts.astype(np.float32), faces.astype(np.int64), colors, meta)
