"""KITTI tracking sequences (``training`` or ``testing`` split folder, one sequence).

Layout: ``calib/<seq>.txt`` (``P0``..``P3``, ``R_rect``, ``Tr_velo_cam``, ``Tr_imu_velo``; a ':' after
a key is optional), ``oxts/<seq>.txt`` (30 fields per frame), ``image_02/<seq>/%06d.png`` (and
``image_03``, ``image_00``, ``image_01``), ``velodyne/<seq>/%06d.bin``, ``label_02/<seq>.txt``.
SRC is the split folder when it holds one sequence, or ``<split>/<seq>`` (that path need not exist).

Ego pose (IMU, x forward, y left, z up) from oxts as in the KITTI devkit / pykitti: Mercator projection
with scale cos(lat of the first packet), R = Rz(yaw) Ry(pitch) Rx(roll); the world is east-north-up
shifted so that the first converted frame's IMU is the origin. Rectified camera 0:
T_w_rect = T_w_imu inv(Tr_imu_velo) inv(Tr_velo_cam) inv(R_rect); camera i = rectified camera 0
moved by P_i's baseline. Labels (bottom centre x y z and rotation_y in rectified camera 0, h w l) become
box-to-world poses: centre raised by h/2, box x along the heading (l), z up. DontCare is dropped.
Frames are 10 Hz; frames without any image are skipped with one warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import invert_pose, make_pose, opencv_to_opengl, rot_x, rot_y, rot_z
from ..model import Frame, LidarSweep, Track
from ._common import (
    ActorBuilder,
    Conversion,
    ReaderError,
    build_actors,
    check_cameras,
    finish_log,
    floats,
    image_size,
    map_class,
    select_indices,
)
from ._lidar_layout import attach_layouts
from .kitti_common import (
    projection_camera,
    read_calib,
    require,
    require_pose,
    velodyne_sweeps,
)

CAMERAS = {"image_02": "P2", "image_03": "P3", "image_00": "P0", "image_01": "P1"}
EARTH_RADIUS = 6378137.0


SEQUENCE_DIRS = ("calib", "oxts", "label_02", "image_02", "image_03", "image_00", "image_01", "velodyne")


def _is_split(path: Path) -> bool:
    return path.is_dir() and any((path / d).is_dir() for d in SEQUENCE_DIRS)


def _sequences(split: Path) -> list[str]:
    """Sequence names found in any of the split's folders (calib/<seq>.txt, image_02/<seq>/, ...)."""
    names: set[str] = set()
    for d in ("calib", "oxts", "label_02"):
        names |= {p.stem for p in (split / d).glob("*.txt")}
    for d in ("image_02", "image_03", "image_00", "image_01", "velodyne"):
        if (split / d).is_dir():
            names |= {p.name for p in (split / d).iterdir() if p.is_dir()}
    return sorted(names)


def _locate(src: Path) -> tuple[Path, str]:
    if _is_split(src):
        seqs = _sequences(src)
        if len(seqs) == 1:
            return src, seqs[0]
        if not seqs:
            raise ReaderError(src / "calib", "", "expected a KITTI tracking split folder with calib/<seq>.txt, "
                                                 "oxts/<seq>.txt and image_02/<seq>/")
        raise ReaderError(src, "calib", f"expected one sequence, found {len(seqs)}: pass {src}/<sequence> "
                                        f"({', '.join(seqs[:10])}{'...' if len(seqs) > 10 else ''})")
    # SRC = <split>/<seq> (need not exist) or <split>/image_02/<seq>
    for split in (src.parent, src.parent.parent):
        if _is_split(split) and src.name in _sequences(split):
            return split, src.name
    raise ReaderError(src, "", "expected a KITTI tracking split folder (calib/, oxts/, image_02/, ...) "
                               "or <split>/<sequence>")


