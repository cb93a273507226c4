"""Shared pieces of the dataset readers: the error type, the conversion result and small parsers."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from ...logs import get_logger
from ..geometry import make_pose, quat_to_matrix
from ..images import image_header
from ..model import DriveLog, Frame, Intrinsics, LidarSweep, Track
from ..safe_load import InputFileError, load_json
from ..safe_paths import name_problem, relative_problem

log = get_logger(__name__)


class ReaderError(ValueError):
    """A source the reader cannot convert; the message is one line: ``path: field: what was expected``."""

    def __init__(self, path: str | Path, fld: str, message: str):
        self.path, self.field, self.detail = str(path), fld, message
        super().__init__(f"{path}: {fld}: {message}" if fld else f"{path}: {message}")


PointsLoader = Callable[[], np.ndarray]


@dataclass
class CameraFrames:
    """What a reader collects for its cameras: the frames, and each image's source file by output path."""

    frames: list[Frame] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)


@dataclass
class Conversion:
    """What a reader returns: the log (paths relative to the output folder) and where its files come from.

    ``images`` maps an output path (``images/...``) to the source image file, or to the encoded image
    bytes (or a function returning them) when the source stores images inside a container (Waymo).
    ``lidar`` maps an output path
    (``lidar/...npy``) to a loader that returns float32 [N, 4] points (x, y, z, intensity in [0, 1])
    in the sensor frame, or ``(points, SweepLayout or None)`` when the reader knows each point's beam and column
    (format v1.1; the sensor models go in ``log.lidar_sensors``). Nothing is read or written until ``convert``
    asks for it.
    """

    log: DriveLog
    images: dict[str, Path | bytes | Callable[[], bytes]] = field(default_factory=dict)
    lidar: dict[str, PointsLoader] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        log.warning(message)


def load_sweep(loader: Callable[[], object], rel: str):
    """Run a sweep loader; a failure that is not already a ReaderError becomes one line naming the sweep."""
    try:
        return loader()
    except ReaderError:
        raise
    except (OSError, ValueError, EOFError, KeyError, IndexError, TypeError) as exc:
        raise ReaderError(rel, "", f"cannot read the source of this sweep ({type(exc).__name__}: {exc})") from None


# -- selections ---------------------------------------------------------------------------------------

def parse_frames(frames: str | tuple[int | None, int | None] | slice | None) -> slice:
    """``"START:END"`` (Python slice, END exclusive, either side may be empty) -> slice."""
    if frames is None:
        return slice(None)
    if isinstance(frames, slice):
        return frames
    if isinstance(frames, tuple):
        return slice(*frames)
    text = str(frames).strip()
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else None
        end = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise ReaderError("--frames", "", f"expected START:END (e.g. 0:50, 10: or :20), got {text!r}") from None
    return slice(start, end)


def select_indices(n: int, frames: slice) -> list[int]:
    """Indices 0..n-1 kept by ``frames``."""
    return list(range(n))[frames]


def check_cameras(requested: Iterable[str] | None, available: Iterable[str], src: Path) -> list[str]:
    """The cameras to convert, in ``available`` order; unknown names are an error listing the known ones."""
    available = list(available)
    if requested is None:
        return available
    requested = [c for c in requested]
    unknown = [c for c in requested if c not in available]
    if unknown:
        raise ReaderError(src, "cameras", f"unknown camera(s) {', '.join(unknown)}; available: "
                                          f"{', '.join(available) or 'none'}")
    return [c for c in available if c in requested]


# -- small parsers ------------------------------------------------------------------------------------

def read_json(path: Path) -> Any:
    """A dataset's JSON file through the safe loader (bounded nesting, one line naming the file)."""
    try:
        return load_json(path)
    except InputFileError as exc:
        raise ReaderError(path, "", exc.detail) from None


def source_file(root: Path, rel: Any, path: Path, fld: str) -> Path:
    """``root / rel`` for a path string ``rel`` read from the dataset file ``path`` (field ``fld``).

    The string must be relative and free of '..': a reader links or copies what it names into the
    output, so ``../../etc/passwd`` must never get that far. Symbolic links under ``root`` are followed."""
    problem = relative_problem(rel)
    if problem:
        raise ReaderError(path, fld, f"expected a relative path inside {root}: {problem}")
    return Path(root) / rel


def plain_name(value: Any, path: Path, fld: str, what: str) -> str:
    """``value`` when it can become a file or folder name of the output (a camera, a sensor, an id)."""
    problem = name_problem(value)
    if problem:
        raise ReaderError(path, fld, f"{what} {problem}")
    return value


