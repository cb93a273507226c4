"""Reading, validating and writing drive logs (``<log>/transforms.json``, docs/drive-log.md).

A bad log is refused whole: parsing goes on after the first problem so that every problem is
reported at once, each as ``file: json.path: what was expected``. A log is untrusted input: names
that later become file or folder names (cameras, lidar sensors, actor ids) must be plain names, path
strings must stay inside the log folder (symbolic links are followed: datasets are routinely
symlinked), sizes are bounded before anything is allocated for them, and the JSON is parsed by
:mod:`.safe_load`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .geometry import rotation_error
from .images import MAX_IMAGE_SIDE, decode_problems, image_header
from .lidar_io import npy_problem, points_in, read_points, sidecar_problem
from .lidar_model import LidarSensor, parse_sensor
from .model import CAMERA_MODELS, INTRINSIC_KEYS, Actor, DriveLog, Frame, Intrinsics, LidarSweep, Track
from .safe_load import InputFileError, load_json
from .safe_paths import name_problem, relative_problem
from .shutter import DIRECTIONS, RollingShutter

FORMAT_VERSION = 1
# 1.1 adds lidar sensor models and per-point beam/column/time, 1.2 cameras' rolling shutter (all read by all)
FORMAT_VERSIONS = (1, 1.1, 1.2)
TRANSFORMS = "transforms.json"
ORTHO_TOL = 1e-3  # spec: orthonormal within 1e-3
_KNOWN_TOP = {"simrecon_version", "camera_model", "frames", "lidar", "lidar_sensors", "actors", "ego", "world_up",
              "camera_angle_x", "camera_angle_y", "rolling_shutter"} | set(INTRINSIC_KEYS)
_KNOWN_SWEEP = {"file_path", "transform_matrix", "timestamp", "sensor", "index_path", "time_path"}
_KNOWN_FRAME = {"file_path", "transform_matrix", "camera", "timestamp", "mask_path", "camera_model",
                "rolling_shutter"} | set(
    INTRINSIC_KEYS)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a log."""

    file: str
    path: str  # JSON path such as frames[3].transform_matrix; "" for the file itself
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path}: {self.message}" if self.path else f"{self.file}: {self.message}"