def oxts_poses(path: Path) -> np.ndarray:
    """IMU-to-world [N, 4, 4] per oxts line (pykitti's Mercator convention, un-shifted)."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except FileNotFoundError:
        raise ReaderError(path, "", "oxts file does not exist") from None
    if not lines:
        raise ReaderError(path, "", "expected one 30-field oxts record per frame, the file is empty")
    vals = np.stack([floats(ln, 30, path, f"line {i + 1}") for i, ln in enumerate(lines)])
    lat, lon, alt, roll, pitch, yaw = (vals[:, k] for k in range(6))
    scale = math.cos(lat[0] * math.pi / 180.0)
    out = np.tile(np.eye(4), (len(vals), 1, 1))
    out[:, 0, 3] = scale * lon * math.pi * EARTH_RADIUS / 180.0
    out[:, 1, 3] = scale * EARTH_RADIUS * np.log(np.tan((90.0 + lat) * math.pi / 360.0))
    out[:, 2, 3] = alt
    for i in range(len(vals)):
        out[i, :3, :3] = rot_z(yaw[i]) @ rot_y(pitch[i]) @ rot_x(roll[i])
    return out


def box_in_rect(x: float, y: float, z: float, h: float, ry: float) -> np.ndarray:
    """Box-to-rectified-camera pose of a KITTI label (bottom centre x y z, height h, rotation_y ry)."""
    c, s = math.cos(ry), math.sin(ry)
    # columns: box x (heading, along l), box y (left), box z (up = -camera y)
    rot = np.array([[c, s, 0.0], [0.0, 0.0, -1.0], [-s, c, 0.0]])
    return make_pose(rot, np.array([x, y - h / 2.0, z]))


def read_labels(path: Path) -> list[tuple[int, str, str, np.ndarray, np.ndarray]]:
    """(frame, track id, type, box-to-rect pose, size [l, w, h]) per labelled object (DontCare dropped)."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) not in (17, 18):
            raise ReaderError(path, f"line {n}", f"expected 17 fields (frame track_id type truncated occluded alpha "
                                                f"x1 y1 x2 y2 h w l x y z rotation_y), got {len(words)}")
        if words[2] == "DontCare" or words[1] == "-1":
            continue
        try:
            frame, tid = int(words[0]), words[1]
            h, w, length, x, y, z, ry = (float(v) for v in words[10:17])
        except ValueError:
            raise ReaderError(path, f"line {n}", "expected integer frame and numeric box fields") from None
        out.append((frame, tid, words[2], box_in_rect(x, y, z, h, ry), np.array([length, w, h])))
    return out


@dataclass
class _Sequence:
    """One sequence of a split: its calibration (rectified camera 0 and velodyne to IMU) and IMU poses."""

    split: Path
    seq: str
    calib_path: Path
    calib: dict[str, np.ndarray]
    imu2w: np.ndarray
    imu_from_rect: np.ndarray
    imu_from_velo: np.ndarray

    def image(self, cam: str, i: int) -> Path | None:
        for suf in (".png", ".jpg"):
            p = self.split / cam / self.seq / f"{i:06d}{suf}"
            if p.is_file():
                return p
        return None


@dataclass
class _Selection:
    """The cameras to convert and the selected frames that have an image in any of them (10 Hz times)."""

    cams: list[str]
    frames: list[int]
    times: dict[int, float]


@dataclass
class _CameraFrames:
    frames: list[Frame] = field(default_factory=list)
    images: dict[str, Path | bytes] = field(default_factory=dict)


@dataclass
class _Velodyne:
    sweeps: list[LidarSweep] = field(default_factory=list)
    files: dict = field(default_factory=dict)


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    sq = _open_sequence(src)
    warnings: list[str] = []
    sel = _select(sq, cameras, frames, warnings)
    out = _CameraFrames()
    for cam in sel.cams:
        _add_camera(sq, sel, cam, skip_missing, warnings, out)
    velodyne = _velodyne(sq, sel)
    actors = _actors(sq, sel)
    ego = Track(np.array([sel.times[i] for i in sel.frames]), np.stack([sq.imu2w[i] for i in sel.frames]))
    offset = sq.imu2w[sel.frames[0]][:3, 3].copy()
    log = finish_log("kitti-tracking", sq.split / sq.seq, out.frames, velodyne.sweeps, build_actors(actors), ego,
                     offset=offset, extra={"sequence": sq.seq, "world": "east-north-up (Mercator, pykitti), origin at "
                                                                       "the first converted frame's IMU"})
    conv = Conversion(log, out.images, {})
    attach_layouts(conv, velodyne_sweeps(velodyne.files), scan_order=True)
    for w in warnings:
        conv.warn(w)
    return conv


