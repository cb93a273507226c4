"""Bird's-eye-view geometry of the simulator: oriented boxes, their overlap and time to collision, and the
drivable area's tests (points in polygons, distance to polylines). Everything is 2D on the ground plane (x, y);
heights are ignored."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])


@dataclass(frozen=True)
class Box2D:
    """An oriented rectangle: centre [2] (m), heading ``yaw`` (rad, of its length axis), ``length`` and ``width``
    (m)."""

    center: np.ndarray
    yaw: float
    length: float
    width: float

    @classmethod
    def from_pose(cls, pose: np.ndarray, size) -> "Box2D":
        """The ground footprint of a box with box-to-world ``pose`` [4, 4] and ``size`` [length, width, ...]."""
        return cls(np.asarray(pose[:2, 3], dtype=float), math.atan2(pose[1, 0], pose[0, 0]), float(size[0]),
                   float(size[1]))

    def axes(self) -> np.ndarray:
        """[2, 2]: the unit length axis and the unit width axis."""
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return np.array([[c, s], [-s, c]])

    def corners(self) -> np.ndarray:
        """[4, 2] corners, counter-clockwise from front-left."""
        ax = self.axes()
        half = _SIGNS * np.array([self.length / 2, self.width / 2])
        return self.center + half[:, :1] * ax[0] + half[:, 1:] * ax[1]

    @property
    def radius(self) -> float:
        """Half the diagonal: no point of the box is farther from its centre."""
        return 0.5 * math.hypot(self.length, self.width)


def boxes_overlap(a: Box2D, b: Box2D) -> bool:
    """Whether two oriented boxes overlap with positive area (separating axis theorem; touching is not)."""
    if np.linalg.norm(a.center - b.center) >= a.radius + b.radius:
        return False
    ca, cb = a.corners(), b.corners()
    for axis in np.concatenate([a.axes(), b.axes()]):
        pa, pb = ca @ axis, cb @ axis
        if pa.max() <= pb.min() or pb.max() <= pa.min():
            return False
    return True


def time_to_collision(a: Box2D, va, b: Box2D, vb, horizon: float = math.inf) -> float:
    """Seconds until ``a`` moving at ``va`` [2] and ``b`` at ``vb`` [2] (m/s, constant, no rotation) first
    overlap: 0 when they overlap now, ``inf`` when they do not within ``horizon``. Exact (swept separating
    axes: the overlap on each axis is a time interval; the boxes overlap where all intervals do)."""
    rel = np.asarray(vb, dtype=float) - np.asarray(va, dtype=float)  # b's motion seen from a
    reach = a.radius + b.radius + float(np.linalg.norm(rel)) * min(horizon, 1e6)
    if np.linalg.norm(a.center - b.center) >= reach:
        return math.inf
    ca, cb = a.corners(), b.corners()
    t_in, t_out = -math.inf, math.inf
    for axis in np.concatenate([a.axes(), b.axes()]):
        pa, pb = ca @ axis, cb @ axis
        v = float(rel @ axis)
        lo, hi = pa.min() - pb.max(), pa.max() - pb.min()  # b's shift along the axis that overlaps a: (lo, hi)
        if abs(v) < 1e-12:
            if not (lo < 0.0 < hi):
                return math.inf
            continue
        t0, t1 = sorted((lo / v, hi / v))
        t_in, t_out = max(t_in, t0), min(t_out, t1)
        if t_in >= t_out:
            return math.inf
    if t_out <= 0.0:
        return math.inf  # they overlapped only in the past
    t = max(t_in, 0.0)
    return t if t <= horizon else math.inf


def point_in_polygon(points, polygon) -> np.ndarray:
    """bool [N]: which ``points`` [N, 2] lie inside the simple ``polygon`` [M, 2] (even-odd rule)."""
    p = np.atleast_2d(np.asarray(points, dtype=float))
    poly = np.asarray(polygon, dtype=float)
    x, y = p[:, :1], p[:, 1:2]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    crosses = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return np.sum(crosses & (x < x_at), axis=1) % 2 == 1


def segments_of(polyline) -> tuple[np.ndarray, np.ndarray]:
    """(starts [S, 2], ends [S, 2]) of a polyline [M, 2]'s segments, zero-length ones dropped."""
    pts = np.asarray(polyline, dtype=float).reshape(-1, 2)
    a, b = pts[:-1], pts[1:]
    keep = np.linalg.norm(b - a, axis=1) > 1e-9
    if len(pts) and not keep.any():  # a single point: one degenerate segment
        return pts[:1], pts[:1]
    return a[keep], b[keep]


def distance_to_segments(points, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """[N]: each point's distance to the nearest of the segments (starts [S, 2] -> ends [S, 2])."""
    p = np.atleast_2d(np.asarray(points, dtype=float))[:, None, :]
    d = ends - starts
    len2 = np.maximum(np.sum(d * d, axis=1), 1e-18)
    t = np.clip(np.sum((p - starts) * d, axis=2) / len2, 0.0, 1.0)
    nearest = starts + t[..., None] * d
    return np.min(np.linalg.norm(p - nearest, axis=2), axis=1)


def distance_to_polyline(points, polyline) -> np.ndarray:
    """[N]: each point's distance to a polyline [M, 2]."""
    return distance_to_segments(points, *segments_of(polyline))


def extend_polyline(polyline, length: float) -> np.ndarray:
    """The polyline [M, 2] continued straight by ``length`` metres beyond both ends (along its end segments)."""
    a, b = segments_of(polyline)
    pts = np.asarray(polyline, dtype=float).reshape(-1, 2)
    if length <= 0 or len(a) == 0 or np.allclose(a[0], b[0]):
        return pts
    d0 = (b[0] - a[0]) / np.linalg.norm(b[0] - a[0])
    d1 = (b[-1] - a[-1]) / np.linalg.norm(b[-1] - a[-1])
    return np.concatenate([[pts[0] - length * d0], pts, [pts[-1] + length * d1]])


@dataclass
class DrivableArea:
    """Where the ego may drive: within ``half_width`` metres of any corridor polyline, or inside any polygon."""

    corridors: list[np.ndarray]  # polylines [M, 2], world metres
    half_width: float  # m
    polygons: list[np.ndarray]  # simple polygons [K, 2], world metres

    def __post_init__(self) -> None:
        segs = [segments_of(c) for c in self.corridors if len(c)]
        self._starts = np.concatenate([s for s, _ in segs]) if segs else np.zeros((0, 2))
        self._ends = np.concatenate([e for _, e in segs]) if segs else np.zeros((0, 2))

    def contains(self, points) -> np.ndarray:
        """bool [N]: which points [N, 2] are drivable."""
        p = np.atleast_2d(np.asarray(points, dtype=float))
        inside = np.zeros(len(p), bool)
        if len(self._starts):
            inside |= distance_to_segments(p, self._starts, self._ends) <= self.half_width
        for poly in self.polygons:
            inside |= point_in_polygon(p, poly)
        return inside