class LogError(ValueError):
    """A log that cannot be loaded; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        head = f"{len(problems)} problem(s) in drive log"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in problems))


class _Parser:
    """Turns the parsed JSON into the model, collecting problems instead of stopping at the first."""

    def __init__(self, root: Path, skip_missing: bool, check_files: bool):
        self.root = root
        self.file = str(root / TRANSFORMS)
        self.skip_missing = skip_missing
        self.check_files = check_files
        self.problems: list[Problem] = []
        self.skipped: list[str] = []
        self.to_decode: list[Path] = []  # images and masks whose header is fine, for a full decode

    def bad(self, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, path, message))

    # -- scalar fields -------------------------------------------------------------------------------
    def number(self, obj: dict, key: str, path: str, required: bool = True, positive: bool = False,
               at_most: float | None = None, unit: str = ""):
        if key not in obj:
            if required:
                self.bad(f"{path}.{key}" if path else key, "missing required key")
            return None
        val = obj[key]
        where = f"{path}.{key}" if path else key
        if isinstance(val, bool) or not isinstance(val, (int, float)):
            self.bad(where, f"expected a number, got {type(val).__name__}")
            return None
        try:
            num = float(val)
        except OverflowError:  # an int beyond the float range (the safe loader maps those to inf already)
            num = math.inf
        if not math.isfinite(num):
            self.bad(where, f"expected a finite number, got {num}")
            return None
        if positive and num <= 0:
            self.bad(where, f"expected a positive number, got {val}")
            return None
        if at_most is not None and num > at_most:
            self.bad(where, f"expected at most {at_most:g}{unit}, got {val}")
            return None
        return num

    def string(self, obj: dict, key: str, path: str, default: str | None = None, required: bool = False):
        where = f"{path}.{key}" if path else key
        if key not in obj:
            if required:
                self.bad(where, "missing required key")
            return default
        if not isinstance(obj[key], str) or not obj[key]:
            self.bad(where, f"expected a non-empty string, got {obj[key]!r}")
            return default
        return obj[key]

    def name(self, obj: dict, key: str, path: str, default: str, what: str) -> str | None:
        """A name that later becomes a file or folder name (safe_paths.name_problem); None when refused."""
        if key not in obj:
            return default
        problem = name_problem(obj[key])
        if problem:
            self.bad(f"{path}.{key}", f"{what} {problem}")
            return None
        return obj[key]

    def matrix(self, obj: dict, key: str, path: str) -> np.ndarray | None:
        where = f"{path}.{key}"
        if key not in obj:
            self.bad(where, "missing required key")
            return None
        try:
            m = np.asarray(obj[key], dtype=np.float64)
        except OverflowError:
            self.bad(where, "expected finite values, got an integer beyond the float range")
            return None
        except (TypeError, ValueError):
            self.bad(where, "expected a 4x4 matrix of numbers")
            return None
        if m.shape == (3, 4):  # instant-ngp style files sometimes omit the bottom row
            m = np.vstack([m, [0.0, 0.0, 0.0, 1.0]])
        if m.shape != (4, 4):
            self.bad(where, f"expected a 4x4 matrix, got shape {m.shape}")
            return None
        if not np.all(np.isfinite(m)):
            self.bad(where, "expected finite values, got NaN or inf")
            return None
        if not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
            self.bad(where, f"expected bottom row [0, 0, 0, 1], got {m[3].tolist()}")
            return None
        ortho, det = rotation_error(m[:3, :3])
        if ortho > ORTHO_TOL or det <= 0:
            self.bad(where, f"expected a proper rotation (orthonormal within {ORTHO_TOL}, det +1), "
                            f"got orthonormality error {ortho:.2g} and det {det:.3g}")
            return None
        return m

    def rel_path(self, obj: dict, key: str, path: str, required: bool = True) -> str | None:
        rel = self.string(obj, key, path, required=required)
        if rel is None:
            return None
        problem = relative_problem(rel)
        if problem is None:  # checked as a string: symbolic links in the log folder are followed
            return rel
        where = f"{path}.{key}"
        if os.path.isabs(rel) or "absolute" in problem:
            self.bad(where, f"expected a path relative to the log folder, got absolute path {rel!r}")
        elif ".." in rel.replace("\\", "/").split("/"):
            self.bad(where, f"path {rel!r} leaves the log folder ('..' is not allowed; symbolic links are followed)")
        else:
            self.bad(where, f"expected a path relative to the log folder: {problem}")
        return None

    # -- sections ------------------------------------------------------------------------------------
    def intrinsics(self, defaults: dict, frame: dict, path: str, image: Path | None) -> Intrinsics | None:
        merged = {k: defaults[k] for k in INTRINSIC_KEYS + ("camera_angle_x", "camera_model") if k in defaults}
        merged.update({k: frame[k] for k in INTRINSIC_KEYS + ("camera_model",) if k in frame})
        if ("w" not in merged or "h" not in merged) and image is not None and image.is_file():
            size = image_header(image)
            if not isinstance(size, str):
                merged.setdefault("w", size[0])
                merged.setdefault("h", size[1])
        # Report intrinsics problems once, on the first frame that has them, not on every frame.
        n_before = len(self.problems)
        src = path if any(k in frame for k in INTRINSIC_KEYS) else ""
        w = self.number(merged, "w", src, positive=True, at_most=MAX_IMAGE_SIDE, unit=" pixels")
        h = self.number(merged, "h", src, positive=True, at_most=MAX_IMAGE_SIDE, unit=" pixels")
        if "fl_x" not in merged and "camera_angle_x" in merged and w:
            ang = self.number(merged, "camera_angle_x", src, positive=True)
            merged["fl_x"] = 0.5 * w / math.tan(0.5 * ang) if ang else None
        fx = self.number(merged, "fl_x", src, positive=True)
        fy = self.number(merged, "fl_y", src, required=False, positive=True) if "fl_y" in merged else fx
        cx = self.number(merged, "cx", src, required=False) if "cx" in merged else (w / 2 if w else None)
        cy = self.number(merged, "cy", src, required=False) if "cy" in merged else (h / 2 if h else None)
        dist = {k: self.number(merged, k, src, required=False) or 0.0 for k in INTRINSIC_KEYS[6:]}
        model = merged.get("camera_model", "OPENCV")
        if model not in CAMERA_MODELS:
            self.bad(f"{src}.camera_model" if src else "camera_model",
                     f"expected one of {', '.join(CAMERA_MODELS)}, got {model!r}")
        if len(self.problems) > n_before:
            if not src:  # shared defaults: dedupe identical problems
                self.problems[n_before:] = [p for p in self.problems[n_before:] if p not in self.problems[:n_before]]
            return None
        if w != int(w) or h != int(h):
            self.bad(src or "w", f"expected integer image size, got {w}x{h}")
            return None
        return Intrinsics(fx, fy, cx, cy, int(w), int(h), model, **dist)

    def frames(self, data: dict, plain: bool) -> list[Frame]:
        raw = data.get("frames")
        if not isinstance(raw, list) or not raw:
            self.bad("frames", "expected a non-empty list of frames" if raw is not None else "missing required key")
            return []
        out = []
        shutter = self.rolling_shutter(data, "")
        for i, fr in enumerate(raw):
            if not isinstance(fr, dict):
                self.bad(f"frames[{i}]", "expected an object")
                continue
            frame = self.frame(data, fr, i, plain)
            if frame is not None:
                frame.rolling_shutter = self.rolling_shutter(fr, f"frames[{i}]") if "rolling_shutter" in fr \
                    else shutter
                out.append(frame)
        return out

    def rolling_shutter(self, obj: dict, path: str) -> RollingShutter | None:
        """``obj``'s ``rolling_shutter`` ({"readout_s": s, "direction": d}); None when absent or refused."""
        where = f"{path}.rolling_shutter" if path else "rolling_shutter"
        raw = obj.get("rolling_shutter")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            self.bad(where, f"expected an object with readout_s and direction, got {raw!r}")
            return None
        readout = self.number(raw, "readout_s", where)
        if readout is not None and not 0 <= readout <= 1:
            self.bad(f"{where}.readout_s", f"expected seconds in [0, 1], got {readout}")
            return None
        direction = raw.get("direction", "top_to_bottom")
        if direction not in DIRECTIONS:
            self.bad(f"{where}.direction", f"expected one of {', '.join(DIRECTIONS)}, got {direction!r}")
            return None
        return RollingShutter(readout, direction) if readout is not None else None

    def frame(self, data: dict, fr: dict, i: int, plain: bool) -> Frame | None:
        path = f"frames[{i}]"
        rel = self.rel_path(fr, "file_path", path)
        c2w = self.matrix(fr, "transform_matrix", path)
        ts = self.number(fr, "timestamp", path, required=not plain)
        if ts is None and plain and "timestamp" not in fr:
            ts = i / 10.0
        camera = self.name(fr, "camera", path, "camera", "camera name")
        mask = self.rel_path(fr, "mask_path", path, required=False) if "mask_path" in fr else None
        image = self.root / rel if rel else None
        if self.check_files and image is not None and not image.is_file():
            if self.skip_missing:
                self.skipped.append(rel)
                return None
            self.bad(f"{path}.file_path", f"image {rel!r} does not exist (use --skip-missing to skip it)")
            image = None
        intr = self.intrinsics(data, fr, path, image)
        if self.check_files and image is not None and intr is not None:
            self.image_file(image, rel, intr, f"{path}.file_path", "image")
        if self.check_files and mask:
            self.image_file(self.root / mask, mask, intr, f"{path}.mask_path", "mask")
        if any(x is None for x in (rel, c2w, ts, intr, camera)):
            return None
        extra = {k: v for k, v in fr.items() if k not in _KNOWN_FRAME}
        return Frame(rel, c2w, intr, camera, ts, mask, extra)

    def image_file(self, full: Path, rel: str, intr: Intrinsics | None, where: str, kind: str) -> None:
        """Check an image or mask by its header (exists, readable, w x h); queue it for a full decode."""
        if not full.is_file():
            self.bad(where, f"{kind} {rel!r} does not exist")
            return
        size = image_header(full)
        if isinstance(size, str):
            self.bad(where, f"{kind} {rel!r} is not a readable image ({size})")
        elif intr is not None and size != (intr.w, intr.h):
            self.bad(where, f"{kind} {rel!r} is {size[0]}x{size[1]}, expected {intr.w}x{intr.h} (w x h)")
        else:
            self.to_decode.append(full)

    def lidar_sensors(self, data: dict) -> dict[str, LidarSensor]:
        """The v1.1 ``lidar_sensors`` section: sensor name -> model (data.lidar_model)."""
        raw = data.get("lidar_sensors", {})
        if not isinstance(raw, dict):
            self.bad("lidar_sensors", f"expected an object mapping sensor names to sensors, got {type(raw).__name__}")
            return {}
        out = {}
        for name, spec in raw.items():
            problem = name_problem(name)
            if problem:
                self.bad(f"lidar_sensors.{name}", f"sensor name {problem}")
                continue
            sensor = parse_sensor(spec, f"lidar_sensors.{name}", self.bad)
            if sensor is not None:
                out[name] = sensor
        return out

    def sweep_sidecars(self, sw: dict, path: str, rel: str | None, sensor: str | None,
                       declared: set) -> tuple[str | None, str | None, bool]:
        """(index_path, time_path, ok) of a v1.1 sweep; sidecars are checked by their headers against the points."""
        found, ok = [], True
        for key in ("index_path", "time_path"):
            side = self.rel_path(sw, key, path, required=False) if key in sw else None
            ok = ok and (side is not None or key not in sw)
            if side and self.check_files:
                full = self.root / side
                points = self.root / rel if rel else None
                ok_points = points is not None and points.is_file() and (points.suffix.lower() != ".npy"
                                                                         or npy_problem(points) is None)
                n = points_in(points) if ok_points else None  # a bad points file is reported on its own
                problem = sidecar_problem(full, key, n) if full.is_file() else "does not exist"
                if problem:
                    self.bad(f"{path}.{key}", f"file {side!r}: {problem}")
                    ok = False
            found.append(side)
        if found[0] and sensor is not None and sensor not in declared:  # a declared but bad sensor: reported there
            self.bad(f"{path}.sensor", f"sensor {sensor!r} has beam/column indices (index_path) but no entry in "
                                       f"lidar_sensors (known: {', '.join(sorted(declared)) or 'none'})")
            ok = False
        return found[0], found[1], ok

    def lidar(self, data: dict, declared: set | None = None) -> list[LidarSweep]:
        """The sweeps; ``declared``: the sensor names of the ``lidar_sensors`` section (v1.1)."""
        raw = data.get("lidar", [])
        if not isinstance(raw, list):
            self.bad("lidar", "expected a list of sweeps")
            return []
        out = []
        for i, sw in enumerate(raw):
            path = f"lidar[{i}]"
            if not isinstance(sw, dict):
                self.bad(path, "expected an object")
                continue
            rel = self.rel_path(sw, "file_path", path)
            s2w = self.matrix(sw, "transform_matrix", path)
            ts = self.number(sw, "timestamp", path)
            sensor = self.name(sw, "sensor", path, "lidar", "sensor name")
            if rel and self.check_files:
                self.lidar_file(rel, f"{path}.file_path")
            index, times, ok = self.sweep_sidecars(sw, path, rel, sensor, declared or set())
            if any(x is None for x in (rel, s2w, ts, sensor)) or not ok:
                continue
            extra = {k: v for k, v in sw.items() if k not in _KNOWN_SWEEP}
            out.append(LidarSweep(rel, s2w, ts, sensor, extra, index, times))
        return out

    def lidar_file(self, rel: str, where: str) -> None:
        full = self.root / rel
        if not full.is_file():
            self.bad(where, f"lidar file {rel!r} does not exist")
            return
        try:
            if full.suffix.lower() == ".npy":
                problem = npy_problem(full)  # header only: cheap on big sweeps, bounded before any allocation
                if problem:
                    self.bad(where, f"lidar file {rel!r}: {problem}")
            elif full.suffix.lower() == ".ply":
                read_points(full)
            else:
                self.bad(where, f"lidar file {rel!r}: expected a .npy or .ply file")
        except (ValueError, OSError, KeyError) as exc:
            self.bad(where, f"lidar file {rel!r} is unreadable: {exc}")

    def track(self, raw: Any, path: str) -> Track | None:
        if not isinstance(raw, list) or not raw:
            self.bad(path, "expected a non-empty list of {timestamp, transform_matrix}")
            return None
        times, poses, ok = [], [], True
        for j, entry in enumerate(raw):
            ep = f"{path}[{j}]"
            if not isinstance(entry, dict):
                self.bad(ep, "expected an object")
                ok = False
                continue
            t = self.number(entry, "timestamp", ep)
            m = self.matrix(entry, "transform_matrix", ep)
            if t is None or m is None:
                ok = False
                continue
            if times and t <= times[-1]:
                self.bad(f"{ep}.timestamp", f"timestamps must be strictly increasing, got {t} after {times[-1]}")
                ok = False
            times.append(t)
            poses.append(m)
        return Track(np.array(times), np.stack(poses)) if ok else None

    def actors(self, data: dict) -> list[Actor]:
        raw = data.get("actors", [])
        if not isinstance(raw, list):
            self.bad("actors", "expected a list of actors")
            return []
        out, seen = [], {}
        for i, a in enumerate(raw):
            path = f"actors[{i}]"
            if not isinstance(a, dict):
                self.bad(path, "expected an object")
                continue
            aid = a.get("id")
            if isinstance(aid, (int, float)) and not isinstance(aid, bool):
                aid = str(aid)  # tolerate numeric ids; they are names, not numbers
            bad_name = name_problem(aid) if isinstance(aid, str) and aid else None
            if not isinstance(aid, str) or not aid:
                self.bad(f"{path}.id", f"expected a non-empty string id, got {a.get('id')!r}")
                aid = None
            elif bad_name:  # ids name mesh files and output folders
                self.bad(f"{path}.id", f"actor id {bad_name}")
                aid = None
            elif aid in seen:
                self.bad(f"{path}.id", f"actor id {aid!r} repeats actors[{seen[aid]}].id; ids must be unique")
            else:
                seen[aid] = i
            cls = self.string(a, "class", path, required=True)
            size = a.get("size")
            try:
                size_arr = np.asarray(size, dtype=np.float64)
                size_ok = size_arr.shape == (3,) and np.all(np.isfinite(size_arr)) and np.all(size_arr > 0)
            except (TypeError, ValueError, OverflowError):
                size_ok = False
            if not size_ok:
                self.bad(f"{path}.size", f"expected [length, width, height] > 0 in metres, got {size!r}")
            static = a.get("static", False)
            if not isinstance(static, bool):
                self.bad(f"{path}.static", f"expected true or false, got {static!r}")
            track = self.track(a.get("track"), f"{path}.track")
            if aid and cls and size_ok and track is not None and isinstance(static, bool):
                extra = {k: v for k, v in a.items() if k not in {"id", "class", "size", "track", "static"}}
                out.append(Actor(aid, cls, size_arr, track, static, extra))
        return out


