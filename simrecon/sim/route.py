"""The route: the path the ego should drive, as a timed polyline (by default the scenario's ego path, i.e. the
logged one with the scenario's ego edits), with arc-length projection, progress, look-ahead points, the logged
speed, and the logged height and tilt of the road under any point of it."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..data.geometry import rot_z
from .dynamics import heading, offset_along

SAMPLE_DT = 0.05  # s between route samples (the logged ego entries are added: interpolation is linear between)


class Route:
    """A polyline of the reference point's (the rear axle's) logged positions, with their times and poses."""

    def __init__(self, times: np.ndarray, poses: np.ndarray, rear_axle_x: float = 0.0):
        """``times`` [K] increasing seconds, ``poses`` [K, 4, 4] vehicle-to-world; the polyline follows the rear
        axle, ``rear_axle_x`` metres along the vehicle's x axis."""
        self.times = np.asarray(times, dtype=float)
        self.poses = np.asarray(poses, dtype=float)
        axle = np.stack([offset_along(p, rear_axle_x) for p in self.poses])
        self.points = axle[:, :2, 3]
        steps = np.linalg.norm(np.diff(self.points, axis=0), axis=1)
        self.s = np.concatenate([[0.0], np.cumsum(steps)])  # arc length at each sample, non-decreasing
        keep = np.concatenate([[True], steps > 1e-6])
        self._pts, self._s = self.points[keep], self.s[keep]  # distinct points for the geometry
        self._tilt = np.stack([rot_z(-heading(p)) @ p[:3, :3] for p in self.poses])

    @classmethod
    def from_fn(cls, pose_fn: Callable[[float], np.ndarray], t0: float, t1: float, extra_times=(),
                rear_axle_x: float = 0.0) -> "Route":
        """Sample ``pose_fn`` (vehicle-to-world at t) over [t0, t1] every SAMPLE_DT and at ``extra_times``."""
        n = max(2, int(math.ceil((t1 - t0) / SAMPLE_DT)) + 1)
        times = np.linspace(t0, t1, n)
        extra = np.asarray([t for t in extra_times if t0 < t < t1], dtype=float)
        times = np.unique(np.concatenate([times, extra]))
        return cls(times, np.stack([pose_fn(float(t)) for t in times]), rear_axle_x)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def project(self, xy) -> tuple[float, float]:
        """(arc length s, signed lateral offset, + left) of the point on the route nearest ``xy``; beyond the
        ends the route continues straight, so s may be < 0 or > length."""
        p = np.asarray(xy, dtype=float)
        if len(self._pts) < 2:
            return 0.0, 0.0
        a, b = self._pts[:-1], self._pts[1:]
        d = b - a
        seg = np.linalg.norm(d, axis=1)
        t = np.sum((p - a) * d, axis=1) / (seg * seg)
        lo = np.where(np.arange(len(a)) == 0, -np.inf, 0.0)
        hi = np.where(np.arange(len(a)) == len(a) - 1, np.inf, 1.0)
        t = np.clip(t, lo, hi)
        near = a + t[:, None] * d
        i = int(np.argmin(np.linalg.norm(p - near, axis=1)))
        rel = p - near[i]
        lateral = (d[i, 0] * rel[1] - d[i, 1] * rel[0]) / seg[i]
        return float(self._s[i] + t[i] * seg[i]), float(lateral)

    def point_at(self, s: float) -> np.ndarray:
        """The route point [2] at arc length ``s`` (continued straight beyond the ends)."""
        if len(self._pts) < 2:
            return self._pts[0].copy()
        i = int(np.clip(np.searchsorted(self._s, s, side="right") - 1, 0, len(self._s) - 2))
        a, b = self._pts[i], self._pts[i + 1]
        return a + (s - self._s[i]) / (self._s[i + 1] - self._s[i]) * (b - a)

    def heading_at(self, s: float) -> float:
        """The route's direction (rad) at arc length ``s``."""
        if len(self._pts) < 2:
            return heading(self.poses[0])
        i = int(np.clip(np.searchsorted(self._s, s, side="right") - 1, 0, len(self._s) - 2))
        d = self._pts[i + 1] - self._pts[i]
        return math.atan2(d[1], d[0])

    def s_at_time(self, t: float) -> float:
        """How far along the route the logged ego was at ``t`` (held before the start and after the end)."""
        return float(np.interp(t, self.times, self.s))

    def speed_at_time(self, t: float) -> float:
        """The logged ego's speed along the route at ``t`` (m/s; of the sample interval holding ``t``; 0 for a
        route of one sample)."""
        if len(self.times) < 2:
            return 0.0
        i = int(np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2))
        return float((self.s[i + 1] - self.s[i]) / (self.times[i + 1] - self.times[i]))

    def mean_speed(self) -> float:
        span = float(self.times[-1] - self.times[0])
        return self.length / span if span > 0 else 0.0

    def ground_at(self, s: float) -> tuple[float, np.ndarray]:
        """(height of the logged vehicle frame's origin, its roll/pitch as a rotation [3, 3] relative to its
        heading) where the route is at arc length ``s``: z interpolated, tilt of the nearest sample."""
        z = float(np.interp(s, self.s, self.poses[:, 2, 3]))
        i = int(np.argmin(np.abs(self.s - s)))
        return z, self._tilt[i]

    def ahead(self, s: float, origin: np.ndarray, yaw: float, n: int, spacing: float) -> np.ndarray:
        """[n, 2]: route points at s + spacing, ..., s + n * spacing (clamped to the route's end) in the frame
        at ``origin`` [2] with heading ``yaw``."""
        ss = np.minimum(s + spacing * np.arange(1, n + 1), max(self.length, s))
        pts = np.stack([self.point_at(float(v)) for v in ss]) - origin
        c, sn = math.cos(yaw), math.sin(yaw)
        return np.stack([c * pts[:, 0] + sn * pts[:, 1], -sn * pts[:, 0] + c * pts[:, 1]], axis=1)
