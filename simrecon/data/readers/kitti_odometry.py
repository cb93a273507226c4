"""KITTI odometry sequences: ``calib.txt``, ``poses.txt`` (or ``../../poses/<seq>.txt``), image folders.

KITTI's ground-truth poses are camera-0 (rectified left grey camera, OpenCV axes: x right, y down,
z forward) to a world that is camera 0 at frame 0. That world has y down, so this reader rotates it
to the drive-log convention: world x = camera-0 z (forward at frame 0), world y = -camera-0 x (left),
world z = -camera-0 y (up). The origin stays at camera 0 at frame 0 (about 1.65 m above the road).
Image folders: ``image_0``/``image_l`` (P0), ``image_1``/``image_r`` (P1), ``image_2`` (P2),
``image_3`` (P3); the camera name is the folder name. ``velodyne/*.bin`` is converted when the calib
has ``Tr`` (velodyne -> camera 0), with a v1.1 sensor model estimated from the files' scan order.
Timestamps come from ``times.txt``, else 10 Hz from frame 0.
The ego (vehicle) pose is camera 0 with its axes turned to x forward, y left, z up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import opencv_to_opengl
from ..model import Frame, LidarSweep, Track
from ._common import (
    Conversion,
    ReaderError,
    check_cameras,
    finish_log,
    floats,
    image_size,
    select_indices,
)
from ._lidar_layout import attach_layouts
from .kitti_common import (
    clean_pose,
    homogeneous,
    projection_camera,
    read_calib,
    read_poses,
    require,
    require_pose,
    velodyne_sweeps,
)

# camera-0 axes (x right, y down, z forward) -> world (x forward, y left, z up)
R_WORLD_FROM_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
T_WORLD_FROM_CAM = homogeneous(R_WORLD_FROM_CAM)

CAMERA_FOLDERS = {"image_0": "P0", "image_l": "P0", "image_1": "P1", "image_r": "P1", "image_2": "P2",
                  "image_3": "P3"}
_SUFFIXES = (".png", ".jpg", ".jpeg")


def _find_poses(src: Path) -> Path:
    for cand in (src / "poses.txt", src.parent.parent / "poses" / f"{src.name}.txt", src / f"{src.name}.txt"):
        if cand.is_file():
            return cand
    raise ReaderError(src / "poses.txt", "", "expected ground-truth poses in poses.txt (or ../../poses/<sequence>.txt)")


def _image(folder: Path, index: int) -> Path | None:
    for suf in _SUFFIXES:
        p = folder / f"{index:06d}{suf}"
        if p.is_file():
            return p
    return None


def read_times(path: Path, n: int) -> np.ndarray:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) < n:
        raise ReaderError(path, "", f"expected at least {n} timestamps (one per pose), got {len(lines)}")
    return np.array([floats(ln, 1, path, f"line {i + 1}")[0] for i, ln in enumerate(lines[:n])])


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    if not src.is_dir():
        raise ReaderError(src, "", "expected a KITTI odometry sequence folder (calib.txt, poses.txt, image_*/)")
    calib_path = src / "calib.txt"
    calib = read_calib(calib_path)
    poses_path = _find_poses(src)
    poses = read_poses(poses_path)
    n = len(poses)
    times = read_times(src / "times.txt", n) if (src / "times.txt").is_file() else np.arange(n) * 0.1

    folders = [name for name in CAMERA_FOLDERS if (src / name).is_dir()]
    if not folders:
        raise ReaderError(src, "image_0", f"expected an image folder ({', '.join(CAMERA_FOLDERS)})")
    folders = check_cameras(cameras, folders, src)
    indices = select_indices(n, frames)
    if not indices:
        raise ReaderError(src, "frames", f"the selection is empty (the sequence has {n} poses)")

    conv_images: dict[str, Path | bytes] = {}
    out_frames: list[Frame] = []
    warnings: list[str] = []
    world_poses = {i: T_WORLD_FROM_CAM @ clean_pose(poses[i]) for i in indices}
    for folder in folders:
        key = CAMERA_FOLDERS[folder]
        P = require(calib, key, calib_path)
        first = next((p for p in (_image(src / folder, i) for i in indices) if p is not None), None)
        if first is None:
            raise ReaderError(src / folder, "", f"no image for frames {indices[0]}..{indices[-1]}")
        w, h = image_size(first)
        intr, cam0_from_cam = projection_camera(P, w, h, calib_path, key)
        for i in indices:
            img = _image(src / folder, i)
            if img is None:
                msg = f"{src / folder}: frame {i}: image {i:06d}.png does not exist"
                if skip_missing:
                    warnings.append(msg + ", skipped")
                    continue
                raise ReaderError(src / folder, f"frame {i}", f"image {i:06d}.png does not exist "
                                                             "(use --skip-missing to skip it)")
            rel = f"images/{folder}/{img.name}"
            conv_images[rel] = img
            c2w = opencv_to_opengl(world_poses[i] @ cam0_from_cam)
            out_frames.append(Frame(rel, c2w, intr, folder, float(times[i])))

    lidar: list[LidarSweep] = []
    lidar_files = {}
    velo = src / "velodyne"
    if velo.is_dir():
        if "Tr" not in calib:
            warnings.append(f"{calib_path}: Tr: missing (velodyne -> camera 0), velodyne/ not converted")
        else:
            cam0_from_velo = require_pose(calib, "Tr", calib_path)
            for i in indices:
                b = velo / f"{i:06d}.bin"
                if not b.is_file():
                    continue
                rel = f"lidar/velodyne/{i:06d}.npy"
                lidar.append(LidarSweep(rel, world_poses[i] @ cam0_from_velo, float(times[i]), "velodyne"))
                lidar_files[rel] = b

    ego_poses = np.stack([world_poses[i] @ T_WORLD_FROM_CAM.T for i in indices])
    ego = Track(np.array([times[i] for i in indices]), ego_poses)
    t0 = float(times[indices[0]])
    log = finish_log("kitti-odometry", src, out_frames, lidar, [], ego, t0=t0 if t0 != 0 else None,
                     extra={"world": "camera 0 at frame 0, rotated to x forward, y left, z up"})
    conv = Conversion(log, conv_images, {})
    attach_layouts(conv, velodyne_sweeps(lidar_files), scan_order=True)
    for w in warnings:
        conv.warn(w)
    return conv
