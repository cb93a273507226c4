"""PandaSet sequences (the layout of scaleapi/pandaset-devkit), one sequence folder such as ``pandaset/001``.

Layout::

    camera/<name>/NN.jpg, poses.json, intrinsics.json, timestamps.json     (front_camera, left_camera, ...)
    lidar/NN.pkl.gz, poses.json, timestamps.json
    annotations/cuboids/NN.pkl.gz                                          (optional: absent in the test split)
    meta/timestamps.json, meta/gps.json                                    (optional)

Poses are sensor-to-world as ``{"position": {x, y, z}, "heading": {w, x, y, z}}`` (Hamilton quaternion,
as the devkit's ``_heading_position_to_mat``). Cameras follow OpenCV (the devkit projects world points
with ``K · inv(camera pose)`` and keeps z > 0): x right, y down, z forward; intrinsics ``{fx, fy, cx, cy}``
have OpenCV pixel centres (cx + 0.5 here) and no distortion. Lidar ``.pkl.gz`` files are pickled pandas
DataFrames with columns x, y, z (WORLD coordinates), i (0..255), t, d (0 = Pandar64 360°, 1 = PandarGT);
points of d = 0 are converted into the frame of ``lidar/poses.json`` raised to the front camera's height: that
pose is the vehicle's base near the ground (devkit issue 60), and the devkit's static calibration puts the front
camera within 5 cm of the Pandar64, whose rays start there. Cuboids: one
DataFrame per frame, ``position.x/y/z`` (world box centre), ``dimensions.x`` (width), ``dimensions.y``
(length), ``dimensions.z`` (height), ``yaw`` about world z with yaw 0 pointing the length side along
world +y (devkit ``center_box_to_corners``: R = Rz(yaw) applied to dimensions x/y/z), ``uuid`` (track
id), ``label``, ``stationary``, ``cuboids.sensor_id`` (1 = PandarGT duplicate of a moving object in the
overlap, dropped). Pickles are untrusted: they are loaded by :mod:`.safe_pickle` only (needs pandas).

The world is PandaSet's world frame (z up: cuboids turn about z and stand along z), shifted so that the
first ego position is the origin. The ego (vehicle) pose is the front camera's pose with its axes
relabelled x = optical axis (forward), y = left, z = up; it is the first camera in folder order when there
is no ``front_camera``. Time: the sensors' own timestamps (seconds); cuboids take the lidar time of their
frame. ``--frames`` selects frame indices (NN).
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
    get,
    image_size,
    map_class,
    number,
    opencv_intrinsics,
    quat_to_rotation,
    read_json,
    select_indices,
)
from ._lidar_layout import RawSweep, attach_layouts

CAMERA_ORDER = ("front_camera", "front_left_camera", "front_right_camera", "left_camera", "right_camera",
                "back_camera")
REFERENCE_CAMERA = "front_camera"
# ego (x forward, y left, z up) axes in OpenCV camera coordinates (x right, y down, z forward)
CAM_FROM_EGO = make_pose(np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]), np.zeros(3))
LIDAR_SENSOR = "pandar64"
CUBOID_COLUMNS = ("uuid", "label", "yaw", "position.x", "position.y", "position.z", "dimensions.x", "dimensions.y",
                  "dimensions.z")

# PandaSet cuboid labels -> log classes (anything else: the generic keyword map)
CLASSES = {
    "Car": "car", "Pickup Truck": "car", "Emergency Vehicle": "car", "Other Vehicle - Uncommon": "car",
    "Medium-sized Truck": "truck", "Semi-truck": "truck", "Other Vehicle - Construction Vehicle": "truck",
    "Bus": "bus", "Pedestrian": "pedestrian", "Pedestrian with Object": "pedestrian",
    "Bicycle": "cyclist", "Motorcycle": "cyclist", "Motorized Scooter": "cyclist",
    "Personal Mobility Device": "cyclist", "Other Vehicle - Pedicab": "cyclist",
    "Towed Object": "other", "Train": "other", "Trolley": "other", "Tram / Subway": "other", "Cones": "other",
    "Pylons": "other", "Signs": "other", "Construction Signs": "other", "Road Barriers": "other",
    "Temporary Construction Barriers": "other", "Rolling Containers": "other", "Animals - Bird": "other",
    "Animals - Other": "other",
}


def _locate(src: Path) -> Path:
    if not src.is_dir():
        raise ReaderError(src, "", "expected a PandaSet sequence folder (camera/, lidar/, annotations/, meta/)")
    if (src / "camera").is_dir():
        return src
    seqs = sorted(p for p in src.iterdir() if p.is_dir() and (p / "camera").is_dir())
    if len(seqs) == 1:
        return seqs[0]
    if seqs:
        names = ", ".join(p.name for p in seqs[:10]) + ("..." if len(seqs) > 10 else "")
        raise ReaderError(src, "", f"expected one sequence, found {len(seqs)}: pass {src}/<sequence> ({names})")
    raise ReaderError(src, "camera", "expected a PandaSet sequence folder (camera/<name>/, lidar/, annotations/, "
                                     "meta/)")


def pose_matrix(entry: object, path: Path, where: str) -> np.ndarray:
    """4x4 sensor-to-world from ``{"position": {x, y, z}, "heading": {w, x, y, z}}``."""
    pos = get(entry, "position", path, where, dict)
    head = get(entry, "heading", path, where, dict)
    q = [number(head, k, path, f"{where}.heading") for k in ("w", "x", "y", "z")]
    t = [number(pos, k, path, f"{where}.position") for k in ("x", "y", "z")]
    return make_pose(quat_to_rotation(q, path, f"{where}.heading"), np.array(t))


def _poses(path: Path) -> list[np.ndarray]:
    data = read_json(path)
    if not isinstance(data, list) or not data:
        raise ReaderError(path, "", "expected a non-empty JSON list of poses {position, heading}")
    return [pose_matrix(p, path, f"[{i}]") for i, p in enumerate(data)]


def _timestamps(path: Path, n: int) -> list[float]:
    data = read_json(path)
    if not isinstance(data, list):
        raise ReaderError(path, "", "expected a JSON list of timestamps (seconds)")
    if len(data) != n:
        raise ReaderError(path, "", f"expected {n} timestamps (one per pose), got {len(data)}")
    out = []
    for i, t in enumerate(data):
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not np.isfinite(t):
            raise ReaderError(path, f"[{i}]", f"expected a finite number of seconds, got {t!r}")
        out.append(float(t))
    return out


def _data_file(folder: Path, index: int) -> Path | None:
    for suffix in (".pkl.gz", ".pkl"):  # .pkl: the uncompressed copies some mirrors distribute
        p = folder / f"{index:02d}{suffix}"
        if p.is_file():
            return p
    return None


def _column(df, name: str, path: Path, kind: str = "float") -> np.ndarray:
    if name not in df.columns:
        raise ReaderError(path, name, f"missing column (have: {', '.join(map(str, df.columns))})")
    col = df[name]
    if kind == "str":
        return np.array([str(v) for v in col.tolist()], dtype=object)
    try:
        vals = np.asarray(col.to_numpy(), dtype=np.float64)
    except (TypeError, ValueError):
        raise ReaderError(path, name, f"expected numbers, got {col.dtype}") from None
    bad = np.flatnonzero(~np.isfinite(vals))
    if len(bad):
        raise ReaderError(path, f"row {bad[0]}.{name}", f"expected a finite number, got {vals[bad[0]]}")
    return vals


def _lidar_loader(path: Path, s2w: np.ndarray, time: float):
    """Loader of a sweep's Pandar64 points in its pose's frame, with each point's time after ``time`` (s)."""
    def load() -> RawSweep:
        from .safe_pickle import load_dataframe

        df = load_dataframe(path)
        xyz = np.stack([_column(df, c, path) for c in ("x", "y", "z")], axis=1)
        inten = _column(df, "i", path) / 255.0 if "i" in df.columns else np.zeros(len(xyz))
        t = _column(df, "t", path) - time if "t" in df.columns else None
        if "d" in df.columns:  # 0: Pandar64 (the posed sensor); 1: PandarGT (no pose of its own)
            keep = _column(df, "d", path) == 0
            xyz, inten, t = xyz[keep], inten[keep], (t[keep] if t is not None else None)
        w2s = invert_pose(s2w)
        out = np.zeros((len(xyz), 4), np.float32)
        out[:, :3] = xyz @ w2s[:3, :3].T + w2s[:3, 3]
        out[:, 3] = np.clip(inten, 0.0, 1.0)
        return RawSweep(out, time=t)

    return load