def get(obj: Any, key: str, path: Path, where: str, kind: type | tuple[type, ...] | None = None) -> Any:
    """``obj[key]`` with a ReaderError naming ``where.key`` when missing or of the wrong type."""
    fld = f"{where}.{key}" if where else key
    if not isinstance(obj, dict) or key not in obj:
        raise ReaderError(path, fld, "missing required key")
    val = obj[key]
    if kind is not None:
        ok = isinstance(val, kind) and not (isinstance(val, bool) and kind in (int, float, (int, float)))
        if not ok:
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise ReaderError(path, fld, f"expected {names}, got {type(val).__name__}")
    return val


def number(obj: Any, key: str, path: Path, where: str) -> float:
    val = get(obj, key, path, where, (int, float))
    try:
        num = float(val)
    except OverflowError:
        num = math.inf
    if not math.isfinite(num):
        raise ReaderError(path, f"{where}.{key}" if where else key, f"expected a finite number, got {num}")
    return num


def floats(text: str, count: int | tuple[int, ...], path: Path, fld: str) -> np.ndarray:
    """Whitespace-separated numbers; ``count`` is the allowed number(s) of values."""
    counts = (count,) if isinstance(count, int) else count
    try:
        vals = np.array([float(x) for x in text.split()], dtype=np.float64)
    except ValueError:
        raise ReaderError(path, fld, f"expected {' or '.join(map(str, counts))} numbers, got {text.strip()[:60]!r}") \
            from None
    if len(vals) not in counts:
        raise ReaderError(path, fld, f"expected {' or '.join(map(str, counts))} numbers, got {len(vals)}")
    if not np.all(np.isfinite(vals)):
        raise ReaderError(path, fld, "expected finite numbers")
    return vals


def pose_from_quat(rotation: dict, translation: dict, path: Path, where: str) -> np.ndarray:
    """4x4 from ``{qw, qx, qy, qz}`` and ``{x, y, z}`` dicts (DGP / PandaSet style)."""
    q = [number(rotation, k, path, f"{where}.rotation") for k in ("qw", "qx", "qy", "qz")]
    t = [number(translation, k, path, f"{where}.translation") for k in ("x", "y", "z")]
    return make_pose(quat_to_rotation(q, path, f"{where}.rotation"), np.array(t))


def quat_to_rotation(q: Iterable[float], path: Path, fld: str) -> np.ndarray:
    q = np.asarray(list(q), dtype=np.float64)
    if q.shape != (4,) or not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-6:
        raise ReaderError(path, fld, f"expected a non-zero (w, x, y, z) quaternion, got {q.tolist()}")
    return quat_to_matrix(q)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file from its header."""
    if not Path(path).is_file():
        raise ReaderError(path, "", "image does not exist")
    size = image_header(path)
    if isinstance(size, str):
        raise ReaderError(path, "", f"not a readable image ({size})")
    return size


def image_size_from_bytes(data: bytes, where: str) -> tuple[int, int]:
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except Exception as exc:  # any decoder failure on untrusted bytes (see simrecon.data.images)
        raise ReaderError(where, "image", f"expected an encoded image, got undecodable bytes ({exc})") from None


def opencv_intrinsics(fx: float, fy: float, cx: float, cy: float, w: int, h: int, **dist: float) -> Intrinsics:
    """Intrinsics from an OpenCV-convention K (top-left pixel centre at 0, 0): shifts cx, cy by +0.5."""
    model = "OPENCV" if any(v for v in dist.values()) else "PINHOLE"
    return Intrinsics(float(fx), float(fy), float(cx) + 0.5, float(cy) + 0.5, int(w), int(h), model,
                      **{k: float(v) for k, v in dist.items()})


def box_pose(rotation: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return make_pose(rotation, centre)


def yaw_pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    """Box-to-frame pose for a box centred at (x, y, z) rotated by ``yaw`` about z."""
    c, s = math.cos(yaw), math.sin(yaw)
    return make_pose(np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]), np.array([x, y, z]))


# -- classes ------------------------------------------------------------------------------------------

_CLASS_WORDS = [
    # (substring of the lower-cased source class, log class); first match wins
    ("pedestrian", "pedestrian"), ("person", "pedestrian"), ("human", "pedestrian"),
    ("cyclist", "cyclist"), ("bicyclist", "cyclist"), ("motorcyclist", "cyclist"),
    ("bicycle", "cyclist"), ("motorcycle", "cyclist"), ("bike", "cyclist"),
    ("bus", "bus"), ("truck", "truck"), ("trailer", "truck"), ("construction", "truck"), ("van", "car"),
    ("car", "car"), ("vehicle", "car"), ("suv", "car"), ("taxi", "car"),
]


def map_class(name: str) -> str:
    """Source class name -> one of car, truck, bus, pedestrian, cyclist, other."""
    low = name.lower()
    for word, cls in _CLASS_WORDS:
        if word in low:
            return cls
    return "other"


# -- building the log ---------------------------------------------------------------------------------

@dataclass
class ActorBuilder:
    """Collects one actor's timestamped box poses (dropping repeated timestamps)."""

    cls: str
    size: np.ndarray
    source_class: str
    entries: dict[float, np.ndarray] = field(default_factory=dict)
    sizes: list[np.ndarray] = field(default_factory=list)

    def add(self, t: float, pose: np.ndarray, size: np.ndarray | None = None) -> None:
        self.entries.setdefault(float(t), pose)
        if size is not None:
            self.sizes.append(np.asarray(size, dtype=np.float64))


