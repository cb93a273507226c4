"""KITTI text files shared by the odometry and tracking readers (calib, poses, velodyne .bin)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from ..geometry import make_pose
from ._common import ReaderError, floats, opencv_intrinsics, read_float_records
from ._lidar_layout import RawSweep

# The size of each known calib entry (rows x cols); unknown keys are kept as flat arrays.
CALIB_SHAPES = {
    "P0": (3, 4), "P1": (3, 4), "P2": (3, 4), "P3": (3, 4), "Tr": (3, 4), "R_rect": (3, 3), "R0_rect": (3, 3),
    "Tr_velo_cam": (3, 4), "Tr_velo_to_cam": (3, 4), "Tr_imu_velo": (3, 4), "Tr_imu_to_velo": (3, 4),
}
UNLABELLED_ORDER = ("P0", "P1", "P2", "P3", "Tr")


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """KITTI calib file: ``KEY[:] v1 v2 ...`` per line, or (odometry excerpts) bare rows P0, P1, ...

    Returns matrices shaped as in CALIB_SHAPES (3x4 projections, 3x3 R_rect, ...).
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ReaderError(path, "", "calibration file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReaderError(path, "", f"cannot read: {exc}") from None
    out: dict[str, np.ndarray] = {}
    unlabelled = 0
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words:
            continue
        head = words[0]
        try:
            float(head)
            is_number = True
        except ValueError:
            is_number = False
        if is_number:
            if unlabelled >= len(UNLABELLED_ORDER):
                raise ReaderError(path, f"line {n}", f"expected at most {len(UNLABELLED_ORDER)} unlabelled rows")
            key, values = UNLABELLED_ORDER[unlabelled], line
            unlabelled += 1
        else:
            key, values = head.rstrip(":"), line.split(None, 1)[1] if len(words) > 1 else ""
        shape = CALIB_SHAPES.get(key)
        if shape is None:
            vals = floats(values, tuple(range(1, 100)), path, key)
            out[key] = vals
            continue
        vals = floats(values, shape[0] * shape[1], path, key)
        out[key] = vals.reshape(shape)
    # common aliases
    for a, b in (("R0_rect", "R_rect"), ("Tr_velo_to_cam", "Tr_velo_cam"), ("Tr_imu_to_velo", "Tr_imu_velo")):
        if a in out and b not in out:
            out[b] = out[a]
    return out


def require(calib: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    if key not in calib:
        raise ReaderError(path, key, f"missing calibration entry (have: {', '.join(calib) or 'none'})")
    return calib[key]


def check_rotation(m: np.ndarray, path: Path, fld: str) -> None:
    """Refuse a 3x3 / 3x4 / 4x4 whose rotation part is not (close to) a proper rotation.

    KITTI text files round to 6-7 digits, so small errors are expected (and cleaned by ``clean_pose``);
    a zero or mirrored matrix would otherwise be silently replaced by some rotation.
    """
    rot = np.asarray(m, dtype=np.float64)[:3, :3]
    err = float(np.abs(rot @ rot.T - np.eye(3)).max())
    det = float(np.linalg.det(rot))
    if err > 1e-2 or det < 0.9:
        raise ReaderError(path, fld, f"expected a rotation (orthonormal, det +1) in the first 3 columns, got "
                                     f"orthonormality error {err:.2g} and det {det:.3g}")


def require_pose(calib: dict[str, np.ndarray], key: str, path: Path) -> np.ndarray:
    """Calibration entry ``key`` (3x3 or 3x4 rigid transform) as a clean 4x4, refusing non-rotations."""
    m = require(calib, key, path)
    check_rotation(m, path, key)
    return clean_pose(homogeneous(m))


def homogeneous(m: np.ndarray) -> np.ndarray:
    """3x4 or 3x3 -> 4x4."""
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def projection_camera(P: np.ndarray, w: int, h: int, path: Path, key: str):
    """Intrinsics and the camera's offset from rectified camera 0 for a rectified 3x4 projection P = K [I | t].

    Returns (Intrinsics, T_cam0_cami) with T mapping camera-i coordinates into camera-0 coordinates.
    """
    K = P[:, :3]
    if K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1.0) > 1e-6 or abs(K[1, 0]) > 1e-6 or abs(K[2, 0]) > 1e-6:
        raise ReaderError(path, key, "expected a rectified projection [[fx,0,cx,tx],[0,fy,cy,ty],[0,0,1,tz]]")
    t = np.linalg.solve(K, P[:, 3])  # p_cam_i = p_cam0 + t
    intr = opencv_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h)
    return intr, make_pose(np.eye(3), -t)


def read_poses(path: Path) -> np.ndarray:
    """KITTI poses file: one row-major 3x4 camera-to-world per line -> [N, 4, 4]."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise ReaderError(path, "", "poses file does not exist") from None
    out = np.tile(np.eye(4), (len(lines), 1, 1))
    for i, line in enumerate(lines):
        out[i, :3, :] = floats(line, 12, path, f"line {i + 1}").reshape(3, 4)
        check_rotation(out[i], path, f"line {i + 1}")
    if not len(out):
        raise ReaderError(path, "", "expected one 3x4 pose per line, the file is empty")
    return out


def velodyne_sweeps(files: dict[str, Path]) -> dict[str, Callable[[], RawSweep]]:
    """Output path -> loader of each velodyne .bin (points stored beam after beam: KITTI's scan order)."""
    return {rel: (lambda p=path: RawSweep(read_velodyne(p))) for rel, path in files.items()}


def read_velodyne(path: Path) -> np.ndarray:
    """KITTI velodyne .bin: float32 [N, 4] x, y, z, reflectance (0..1) in the velodyne frame."""
    pts = read_float_records(path, 4, "x, y, z, reflectance")
    if not np.all(np.isfinite(pts)):
        raise ReaderError(path, "points", f"expected finite values, got NaN or inf in record "
                                          f"{int(np.flatnonzero(~np.isfinite(pts).all(axis=1))[0])}")
    pts[:, 3] = np.clip(pts[:, 3], 0.0, 1.0)
    return pts


def orthonormalize(rot: np.ndarray) -> np.ndarray:
    """Nearest rotation (KITTI text files round matrices to 6-7 digits)."""
    u, _, vt = np.linalg.svd(rot)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def clean_pose(pose: np.ndarray) -> np.ndarray:
    out = pose.copy()
    out[:3, :3] = orthonormalize(pose[:3, :3])
    out[3] = [0, 0, 0, 1]
    return out