def _cuboids(path: Path) -> list[tuple[str, str, np.ndarray, np.ndarray, bool]]:
    """(uuid, label, box-to-world pose, size [l, w, h], stationary) per cuboid of one frame."""
    from .safe_pickle import load_dataframe

    df = load_dataframe(path)
    uuid = _column(df, "uuid", path, "str")
    label = _column(df, "label", path, "str")
    yaw = _column(df, "yaw", path)
    pos = np.stack([_column(df, f"position.{k}", path) for k in "xyz"], axis=1)
    dims = np.stack([_column(df, f"dimensions.{k}", path) for k in "xyz"], axis=1)
    stationary = (np.asarray(df["stationary"].to_numpy(), dtype=bool) if "stationary" in df.columns
                  else np.zeros(len(df), bool))
    sensor = _column(df, "cuboids.sensor_id", path) if "cuboids.sensor_id" in df.columns else -np.ones(len(df))
    out = []
    for r in range(len(df)):
        if sensor[r] == 1:  # the PandarGT copy of a moving object seen by both lidars
            continue
        # devkit: corners = Rz(yaw) @ (±dim_x/2, ±dim_y/2, ±dim_z/2); the length side (dim_y) points along
        # Rz(yaw) (0, 1, 0). Log box: x along the length -> R = Rz(yaw + pi/2).
        a = yaw[r] + np.pi / 2
        c, s = np.cos(a), np.sin(a)
        rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        size = np.array([dims[r, 1], dims[r, 0], dims[r, 2]])
        if not np.all(size > 0):
            raise ReaderError(path, f"row {r}.dimensions", f"expected positive sizes, got {dims[r].tolist()}")
        out.append((str(uuid[r]), str(label[r]), make_pose(rot, pos[r]), size, bool(stationary[r])))
    return out