def build_actors(builders: dict[str, ActorBuilder]) -> list:
    from ..model import Actor

    out = []
    for aid, b in builders.items():
        if not b.entries:
            continue
        times = sorted(b.entries)
        size = np.median(np.stack(b.sizes), axis=0) if b.sizes else b.size
        size = np.maximum(size, 1e-3)
        out.append(Actor(str(aid), b.cls, size, Track(np.array(times), np.stack([b.entries[t] for t in times])),
                         False, {"source_class": b.source_class}))
    return out


def make_track(times: list[float], poses: list[np.ndarray]) -> Track | None:
    if not times:
        return None
    order = np.argsort(times, kind="stable")
    ts, ps, last = [], [], None
    for i in order:
        if last is not None and times[i] <= last + 1e-9:
            continue
        ts.append(times[i])
        ps.append(poses[i])
        last = times[i]
    return Track(np.array(ts), np.stack(ps))


def recentre(frames: list[Frame], lidar: list[LidarSweep], actors: list, ego: Track | None,
             offset: np.ndarray) -> None:
    """Subtract ``offset`` [3] from every world translation (keeps the axes; in place)."""
    offset = np.asarray(offset, dtype=np.float64)
    for f in frames:
        f.c2w = f.c2w.copy()
        f.c2w[:3, 3] -= offset
    for s in lidar:
        s.s2w = s.s2w.copy()
        s.s2w[:3, 3] -= offset
    for a in actors:
        poses = a.track.poses.copy()
        poses[:, :3, 3] -= offset
        a.track = Track(a.track.timestamps, poses)
    if ego is not None:
        ego.poses = ego.poses.copy()
        ego.poses[:, :3, 3] -= offset


def retime(frames: list[Frame], lidar: list[LidarSweep], actors: list, ego: Track | None, t0: float) -> None:
    """Subtract ``t0`` from every timestamp (in place)."""
    for f in frames:
        f.timestamp = float(f.timestamp - t0)
    for s in lidar:
        s.timestamp = float(s.timestamp - t0)
    for a in actors:
        a.track = Track(a.track.timestamps - t0, a.track.poses)
    if ego is not None:
        ego.timestamps = ego.timestamps - t0


def finish_log(fmt: str, src: Path, frames: list[Frame], lidar: list[LidarSweep], actors: list,
               ego: Track | None, *, offset: np.ndarray | None = None, t0: float | None = None,
               extra: dict | None = None) -> DriveLog:
    """Assemble the DriveLog: recentre the world on ``offset`` and time on ``t0`` (recorded in ``source``)."""
    if not frames:
        raise ReaderError(src, "frames", "no camera frame to convert (check --cameras / --frames)")
    source: dict[str, Any] = {"format": fmt, "path": str(src)}
    if offset is not None:
        recentre(frames, lidar, actors, ego, offset)
        source["world_offset"] = [float(x) for x in offset]
    if t0 is not None:
        retime(frames, lidar, actors, ego, t0)
        source["time_offset"] = float(t0)
    if extra:
        source.update(extra)
    frames.sort(key=lambda f: (f.timestamp, f.camera))
    lidar.sort(key=lambda s: (s.timestamp, s.sensor))
    return DriveLog(root=src, frames=frames, lidar=lidar, actors=actors, ego=ego, version=1,
                    world_up=np.array([0.0, 0.0, 1.0]), extra={"source": source})


def read_float_records(path: Path, fields: int, layout: str) -> np.ndarray:
    """A raw little-endian float32 file of ``fields``-float records -> [N, fields] float32.

    A size that is not a whole number of records means a truncated file: one ReaderError line saying so.
    ``layout`` names the fields for that message (e.g. "x, y, z, reflectance")."""
    record = 4 * fields
    try:
        size = path.stat().st_size
        raw = np.fromfile(path, dtype="<f4")
    except OSError as exc:
        raise ReaderError(path, "", f"cannot read: {exc}") from None
    if size % record:
        raise ReaderError(path, "points", f"expected float32 records of {fields} ({layout}) = {record} bytes, got "
                                          f"{size} bytes ({size // record} records and {size % record} bytes): "
                                          "the file is truncated")
    return raw.reshape(-1, fields).astype(np.float32)