def _open_sequence(src: Path) -> _Sequence:
    split, seq = _locate(src)
    calib_path = split / "calib" / f"{seq}.txt"
    calib = read_calib(calib_path)
    imu2w = oxts_poses(split / "oxts" / f"{seq}.txt")
    R_rect = require_pose(calib, "R_rect", calib_path)
    velo_from_imu = require_pose(calib, "Tr_imu_velo", calib_path)
    cam_from_velo = require_pose(calib, "Tr_velo_cam", calib_path)
    imu_from_rect = invert_pose(velo_from_imu) @ invert_pose(cam_from_velo) @ invert_pose(R_rect)
    imu_from_velo = invert_pose(velo_from_imu)
    return _Sequence(split, seq, calib_path, calib, imu2w, imu_from_rect, imu_from_velo)


def _select(sq: _Sequence, cameras: list[str] | None, frames: slice, warnings: list[str]) -> _Selection:
    """The cameras, then the ``--frames`` selection less the frames without any image (one warning)."""
    split, seq = sq.split, sq.seq
    available = [c for c in CAMERAS if (split / c / seq).is_dir()]
    if not available:
        raise ReaderError(split, "image_02", f"expected an image folder image_02/{seq}/")
    cams = check_cameras(cameras, available, split)
    n = len(sq.imu2w)
    indices = select_indices(n, frames)
    if not indices:
        raise ReaderError(split / "oxts" / f"{seq}.txt", "frames", f"the selection is empty ({n} frames)")
    with_image = [i for i in indices if any(sq.image(c, i) for c in cams)]
    if len(with_image) < len(indices):
        warnings.append(f"{split / cams[0] / seq}: {len(indices) - len(with_image)} of {len(indices)} frames "
                        f"have no image and are skipped")
    if not with_image:
        raise ReaderError(split / cams[0] / seq, "", f"no image for frames {indices[0]}..{indices[-1]}")
    return _Selection(cams, with_image, {i: i * 0.1 for i in with_image})


def _add_camera(sq: _Sequence, sel: _Selection, cam: str, skip_missing: bool, warnings: list[str],
                out: _CameraFrames) -> None:
    """The frames of one camera; its image size from its first image, its pose from P_i's baseline."""
    key = CAMERAS[cam]
    folder = sq.split / cam / sq.seq
    first = next((p for p in (sq.image(cam, i) for i in sel.frames) if p is not None), None)
    if first is None:
        warnings.append(f"{folder}: no image in the selection, camera skipped")
        return
    w, h = image_size(first)
    intr, rect_from_cam = projection_camera(require(sq.calib, key, sq.calib_path), w, h, sq.calib_path, key)
    for i in sel.frames:
        img = sq.image(cam, i)
        if img is None:
            if not skip_missing:
                raise ReaderError(folder, f"frame {i}", f"image {i:06d}.png does not exist "
                                                        "(use --skip-missing to skip it)")
            warnings.append(f"{folder}: frame {i}: image missing, skipped")
            continue
        rel = f"images/{cam}/{img.name}"
        out.images[rel] = img
        c2w = opencv_to_opengl(sq.imu2w[i] @ sq.imu_from_rect @ rect_from_cam)
        out.frames.append(Frame(rel, c2w, intr, cam, sel.times[i]))


def _velodyne(sq: _Sequence, sel: _Selection) -> _Velodyne:
    out = _Velodyne()
    for i in sel.frames:
        b = sq.split / "velodyne" / sq.seq / f"{i:06d}.bin"
        if b.is_file():
            rel = f"lidar/velodyne/{i:06d}.npy"
            out.sweeps.append(LidarSweep(rel, sq.imu2w[i] @ sq.imu_from_velo, sel.times[i], "velodyne"))
            out.files[rel] = b
    return out


def _actors(sq: _Sequence, sel: _Selection) -> dict[str, ActorBuilder]:
    """Labelled tracks of the converted frames (``label_02/<seq>.txt``, optional), moved into the world."""
    actors: dict[str, ActorBuilder] = {}
    label_file = sq.split / "label_02" / f"{sq.seq}.txt"
    if label_file.is_file():
        keep = set(sel.frames)
        for frame, tid, typ, pose, size in read_labels(label_file):
            if frame not in keep:
                continue
            b = actors.setdefault(tid, ActorBuilder(map_class(typ), size, typ))
            b.add(sel.times[frame], sq.imu2w[frame] @ sq.imu_from_rect @ pose, size)
    return actors