def _camera_names(root: Path) -> list[str]:
    cam_root = root / "camera"
    found = [p.name for p in sorted(cam_root.iterdir()) if p.is_dir() and (p / "poses.json").is_file()]
    return [c for c in CAMERA_ORDER if c in found] + [c for c in found if c not in CAMERA_ORDER]


@dataclass
class _Sequence:
    """The sequence folder, the cameras to convert, the reference camera (the ego), the camera poses and times
    (``camera/<name>/poses.json``, ``timestamps.json``) and the selected frame indices."""

    root: Path
    cams: list[str]
    ref: str
    poses: dict[str, list[np.ndarray]]
    times: dict[str, list[float]]
    indices: list[int]


@dataclass
class _Lidar:
    """The Pandar64 sweeps; ``times`` is None without a lidar folder."""

    sweeps: list[LidarSweep] = field(default_factory=list)
    files: dict = field(default_factory=dict)
    times: list[float] | None = None
    height: float | None = None  # metres the sweeps' origin was raised above lidar/poses.json (None: not)


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    seq = _open_sequence(src, cameras, frames)
    warnings: list[str] = []
    cams = CameraFrames()
    for cam in seq.cams:
        _add_camera(seq, cam, skip_missing, warnings, cams)
    ego = _ego(seq, warnings)
    lidar = _lidar(seq, skip_missing, warnings)
    actors = _actors(seq, lidar.times, warnings)
    return _assemble(seq, cams, ego, lidar, actors, warnings)


def _open_sequence(src: Path, cameras: list[str] | None, frames: slice) -> _Sequence:
    root = _locate(src)
    available = _camera_names(root)
    if not available:
        raise ReaderError(root / "camera", "", "expected camera folders with poses.json (camera/front_camera/, ...)")
    cams = check_cameras(cameras, available, root / "camera")
    ref = REFERENCE_CAMERA if REFERENCE_CAMERA in available else available[0]
    poses: dict[str, list[np.ndarray]] = {}
    times: dict[str, list[float]] = {}
    for cam in dict.fromkeys([ref, *cams]):
        folder = root / "camera" / cam
        poses[cam] = _poses(folder / "poses.json")
        times[cam] = _timestamps(folder / "timestamps.json", len(poses[cam]))
    n = len(poses[ref])
    indices = select_indices(n, frames)
    if not indices:
        raise ReaderError(root / "camera" / ref / "poses.json", "frames", f"the selection is empty ({n} frames)")
    return _Sequence(root, cams, ref, poses, times, indices)