def _estimate_up(frames: list[Frame]) -> np.ndarray:
    """World up of a plain nerfstudio capture: mean of the cameras' up axes (as nerfstudio does)."""
    if not frames:
        return np.array([0.0, 0.0, 1.0])
    up = np.mean([f.c2w[:3, 1] for f in frames], axis=0)
    n = np.linalg.norm(up)
    return up / n if n > 1e-9 else np.array([0.0, 0.0, 1.0])


def _parse(p: _Parser, data: Any) -> DriveLog | None:
    """The log from already-loaded JSON ``data``; problems go to ``p`` (None when there are any)."""
    if not isinstance(data, dict):
        p.bad("", f"expected a JSON object at the top level, got {type(data).__name__}")
        return None
    version = data.get("simrecon_version")
    plain = version is None
    if not plain and (isinstance(version, bool) or version not in FORMAT_VERSIONS):
        p.bad("simrecon_version", f"expected {FORMAT_VERSION}, got {version!r} (1.1 and 1.2 are read too: lidar "
                                 f"sensor models, rolling shutter)")
    frames = p.frames(data, plain)
    sensors = p.lidar_sensors(data)
    raw_sensors = data.get("lidar_sensors")
    lidar = p.lidar(data, set(raw_sensors) if isinstance(raw_sensors, dict) else set())
    actors = p.actors(data)
    ego = p.track(data["ego"], "ego") if "ego" in data else None
    world_up = np.array([0.0, 0.0, 1.0])
    if "world_up" in data:
        try:
            world_up = np.asarray(data["world_up"], dtype=np.float64)
            assert world_up.shape == (3,) and np.all(np.isfinite(world_up)) and np.linalg.norm(world_up) > 0
            world_up = world_up / np.linalg.norm(world_up)
        except (AssertionError, TypeError, ValueError, OverflowError):
            p.bad("world_up", f"expected a non-zero [x, y, z] vector, got {data['world_up']!r}")
    elif plain:
        world_up = _estimate_up(frames)
    if not frames and p.skipped and not any(pr.path.startswith("frames") for pr in p.problems):
        p.bad("frames", "no frame has an image (all were skipped as missing)")
    if p.problems:
        return None
    extra = {k: v for k, v in data.items() if k not in _KNOWN_TOP}
    return DriveLog(p.root, frames, lidar, actors, ego, version, world_up, extra, sensors)


