"""Argoverse 2 sensor dataset: one log folder (``<split>/<log_id>/``). Needs ``pyarrow`` for the feather files.

Files used: ``calibration/egovehicle_SE3_sensor.feather`` (sensor_name, qw qx qy qz, tx_m ty_m tz_m:
sensor-to-ego), ``calibration/intrinsics.feather`` (sensor_name, fx_px fy_px cx_px cy_px, k1 k2 k3,
height_px width_px), ``city_SE3_egovehicle.feather`` (timestamp_ns, qw..tz_m: ego-to-city),
``sensors/cameras/<camera>/<timestamp_ns>.jpg``, ``sensors/lidar/<timestamp_ns>.feather`` (x y z
intensity(uint8) laser_number offset_ns, points in the ego frame) and ``annotations.feather``
(timestamp_ns, track_uuid, category, length_m width_m height_m, qw..tz_m: box-to-ego at the sweep time).

Cameras are OpenCV (cx + 0.5), posed with the ego pose at the image timestamp (exact entry when the
pose table has it, interpolated otherwise). A sweep merges the two VLP-32C lidars in the ego frame; when the
calibration has ``up_lidar`` and ``down_lidar``, each sweep becomes one per lidar, in that lidar's own frame
(``laser_number`` 0-31: up, 32-63: down), with an estimated v1.1 sensor model from the laser numbers and each
point's time (``offset_ns`` after the sweep's timestamp). Without them, sweeps stay in the ego frame (sensor =
ego) with no sensor model.
``--frames`` selects lidar sweeps (10 Hz); camera images within half a sweep period of the selected
sweeps are kept. The world is the city frame (z up) shifted to the first ego position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import invert_pose, make_pose, opencv_to_opengl
from ..model import Frame, LidarSweep, Track
from ._common import (
    ActorBuilder,
    CameraFrames,
    Conversion,
    ReaderError,
    build_actors,
    check_cameras,
    finish_log,
    make_track,
    map_class,
    opencv_intrinsics,
    quat_to_rotation,
    select_indices,
)
from ._lidar_layout import RawSweep, attach_layouts


def _feather(path: Path, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        import pyarrow.feather as feather
    except ImportError:
        raise ReaderError(path, "", "reading Argoverse 2 .feather files needs pyarrow: pip install pyarrow") from None
    if not path.is_file():
        raise ReaderError(path, "", "file does not exist")
    try:
        table = feather.read_table(path)
    except Exception as exc:  # pyarrow raises its own error types
        raise ReaderError(path, "", f"not a readable feather file ({exc})") from None
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ReaderError(path, missing[0], f"missing column (have: {', '.join(table.column_names)})")
    return {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names}


def _poses(t: dict[str, np.ndarray], i: int, path: Path) -> np.ndarray:
    q = [t[k][i] for k in ("qw", "qx", "qy", "qz")]
    return make_pose(quat_to_rotation(q, path, f"row {i}.qw"), np.array([t[k][i] for k in ("tx_m", "ty_m", "tz_m")],
                                                                       float))


_POSE_COLS = ("qw", "qx", "qy", "qz", "tx_m", "ty_m", "tz_m")
# the two VLP-32C lidars of a sweep: their calibration names and laser_number ranges [lo, hi)
LIDARS = {"up_lidar": (0, 32), "down_lidar": (32, 64)}


def _lidar_loader(path: Path):
    def load() -> np.ndarray:
        t = _feather(path, ("x", "y", "z", "intensity"))
        out = np.zeros((len(t["x"]), 4), np.float32)
        out[:, 0], out[:, 1], out[:, 2] = t["x"], t["y"], t["z"]
        out[:, 3] = np.clip(t["intensity"].astype(np.float32) / 255.0, 0.0, 1.0)
        return out

    return load


def _lidar_of(path: Path, sensor_to_ego: np.ndarray, lasers: tuple[int, int]):
    """Loader of one lidar's points of a sweep (laser numbers in [lo, hi)), in that lidar's frame."""
    def load() -> RawSweep:
        t = _feather(path, ("x", "y", "z", "intensity", "laser_number", "offset_ns"))
        laser = t["laser_number"].astype(np.int64)
        keep = (laser >= lasers[0]) & (laser < lasers[1])
        xyz = np.stack([t[k][keep].astype(np.float64) for k in "xyz"], axis=1)
        e2s = invert_pose(sensor_to_ego)
        out = np.zeros((len(xyz), 4), np.float32)
        out[:, :3] = xyz @ e2s[:3, :3].T + e2s[:3, 3]
        out[:, 3] = np.clip(t["intensity"][keep].astype(np.float32) / 255.0, 0.0, 1.0)
        return RawSweep(out, ring=laser[keep], time=t["offset_ns"][keep].astype(np.float64) * 1e-9)

    return load


@dataclass
class _EgoPoses:
    """Ego-to-city poses by timestamp_ns (``city_SE3_egovehicle.feather``); times in seconds from ``ns0``."""

    path: Path
    by_ns: dict[int, np.ndarray]
    track: Track
    ns0: int

    def at(self, ns: int, where: str) -> np.ndarray:
        """The exact entry at ``ns`` when the table has it, interpolated otherwise."""
        if ns in self.by_ns:
            return self.by_ns[ns]
        pose = self.track.pose_at((ns - self.ns0) / 1e9)
        if pose is None:
            raise ReaderError(self.path, "timestamp_ns", f"no ego pose around {where} ({ns})")
        return pose


@dataclass
class _Log:
    """The log folder with its calibration (intrinsics table, sensor-to-ego poses) and ego poses."""

    src: Path
    calib_path: Path
    intr_path: Path
    intrinsics: dict[str, np.ndarray]
    sensor_to_ego: dict[str, np.ndarray]
    ego: _EgoPoses


@dataclass
class _Selection:
    """The selected lidar sweeps (timestamp_ns) and the camera time window around them (None: no lidar)."""

    sweeps: list[int]
    lo: int | None
    hi: int | None


@dataclass
class _Lidar:
    """The lidar sweeps (ego frame) and the ego track: at the sweeps, or at the images without lidar."""

    sweeps: list[LidarSweep] = field(default_factory=list)
    files: dict = field(default_factory=dict)  # merged ego-frame sweeps (no per-lidar calibration)
    raw: dict = field(default_factory=dict)  # per-lidar sweeps: output path -> RawSweep loader
    ego_t: list[float] = field(default_factory=list)
    ego_p: list[np.ndarray] = field(default_factory=list)


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    log = _open_log(src)
    cam_root = src / "sensors" / "cameras"
    available = sorted(p.name for p in cam_root.iterdir() if p.is_dir()) if cam_root.is_dir() else []
    cams = check_cameras(cameras, available, cam_root)
    sel = _select_sweeps(src, frames)
    out = CameraFrames()
    for cam in cams:
        _add_camera(log, cam, sel, frames, out)
    lidar = _lidar(log, sel.sweeps)
    if not lidar.ego_t:
        lidar.ego_t = [f.timestamp for f in out.frames]
        lidar.ego_p = [log.ego.at(int(round(t * 1e9)) + log.ego.ns0, "frame") for t in lidar.ego_t]
    actors = _actors(log, sel.sweeps)
    ego = make_track(lidar.ego_t, lidar.ego_p)
    t0 = min([f.timestamp for f in out.frames] + lidar.ego_t) if out.frames else 0.0
    result = finish_log("argoverse2", src, out.frames, lidar.sweeps, build_actors(actors), ego,
                        offset=ego.poses[0, :3, 3].copy(), t0=t0,
                        extra={"log_id": src.name, "time_origin_ns": log.ego.ns0})
    conv = Conversion(result, out.images, {} if lidar.raw else lidar.files)
    if lidar.raw:
        attach_layouts(conv, lidar.raw)
    return conv


def _open_log(src: Path) -> _Log:
    if not (src / "city_SE3_egovehicle.feather").is_file():
        raise ReaderError(src, "city_SE3_egovehicle.feather", "expected an Argoverse 2 sensor log folder")
    calib_path = src / "calibration" / "egovehicle_SE3_sensor.feather"
    intr_path = src / "calibration" / "intrinsics.feather"
    ext = _feather(calib_path, ("sensor_name",) + _POSE_COLS)
    intr = _feather(intr_path, ("sensor_name", "fx_px", "fy_px", "cx_px", "cy_px", "height_px", "width_px"))
    ego = _ego_poses(src / "city_SE3_egovehicle.feather")
    sensor_to_ego = {str(n): _poses(ext, i, calib_path) for i, n in enumerate(ext["sensor_name"])}
    return _Log(src, calib_path, intr_path, intr, sensor_to_ego, ego)


def _ego_poses(pose_path: Path) -> _EgoPoses:
    ego_tab = _feather(pose_path, ("timestamp_ns",) + _POSE_COLS)
    ego_ns = ego_tab["timestamp_ns"].astype(np.int64)
    order = np.argsort(ego_ns)
    ego_all = {int(ego_ns[i]): _poses(ego_tab, int(i), pose_path) for i in order}
    ego_track = Track(np.array([(k - int(ego_ns.min())) / 1e9 for k in ego_all]), np.stack(list(ego_all.values())))
    return _EgoPoses(pose_path, ego_all, ego_track, int(ego_ns.min()))


def _select_sweeps(src: Path, frames: slice) -> _Selection:
    """``--frames`` over the lidar sweeps; images are kept within half a sweep period (50 ms) of the selection."""
    sweeps_ns = sorted(int(p.stem) for p in (src / "sensors" / "lidar").glob("*.feather"))
    if not sweeps_ns:
        return _Selection([], None, None)
    sel = [sweeps_ns[i] for i in select_indices(len(sweeps_ns), frames)]
    if not sel:
        raise ReaderError(src / "sensors" / "lidar", "frames", f"the selection is empty ({len(sweeps_ns)} sweeps)")
    return _Selection(sel, sel[0] - 50_000_000, sel[-1] + 50_000_000)


def _add_camera(log: _Log, cam: str, sel: _Selection, frames: slice, out: CameraFrames) -> None:
    """The images of one camera in the selected time window (``--frames`` over its images without lidar)."""
    if cam not in log.sensor_to_ego:
        raise ReaderError(log.calib_path, "sensor_name", f"no extrinsic for camera {cam}")
    intr = log.intrinsics
    rows = [i for i, n in enumerate(intr["sensor_name"]) if str(n) == cam]
    if not rows:
        raise ReaderError(log.intr_path, "sensor_name", f"no intrinsics for camera {cam}")
    r = rows[0]
    dist = {k: float(intr[k][r]) for k in ("k1", "k2", "k3") if k in intr}
    K = opencv_intrinsics(intr["fx_px"][r], intr["fy_px"][r], intr["cx_px"][r], intr["cy_px"][r],
                          int(intr["width_px"][r]), int(intr["height_px"][r]), **dist)
    files = sorted(log.src.joinpath("sensors", "cameras", cam).glob("*.jpg"), key=lambda p: int(p.stem))
    if sel.lo is None:
        files = files[frames]
    for p in files:
        ns = int(p.stem)
        if sel.lo is not None and not sel.lo <= ns <= sel.hi:
            continue
        rel = f"images/{cam}/{p.name}"
        out.images[rel] = p
        c2w = opencv_to_opengl(log.ego.at(ns, str(p)) @ log.sensor_to_ego[cam])
        out.frames.append(Frame(rel, c2w, K, cam, (ns - log.ego.ns0) / 1e9))


def _lidar(log: _Log, sweeps_ns: list[int]) -> _Lidar:
    out = _Lidar()
    split = all(name in log.sensor_to_ego for name in LIDARS)
    for ns in sweeps_ns:
        path = log.src / "sensors" / "lidar" / f"{ns}.feather"
        pose = log.ego.at(ns, str(path))
        t = (ns - log.ego.ns0) / 1e9
        if split:
            for name, lasers in LIDARS.items():
                rel = f"lidar/{name}/{ns}.npy"
                out.raw[rel] = _lidar_of(path, log.sensor_to_ego[name], lasers)
                out.sweeps.append(LidarSweep(rel, pose @ log.sensor_to_ego[name], t, name))
        else:
            rel = f"lidar/lidar/{ns}.npy"
            out.files[rel] = _lidar_loader(path)
            out.sweeps.append(LidarSweep(rel, pose, t, "lidar"))
        out.ego_t.append(t)
        out.ego_p.append(pose)
    return out


def _actors(log: _Log, sweeps_ns: list[int]) -> dict[str, ActorBuilder]:
    """Boxes (box-to-ego at the sweep time) of the selected sweeps, moved into the city frame."""
    actors: dict[str, ActorBuilder] = {}
    ann_path = log.src / "annotations.feather"
    if not ann_path.is_file():
        return actors
    ann = _feather(ann_path, ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m")
                   + _POSE_COLS)
    keep = set(sweeps_ns)
    for i in range(len(ann["timestamp_ns"])):
        ns = int(ann["timestamp_ns"][i])
        if ns not in keep:
            continue
        size = np.array([ann["length_m"][i], ann["width_m"][i], ann["height_m"][i]], float)
        cat = str(ann["category"][i])
        b = actors.setdefault(str(ann["track_uuid"][i]), ActorBuilder(map_class(cat.replace("_", " ")), size, cat))
        b.add((ns - log.ego.ns0) / 1e9, log.ego.at(ns, str(ann_path)) @ _poses(ann, i, ann_path), size)
    return actors