def _focal_and_centre(path: Path) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy of a camera's ``intrinsics.json``."""
    k = read_json(path)
    fx, fy, cx, cy = (number(k, key, path, "") for key in ("fx", "fy", "cx", "cy"))
    if fx <= 0 or fy <= 0:
        raise ReaderError(path, "fx", f"expected positive focal lengths, got {fx}, {fy}")
    return fx, fy, cx, cy


def _add_camera(seq: _Sequence, cam: str, skip_missing: bool, warnings: list[str], out: CameraFrames) -> None:
    """The selected frames of one camera (its image size from the first image found)."""
    indices = seq.indices
    folder = seq.root / "camera" / cam
    if len(seq.poses[cam]) < indices[-1] + 1:
        raise ReaderError(folder / "poses.json", "", f"expected at least {indices[-1] + 1} poses (frames "
                                                     f"{indices[0]}..{indices[-1]}), got {len(seq.poses[cam])}")
    fx, fy, cx, cy = _focal_and_centre(folder / "intrinsics.json")
    intr = None
    for i in indices:
        img = folder / f"{i:02d}.jpg"
        if not img.is_file():
            if skip_missing:
                warnings.append(f"{img}: image does not exist, skipped")
                continue
            raise ReaderError(img, "", "image does not exist (use --skip-missing to skip it)")
        if intr is None:
            w, h = image_size(img)
            intr = opencv_intrinsics(fx, fy, cx, cy, w, h)
        rel = f"images/{cam}/{img.name}"
        out.images[rel] = img
        out.frames.append(Frame(rel, opencv_to_opengl(seq.poses[cam][i]), intr, cam, seq.times[cam][i]))


def _ego(seq: _Sequence, warnings: list[str]) -> Track:
    """The reference camera's axes relabelled x forward, y left, z up."""
    ref, indices = seq.ref, seq.indices
    ego_poses = [seq.poses[ref][i] @ CAM_FROM_EGO for i in indices]
    ego = Track(np.array([seq.times[ref][i] for i in indices]), np.stack(ego_poses))
    down = seq.poses[ref][indices[0]][:3, 1]
    if down[2] > -0.5:
        warnings.append(f"{seq.root / 'camera' / ref / 'poses.json'}: [{indices[0]}]: the camera's down axis is "
                        f"{np.round(down, 2).tolist()} in the world, not about -z: the world may not be z-up")
    return ego


def _pandar_height(seq: _Sequence, lposes: list[np.ndarray]) -> float | None:
    """How far the Pandar64 sits above the pose of ``lidar/poses.json`` (which is the vehicle's base, near the
    ground: scaleapi/pandaset-devkit issue 60): the front camera's median height in that pose's frame, since the
    devkit's static calibration puts the front camera within 5 cm of the Pandar64. None without a front camera
    or for an implausible height (outside 0.5-3 m)."""
    cam = seq.poses.get("front_camera")
    if not cam:
        return None
    h = float(np.median([(invert_pose(lposes[i]) @ cam[i])[2, 3] for i in seq.indices if i < len(cam)]))
    return h if 0.5 <= h <= 3.0 else None