def parse_log(root: Path, data: Any, skip_missing: bool = False, check_files: bool = True):
    """Parse already-loaded JSON ``data``; returns (DriveLog or None, problems, skipped image paths).

    With ``check_files``, images and masks are checked by their headers (see ``validate_log`` for a
    full decode)."""
    p = _Parser(Path(root), skip_missing, check_files)
    log = _parse(p, data)
    return log, p.problems, p.skipped


def validate_log(path: str | Path, skip_missing: bool = False, decode: bool = True,
                 progress: Callable[[int, int, str], None] | None = None) -> tuple[DriveLog | None, list[Problem]]:
    """Check a log folder (or its transforms.json); returns (log, []) or (None, every problem).

    ``decode`` decodes every image and mask in full (in parallel; ``progress(done, total, path)`` after
    each), so a file cut short is found here and not half way through training; without it, images
    are checked by their headers only (``simrecon validate --quick``, ``load_log``)."""
    root, file = _locate(Path(path))
    if file is None:
        return None, [Problem(str(path), "", "not a drive log: no transforms.json in this folder")]
    try:
        data = load_json(file)
    except InputFileError as exc:
        return None, [Problem(exc.file, "", exc.detail)]
    p = _Parser(root, skip_missing, check_files=True)
    log = _parse(p, data)
    if decode:
        p.problems += [Problem(str(f), "", why) for f, why in decode_problems(p.to_decode, progress)]
    return (log, []) if not p.problems else (None, p.problems)


