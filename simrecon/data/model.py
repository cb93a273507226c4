"""Typed in-memory model of a drive log (format v1, docs/drive-log.md).

Everything is plain numpy and dataclasses so that every layer can use it without torch.
Poses are float64 4x4 matrices; camera poses use OpenGL camera axes (x right, y up, looking -z).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .geometry import matrix_to_quat, quat_to_matrix, slerp
from .lidar_model import LidarSensor, SweepLayout
from .shutter import RollingShutter

CAMERA_MODELS = ("OPENCV", "PINHOLE", "OPENCV_FISHEYE")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h") + DISTORTION_KEYS


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels; (cx, cy) with pixel centres at (u + 0.5, v + 0.5)."""

    fl_x: float
    fl_y: float
    cx: float
    cy: float
    w: int
    h: int
    model: str = "OPENCV"
    k1: float = 0.0
    k2: float = 0.0
    k3: float = 0.0
    k4: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @property
    def K(self) -> np.ndarray:
        """3x3 calibration matrix (nerfstudio pixel convention)."""
        return np.array([[self.fl_x, 0.0, self.cx], [0.0, self.fl_y, self.cy], [0.0, 0.0, 1.0]])

    @property
    def has_distortion(self) -> bool:
        return any(getattr(self, k) != 0.0 for k in DISTORTION_KEYS)

    def scaled(self, factor: float) -> "Intrinsics":
        """Intrinsics of the same camera with the image resized by ``factor``."""
        return replace(
            self,
            fl_x=self.fl_x * factor,
            fl_y=self.fl_y * factor,
            cx=self.cx * factor,
            cy=self.cy * factor,
            w=int(round(self.w * factor)),
            h=int(round(self.h * factor)),
        )

    def to_json(self) -> dict:
        out = {"camera_model": self.model, "fl_x": self.fl_x, "fl_y": self.fl_y, "cx": self.cx, "cy": self.cy}
        out.update({"w": int(self.w), "h": int(self.h)})
        out.update({k: getattr(self, k) for k in DISTORTION_KEYS if getattr(self, k) != 0.0})
        return out

    def _distort(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.has_distortion or self.model == "PINHOLE":
            return x, y
        r2 = x * x + y * y
        if self.model == "OPENCV_FISHEYE":
            r = np.sqrt(r2)
            theta = np.arctan(r)
            t2 = theta * theta
            theta_d = theta * (1 + self.k1 * t2 + self.k2 * t2**2 + self.k3 * t2**3 + self.k4 * t2**4)
            scale = np.where(r > 1e-12, theta_d / np.maximum(r, 1e-12), 1.0)
            return x * scale, y * scale
        radial = 1 + self.k1 * r2 + self.k2 * r2**2 + self.k3 * r2**3
        xd = x * radial + 2 * self.p1 * x * y + self.p2 * (r2 + 2 * x * x)
        yd = y * radial + self.p1 * (r2 + 2 * y * y) + 2 * self.p2 * x * y
        return xd, yd

    def project(self, points_cam_gl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Points [N, 3] in OpenGL camera axes -> pixel coordinates [N, 2] and depth along the view axis [N].

        Depth is the distance in front of the camera (-z); points behind it get depth <= 0 and
        meaningless pixels, so callers filter on ``depth > 0``.
        """
        depth = -points_cam_gl[:, 2]
        safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
        x = points_cam_gl[:, 0] / safe
        y = -points_cam_gl[:, 1] / safe  # OpenGL y up -> image v down
        x, y = self._distort(x, y)
        uv = np.stack([self.fl_x * x + self.cx, self.fl_y * y + self.cy], axis=-1)
        return uv, depth

    def pixel_rays(self, stride: int = 1) -> np.ndarray:
        """Unit ray directions [H/stride, W/stride, 3] through pixel centres, OpenGL camera axes.

        Distortion is ignored (exact for PINHOLE and undistorted images).
        """
        u = np.arange(0, self.w, stride) + 0.5
        v = np.arange(0, self.h, stride) + 0.5
        uu, vv = np.meshgrid(u, v)
        d = np.stack([(uu - self.cx) / self.fl_x, -(vv - self.cy) / self.fl_y, -np.ones_like(uu)], axis=-1)
        return d / np.linalg.norm(d, axis=-1, keepdims=True)


@dataclass
class Frame:
    """One camera image: where it is, when it was taken and with which camera."""

    file_path: str  # relative to the log folder
    c2w: np.ndarray  # [4, 4] camera-to-world, OpenGL camera axes
    intrinsics: Intrinsics
    camera: str = "camera"
    timestamp: float = 0.0
    mask_path: str | None = None
    extra: dict = field(default_factory=dict)  # unknown keys, kept on round trips
    rolling_shutter: RollingShutter | None = None  # v1.2: None for a global shutter (or one the log does not give)

    def project(self, points_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points [N, 3] -> pixels [N, 2] and depth [N] (see Intrinsics.project)."""
        w2c = np.linalg.inv(self.c2w)
        cam = points_world @ w2c[:3, :3].T + w2c[:3, 3]
        return self.intrinsics.project(cam)


@dataclass
class LidarSweep:
    """One lidar sweep; points are stored in the sensor frame."""

    file_path: str
    s2w: np.ndarray  # [4, 4] sensor-to-world
    timestamp: float
    sensor: str = "lidar"
    extra: dict = field(default_factory=dict)
    index_path: str | None = None  # v1.1: int32 [N, 2] beam and column of each point (docs/drive-log.md)
    time_path: str | None = None  # v1.1: float32 [N] seconds after ``timestamp`` at which each point was measured

    def load_layout(self, root: Path) -> SweepLayout | None:
        """Each point's beam, column and (where recorded) time; None when the sweep has no ``index_path``."""
        from .lidar_io import points_in, read_points, read_sidecar

        if self.index_path is None:
            return None
        n = points_in(Path(root) / self.file_path)
        n = len(read_points(Path(root) / self.file_path)) if n is None else n
        idx = read_sidecar(Path(root) / self.index_path, "index_path", n)
        times = read_sidecar(Path(root) / self.time_path, "time_path", n) if self.time_path else None
        return SweepLayout(idx[:, 0].copy(), idx[:, 1].copy(), times)

    def load(self, root: Path) -> np.ndarray:
        """Points [N, 4] float32 (x, y, z, intensity) in the sensor frame; intensity 0 when absent."""
        from .lidar_io import read_points

        pts = read_points(Path(root) / self.file_path)
        if pts.shape[1] == 3:
            pts = np.concatenate([pts, np.zeros((pts.shape[0], 1), np.float32)], axis=1)
        return pts

    def load_world(self, root: Path) -> np.ndarray:
        """Points [N, 3] in the world frame."""
        pts = self.load(root)[:, :3].astype(np.float64)
        return pts @ self.s2w[:3, :3].T + self.s2w[:3, 3]


@dataclass
class Track:
    """Timestamped rigid poses; the pose between entries interpolates (lerp translation, slerp rotation)."""

    timestamps: np.ndarray  # [T] strictly increasing
    poses: np.ndarray  # [T, 4, 4]

    def __post_init__(self) -> None:
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64).reshape(-1)
        self.poses = np.asarray(self.poses, dtype=np.float64).reshape(-1, 4, 4)
        self._quats = matrix_to_quat(self.poses[:, :3, :3]) if len(self.poses) else np.zeros((0, 4))

    def __len__(self) -> int:
        return len(self.timestamps)

    @property
    def span(self) -> tuple[float, float]:
        return float(self.timestamps[0]), float(self.timestamps[-1])

    def poses_at(self, times: np.ndarray, hold: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Interpolated poses [M, 4, 4] and a validity mask [M] for query times [M].

        Times outside the track are invalid (the actor is absent) unless ``hold`` is set, which
        clamps to the first/last pose (used for static actors and ego poses).
        """
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        ts = self.timestamps
        if len(ts) == 1:
            valid = np.ones_like(times, bool) if hold else np.isclose(times, ts[0], rtol=0, atol=1e-9)
            return np.repeat(self.poses[:1], len(times), axis=0), valid
        eps = 1e-9
        valid = (times >= ts[0] - eps) & (times <= ts[-1] + eps)
        if hold:
            valid = np.ones_like(valid)
        tq = np.clip(times, ts[0], ts[-1])
        i1 = np.clip(np.searchsorted(ts, tq, side="right"), 1, len(ts) - 1)
        i0 = i1 - 1
        alpha = (tq - ts[i0]) / (ts[i1] - ts[i0])
        out = np.tile(np.eye(4), (len(times), 1, 1))
        out[:, :3, 3] = (1 - alpha)[:, None] * self.poses[i0, :3, 3] + alpha[:, None] * self.poses[i1, :3, 3]
        out[:, :3, :3] = quat_to_matrix(slerp(self._quats[i0], self._quats[i1], alpha))
        return out, valid

    def pose_at(self, time: float, hold: bool = False) -> np.ndarray | None:
        """Pose [4, 4] at ``time``, or None where the track does not cover it."""
        poses, valid = self.poses_at(np.array([time]), hold=hold)
        return poses[0] if valid[0] else None

    def to_json(self) -> list[dict]:
        return [
            {"timestamp": float(t), "transform_matrix": p.tolist()} for t, p in zip(self.timestamps, self.poses)
        ]


@dataclass
class Actor:
    """A rigid tracked object; its box frame has x forward, y left, z up, origin at the box centre."""

    id: str
    cls: str
    size: np.ndarray  # [3] length (x), width (y), height (z), metres
    track: Track  # box-to-world poses
    static: bool = False
    extra: dict = field(default_factory=dict)

    def pose_at(self, time: float) -> np.ndarray | None:
        """Box-to-world [4, 4] at ``time``, or None when the actor is absent then."""
        return self.track.pose_at(time, hold=self.static)

    def corners_at(self, time: float) -> np.ndarray | None:
        """The box's 8 corners [8, 3] in world at ``time``, or None when absent."""
        pose = self.pose_at(time)
        if pose is None:
            return None
        signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
        local = signs * (np.asarray(self.size) / 2.0)
        return local @ pose[:3, :3].T + pose[:3, 3]


@dataclass
class DriveLog:
    """A loaded (and validated) drive log. ``root`` is the folder that paths are relative to."""

    root: Path
    frames: list[Frame]
    lidar: list[LidarSweep] = field(default_factory=list)
    actors: list[Actor] = field(default_factory=list)
    ego: Track | None = None  # vehicle-to-world poses
    version: int | None = 1
    world_up: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, 1.0]))
    extra: dict = field(default_factory=dict)  # unknown top-level keys, kept on round trips
    lidar_sensors: dict[str, LidarSensor] = field(default_factory=dict)  # v1.1: sensor name -> its model

    @property
    def cameras(self) -> dict[str, list[Frame]]:
        """Frames grouped by camera name, each list in time order."""
        out: dict[str, list[Frame]] = {}
        for f in self.frames:
            out.setdefault(f.camera, []).append(f)
        for frames in out.values():
            frames.sort(key=lambda f: f.timestamp)
        return out

    @property
    def time_span(self) -> tuple[float, float]:
        """(first, last) timestamp over frames, lidar and ego."""
        times = [f.timestamp for f in self.frames] + [s.timestamp for s in self.lidar]
        if self.ego is not None and len(self.ego):
            times += list(self.ego.span)
        return (min(times), max(times)) if times else (0.0, 0.0)

    def actor(self, actor_id: str) -> Actor:
        for a in self.actors:
            if a.id == actor_id:
                return a
        known = ", ".join(a.id for a in self.actors) or "none"
        raise KeyError(f"no actor {actor_id!r} in {self.root} (actors: {known})")

    def summary(self) -> str:
        """One line: what is in the log."""
        t0, t1 = self.time_span
        cams = self.cameras
        return (
            f"{len(self.frames)} frames from {len(cams)} camera(s), {len(self.lidar)} lidar sweeps, "
            f"{len(self.actors)} actors, {0 if self.ego is None else len(self.ego)} ego poses, "
            f"{t1 - t0:.2f} s"
        )