def _lidar(seq: _Sequence, skip_missing: bool, warnings: list[str]) -> _Lidar:
    out = _Lidar()
    lidar_dir = seq.root / "lidar"
    if not lidar_dir.is_dir():
        return out
    lposes = _poses(lidar_dir / "poses.json")
    out.times = _timestamps(lidar_dir / "timestamps.json", len(lposes))
    if any(i >= len(lposes) for i in seq.indices):
        raise ReaderError(lidar_dir / "poses.json", "", f"expected a pose for frame {max(seq.indices)}, got "
                                                        f"{len(lposes)}")
    out.height = _pandar_height(seq, lposes)
    lift = make_pose(np.eye(3), np.array([0.0, 0.0, out.height or 0.0]))
    lposes = [pose @ lift for pose in lposes]
    for i in seq.indices:
        path = _data_file(lidar_dir, i)
        if path is None:
            if skip_missing:
                warnings.append(f"{lidar_dir / f'{i:02d}.pkl.gz'}: lidar sweep does not exist, skipped")
                continue
            raise ReaderError(lidar_dir / f"{i:02d}.pkl.gz", "", "lidar sweep does not exist "
                                                                 "(use --skip-missing to skip it)")
        rel = f"lidar/{LIDAR_SENSOR}/{i:02d}.npy"
        out.files[rel] = _lidar_loader(path, lposes[i], out.times[i])
        out.sweeps.append(LidarSweep(rel, lposes[i], out.times[i], LIDAR_SENSOR))
    if out.files:  # pandas is needed for the sweeps: say so now, not after the images are written
        from .safe_pickle import PANDAS_HINT

        try:
            import pandas  # noqa: F401
        except ImportError:
            raise ReaderError(next(iter(out.files)), "", PANDAS_HINT) from None
    return out


def _frame_times(root: Path, lidar_times: list[float] | None) -> list[float]:
    """The frame times cuboids take: the lidar's, else ``meta/timestamps.json``."""
    if lidar_times is not None:
        return lidar_times
    meta = root / "meta" / "timestamps.json"
    if not meta.is_file():
        raise ReaderError(root / "lidar" / "timestamps.json", "", "cuboids need the frame times: expected "
                                                                  "lidar/timestamps.json or meta/timestamps.json")
    return _timestamps(meta, len(read_json(meta)))


def _actors(seq: _Sequence, lidar_times: list[float] | None, warnings: list[str]) -> list:
    """One actor per cuboid uuid; ``extra["stationary"]`` when every one of its cuboids is."""
    actors: dict[str, ActorBuilder] = {}
    stationary: dict[str, bool] = {}
    cub_dir = seq.root / "annotations" / "cuboids"
    if cub_dir.is_dir():
        times = _frame_times(seq.root, lidar_times)
        for i in seq.indices:
            path = _data_file(cub_dir, i)
            if path is None:
                warnings.append(f"{cub_dir / f'{i:02d}.pkl.gz'}: no cuboids for frame {i}")
                continue
            if i >= len(times):
                raise ReaderError(seq.root / "lidar" / "timestamps.json", "", f"expected a time for frame {i}")
            for uuid, label, pose, size, still in _cuboids(path):
                b = actors.setdefault(uuid, ActorBuilder(CLASSES.get(label) or map_class(label), size, label))
                b.add(times[i], pose, size)
                stationary[uuid] = stationary.get(uuid, True) and still
    built = build_actors(actors)
    for a in built:
        a.extra["stationary"] = stationary.get(a.id, False)
    return built


def _assemble(seq: _Sequence, cams: CameraFrames, ego: Track, lidar: _Lidar, actors: list,
              warnings: list[str]) -> Conversion:
    """The world shifted to the first ego position, times to the earliest frame, sweep or ego pose."""
    root, indices = seq.root, seq.indices
    times = [f.timestamp for f in cams.frames] + [s.timestamp for s in lidar.sweeps] + list(ego.timestamps)
    extra: dict = {"sequence": root.name, "world": "PandaSet world (z up), origin moved to the first ego position",
                   "ego": f"{seq.ref} axes relabelled: x optical axis (forward), y left, z up"}
    gps_file = root / "meta" / "gps.json"
    if gps_file.is_file():
        gps = read_json(gps_file)
        if isinstance(gps, list) and len(gps) > indices[0] and isinstance(gps[indices[0]], dict):
            extra["gps_first_frame"] = gps[indices[0]]
    if lidar.height is not None:
        extra["lidar_origin"] = (f"{lidar.height:.2f} m above lidar/poses.json (the vehicle base), at the front "
                                 "camera's height: the Pandar64 sits there")
    log = finish_log("pandaset", root, cams.frames, lidar.sweeps, actors, ego, offset=ego.poses[0, :3, 3].copy(),
                     t0=min(times), extra=extra)
    conv = Conversion(log, cams.images, {})
    attach_layouts(conv, lidar.files)
    for w in warnings:
        conv.warn(w)
    return conv