def load_log(path: str | Path, skip_missing: bool = False) -> DriveLog:
    """Load and validate a drive log (images checked by their headers); raises LogError listing every problem."""
    log, problems = validate_log(path, skip_missing=skip_missing, decode=False)
    if problems:
        raise LogError(problems)
    assert log is not None
    return log


def _locate(path: Path) -> tuple[Path, Path | None]:
    if path.is_file():
        return path.parent, path
    file = path / TRANSFORMS
    return path, (file if file.is_file() else None)


def log_to_json(log: DriveLog) -> dict:
    """The transforms.json content for ``log`` (shared intrinsics at the top, per-frame overrides)."""
    v11 = bool(log.lidar_sensors) or any(s.index_path or s.time_path for s in log.lidar)
    v12 = any(f.rolling_shutter is not None for f in log.frames)
    out: dict[str, Any] = {"simrecon_version": 1.2 if v12 else 1.1 if v11 else FORMAT_VERSION}
    base = log.frames[0].intrinsics.to_json() if log.frames else {}
    out.update(base)
    out["world_up"] = [float(x) for x in log.world_up]
    out.update(log.extra)
    frames = []
    for f in log.frames:
        entry: dict[str, Any] = {"file_path": f.file_path, "camera": f.camera, "timestamp": float(f.timestamp)}
        own = f.intrinsics.to_json()
        entry.update({k: v for k, v in own.items() if base.get(k) != v})
        for k in base:  # a default the frame does not have (distortion set at top, zero here)
            if k not in own and k.startswith(("k", "p")):
                entry[k] = 0.0
        entry["transform_matrix"] = np.asarray(f.c2w).tolist()
        if f.mask_path:
            entry["mask_path"] = f.mask_path
        if f.rolling_shutter is not None:
            entry["rolling_shutter"] = f.rolling_shutter.to_json()
        entry.update(f.extra)
        frames.append(entry)
    out["frames"] = frames
    if log.lidar_sensors:
        out["lidar_sensors"] = {name: sensor.to_json() for name, sensor in log.lidar_sensors.items()}
    if log.lidar:
        out["lidar"] = [
            {"file_path": s.file_path, "sensor": s.sensor, "timestamp": float(s.timestamp),
             "transform_matrix": np.asarray(s.s2w).tolist(),
             **({"index_path": s.index_path} if s.index_path else {}),
             **({"time_path": s.time_path} if s.time_path else {}), **s.extra}
            for s in log.lidar
        ]
    if log.actors:
        out["actors"] = [
            {"id": a.id, "class": a.cls, "size": [float(x) for x in a.size], "static": bool(a.static),
             "track": a.track.to_json(), **a.extra}
            for a in log.actors
        ]
    if log.ego is not None:
        out["ego"] = log.ego.to_json()
    return out


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_log(log: DriveLog, out_dir: str | Path | None = None) -> Path:
    """Write ``log``'s transforms.json into ``out_dir`` (default: ``log.root``); images are the caller's."""
    out = Path(out_dir) if out_dir is not None else Path(log.root)
    out.mkdir(parents=True, exist_ok=True)
    target = out / TRANSFORMS
    atomic_write_text(target, json.dumps(log_to_json(log), indent=1))
    return target
