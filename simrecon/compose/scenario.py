"""Scenario files (docs/scenarios.md): a YAML description of a drive that never happened.

``load_scenario(path)`` parses and validates the file (pydantic schema: types, unknown keys) and then
checks it against the scene it names (actors, cameras and times that exist). Every refusal is ONE line
``file: field.path: what is wrong`` raised as ``ScenarioError`` (a ``ValueError``).

The result, a ``Plan``, is everything the composer needs: the scene, the render times, the cameras
(intrinsics and camera-to-vehicle mount), the edited ego trajectory and the edited actor layout.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..data.geometry import invert_pose, make_pose, rot_x, rot_y, rot_z
from ..data.model import DriveLog, Intrinsics, Track
from ..data.safe_load import InputFileError, loads_yaml
from ..data.safe_paths import name_problem
from ..data.scene_api import RenderableScene

OUTPUT_KINDS = ("rgb", "depth", "instance", "semantic", "boxes")
LIDAR_OUTPUT = "lidar"  # sweeps of the log's lidar at the ego's pose (compose/lidar.py); asked for, never default
VISIBILITY_METHODS = ("render", "box", "none")
TIME_EPS = 1e-6
MAX_FRAMES = 100_000  # camera frames one scenario may render
MAX_PIXELS = 64 << 20  # pixels of one rendered camera frame (64 MP: 8K is 33 MP)
# OpenGL camera axes in the vehicle frame for a camera looking forward: x right (= -y), y up (= z), z back (= -x).
_GL_IN_VEHICLE = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


class ScenarioError(ValueError):
    """A scenario that cannot be rendered; the message is one line naming the file and the field."""

    def __init__(self, file: str | Path, path: str, message: str):
        self.file, self.path, self.message = str(file), path, message
        super().__init__(f"{self.file}: {path}: {message}" if path else f"{self.file}: {message}")


# ---------------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------------
class _Strict(BaseModel):
    # allow_inf_nan=False: a YAML .nan or .inf in any number is refused with its field named, before it can
    # reach a pose (and a JSON record that cannot hold it).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _check_matrix(m: Optional[list[list[float]]]) -> Optional[list[list[float]]]:
    if m is None:
        return m
    a = np.asarray(m, dtype=float)
    if a.shape == (3, 4):
        a = np.vstack([a, [0, 0, 0, 1]])
    if a.shape != (4, 4):
        raise ValueError(f"expected a 4x4 matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError("expected finite numbers")
    r = a[:3, :3]
    if np.abs(r @ r.T - np.eye(3)).max() > 1e-3 or np.linalg.det(r) <= 0:
        raise ValueError("the rotation part is not a proper rotation (orthonormal, det +1)")
    return a.tolist()


class Waypoint(_Strict):
    """A timed pose: ``position`` [x, y(, z)] and ``yaw`` (degrees), or a 4x4 ``matrix``."""

    t: float
    position: Optional[list[float]] = None
    yaw: Optional[float] = None
    pitch: float = 0.0
    roll: float = 0.0
    matrix: Optional[list[list[float]]] = None

    @field_validator("position")
    @classmethod
    def _pos(cls, v):
        if v is not None and len(v) not in (2, 3):
            raise ValueError(f"expected [x, y] or [x, y, z], got {len(v)} numbers")
        return v

    @field_validator("matrix")
    @classmethod
    def _m(cls, v):
        return _check_matrix(v)

    @model_validator(mode="after")
    def _one(self):
        if (self.position is None) == (self.matrix is None):
            raise ValueError("give either position (with optional yaw) or matrix")
        return self


class TimeSpec(_Strict):
    start: Optional[float] = None
    end: Optional[float] = None
    rate: Optional[float] = Field(None, gt=0)
    times: Optional[list[float]] = None

    @model_validator(mode="after")
    def _either(self):
        if self.times is not None and (self.start is not None or self.end is not None or self.rate is not None):
            raise ValueError("give either times or start/end/rate, not both")
        if self.times is not None and not self.times:
            raise ValueError("times is empty")
        return self


class IntrinsicsSpec(_Strict):
    w: int = Field(gt=0, le=16384)
    h: int = Field(gt=0, le=16384)
    fl_x: Optional[float] = Field(None, gt=0)
    fl_y: Optional[float] = Field(None, gt=0)
    cx: Optional[float] = None
    cy: Optional[float] = None
    hfov_deg: Optional[float] = Field(None, gt=0, lt=180)

    @model_validator(mode="after")
    def _focal(self):
        if (self.fl_x is None) == (self.hfov_deg is None):
            raise ValueError("give exactly one of fl_x (pixels) and hfov_deg")
        return self

    def build(self) -> Intrinsics:
        fx = self.fl_x if self.fl_x is not None else 0.5 * self.w / math.tan(math.radians(self.hfov_deg) / 2)
        fy = self.fl_y if self.fl_y is not None else fx
        cx = self.cx if self.cx is not None else self.w / 2
        cy = self.cy if self.cy is not None else self.h / 2
        return Intrinsics(float(fx), float(fy), float(cx), float(cy), self.w, self.h, model="PINHOLE")


class MountSpec(_Strict):
    """Camera-to-vehicle: position (vehicle frame, metres) and yaw/pitch/roll (degrees), or a 4x4 matrix."""

    position: Optional[list[float]] = None
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    matrix: Optional[list[list[float]]] = None

    @field_validator("position")
    @classmethod
    def _pos(cls, v):
        if v is not None and len(v) != 3:
            raise ValueError(f"expected [x, y, z], got {len(v)} numbers")
        return v

    @field_validator("matrix")
    @classmethod
    def _m(cls, v):
        return _check_matrix(v)

    @model_validator(mode="after")
    def _one(self):
        if self.matrix is not None and (self.position is not None or self.yaw or self.pitch or self.roll):
            raise ValueError("give either matrix or position/yaw/pitch/roll, not both")
        if self.matrix is None and self.position is None:
            raise ValueError("give position (with optional yaw/pitch/roll) or matrix")
        return self

    def build(self) -> np.ndarray:
        if self.matrix is not None:
            return np.asarray(self.matrix, dtype=float)
        return make_pose(_vehicle_rotation(self.yaw, self.pitch, self.roll) @ _GL_IN_VEHICLE,
                         np.asarray(self.position, dtype=float))


class CameraSpec(_Strict):
    name: str = Field(min_length=1)
    intrinsics: Optional[IntrinsicsSpec] = None
    mount: Optional[MountSpec] = None
    scale: Optional[float] = Field(None, gt=0, le=8)

    @field_validator("name")
    @classmethod
    def _plain(cls, v):
        problem = name_problem(v)  # the name becomes a folder of every output
        if problem:
            raise ValueError(problem)
        return v


class EgoSpec(_Strict):
    lateral: float = 0.0
    longitudinal: float = 0.0
    trajectory: Optional[list[Waypoint]] = None


class RotateSpec(_Strict):
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0


class ActorSpec(_Strict):
    id: str = Field(min_length=1)
    source: Optional[str] = None
    remove: bool = False
    translate: Optional[list[float]] = None
    rotate: Optional[RotateSpec] = None
    speed: Optional[float] = Field(None, gt=0)
    time_offset: float = 0.0
    trajectory: Optional[list[Waypoint]] = None

    @field_validator("translate")
    @classmethod
    def _t(cls, v):
        if v is not None and len(v) != 3:
            raise ValueError(f"expected [x, y, z] in the box frame, got {len(v)} numbers")
        return v


class ScenarioSpec(_Strict):
    version: Literal[1] = 1
    name: Optional[str] = None
    description: Optional[str] = None
    scene: str = Field(min_length=1)
    time: TimeSpec = TimeSpec()
    cameras: Optional[list[CameraSpec]] = None
    ego: EgoSpec = EgoSpec()
    actors: list[ActorSpec] = []
    outputs: list[Literal["rgb", "depth", "instance", "semantic", "boxes", "lidar"]] = list(OUTPUT_KINDS)
    visibility: Literal["render", "box", "none"] = "render"
    tile_pixels: int = Field(1 << 19, ge=1024)
    drive: Optional[dict[str, Any]] = None  # closed-loop settings (simrecon drive reads them; docs/simulation.md)

    @field_validator("cameras", mode="before")
    @classmethod
    def _names(cls, v):
        if isinstance(v, list):
            return [{"name": c} if isinstance(c, str) else c for c in v]
        return v


# ---------------------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------------------
def _fmt_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that holds the field at ``loc`` (for listing known keys)."""
    model: Any = ScenarioSpec
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        model = _unwrap(model.model_fields[part].annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    while True:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if typing.get_origin(tp) in (list, typing.Union) or str(typing.get_origin(tp)) == "<class 'types.UnionType'>":
            if not args:
                return tp
            tp = args[0]
            continue
        return tp


def _pydantic_message(file: Path, exc: ValidationError) -> ScenarioError:
    err = exc.errors()[0]
    loc = tuple(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        known = ", ".join(model.model_fields) if model else ""
        return ScenarioError(file, _fmt_loc(loc), f"unknown key {loc[-1]!r}" + (f" (known: {known})" if known else ""))
    if kind == "missing":
        return ScenarioError(file, _fmt_loc(loc), "missing required key")
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind not in ("value_error", "assertion_error") and "input" in err and not isinstance(err["input"], (dict, list)):
        msg += f", got {err['input']!r}"
    return ScenarioError(file, _fmt_loc(loc), msg)


# ---------------------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------------------
def _vehicle_rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation of a vehicle-like frame (x forward, y left, z up): yaw left-positive about z, pitch
    nose-up-positive, roll about x (right-hand), applied as Rz(yaw) Ry(-pitch) Rx(roll)."""
    return rot_z(math.radians(yaw_deg)) @ rot_y(-math.radians(pitch_deg)) @ rot_x(math.radians(roll_deg))


def _waypoint_track(wps: list[Waypoint], z_default: float, file: Path, where: str) -> Track:
    times = np.array([w.t for w in wps], dtype=float)
    for i in range(1, len(times)):
        if times[i] <= times[i - 1]:
            raise ScenarioError(file, f"{where}[{i}].t", f"waypoint times must increase ({times[i]} after "
                                                         f"{times[i - 1]})")
    pos = []
    for w in wps:
        if w.matrix is not None:
            pos.append(np.asarray(w.matrix, dtype=float)[:3, 3])
        else:
            p = list(w.position) + ([z_default] if len(w.position) == 2 else [])
            pos.append(np.asarray(p, dtype=float))
    poses = []
    for i, w in enumerate(wps):
        if w.matrix is not None:
            poses.append(np.asarray(w.matrix, dtype=float))
            continue
        if w.yaw is not None:
            yaw = w.yaw
        elif len(wps) == 1:
            yaw = 0.0
        else:  # face the direction of travel
            a, b = (pos[i], pos[i + 1]) if i + 1 < len(wps) else (pos[i - 1], pos[i])
            d = b - a
            yaw = math.degrees(math.atan2(d[1], d[0])) if np.hypot(d[0], d[1]) > 1e-9 else 0.0
        poses.append(make_pose(_vehicle_rotation(yaw, w.pitch, w.roll), pos[i]))
    return Track(times, np.stack(poses))


# ---------------------------------------------------------------------------------------------------------
# The resolved plan
# ---------------------------------------------------------------------------------------------------------
@dataclass
class PlannedCamera:
    name: str
    intrinsics: Intrinsics
    cam_to_vehicle: np.ndarray  # [4, 4], OpenGL camera axes
    logged: bool


@dataclass
class PlannedActor:
    """An actor of the composed scene: ``source`` is the scene actor whose appearance it has."""

    id: str
    source: str
    cls: str
    size: np.ndarray
    instance_id: int
    pose_fn: Callable[[float], Optional[np.ndarray]]
    inserted: bool = False
    edits: list[str] = field(default_factory=list)

    def pose_at(self, t: float) -> Optional[np.ndarray]:
        return self.pose_fn(t)


@dataclass
class Plan:
    """A validated scenario resolved against its scene."""

    file: Path
    spec: ScenarioSpec
    name: str
    scene_path: Path
    scene: RenderableScene
    times: np.ndarray
    cameras: list[PlannedCamera]
    actors: list[PlannedActor]  # present (not removed) actors; instance id k = actors[k - 1]
    removed: list[str]
    ego_fn: Callable[[float], np.ndarray]
    logged_ego_fn: Callable[[float], np.ndarray]
    outputs: tuple[str, ...]
    text: str  # the scenario file's text (copied into outputs)

    @property
    def log(self) -> DriveLog:
        return self.scene.log

    def frame_keys(self) -> list[tuple[str, int]]:
        """(camera, time index) of every frame, in render order."""
        return [(c.name, k) for k in range(len(self.times)) for c in self.cameras]

    def camera(self, name: str) -> PlannedCamera:
        return next(c for c in self.cameras if c.name == name)

    def c2w(self, cam: PlannedCamera, t: float) -> np.ndarray:
        return self.ego_fn(t) @ cam.cam_to_vehicle

    def actor(self, actor_id: str) -> PlannedActor:
        return next(a for a in self.actors if a.id == actor_id)


def _ego_track(log: DriveLog) -> tuple[Track, bool]:
    """The log's vehicle-to-world track; without one, the first camera's poses serve as the vehicle's."""
    if log.ego is not None and len(log.ego):
        return log.ego, True
    cams = log.cameras
    frames = cams[sorted(cams)[0]]
    gl_to_vehicle = np.eye(4)
    gl_to_vehicle[:3, :3] = _GL_IN_VEHICLE
    poses = np.stack([f.c2w @ invert_pose(gl_to_vehicle) for f in frames])
    times = np.array([f.timestamp for f in frames])
    keep = np.concatenate([[True], np.diff(times) > 0])
    return Track(times[keep], poses[keep]), False


def _log_camera_rate_times(log: DriveLog, camera: str) -> np.ndarray:
    return np.array(sorted({round(f.timestamp, 9) for f in log.cameras[camera]}), dtype=float)


def _read_spec(file: Path) -> tuple[ScenarioSpec, str]:
    if not file.exists():
        raise FileNotFoundError(f"{file}: no such scenario file")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(file, "", f"cannot read: {exc}") from None
    try:
        raw = loads_yaml(text, file)
    except InputFileError as exc:
        raise ScenarioError(file, "", exc.detail) from None
    if not isinstance(raw, dict):
        raise ScenarioError(file, "", f"expected a mapping of scenario keys, got {type(raw).__name__}")
    try:
        return ScenarioSpec.model_validate(raw), text
    except ValidationError as exc:
        raise _pydantic_message(file, exc) from None


def read_mapping(path: Path, what: str, expected: str) -> dict:
    """The YAML mapping in ``path`` (``what``: the kind of file, for a missing one; ``expected``: what the top
    level should be); a one-line ScenarioError (or FileNotFoundError) otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such {what}")
    try:
        raw = loads_yaml(path.read_text(encoding="utf-8"), path)
    except UnicodeDecodeError as exc:
        raise ScenarioError(path, "", f"cannot read: not UTF-8 text ({exc.reason})") from None
    except InputFileError as exc:
        raise ScenarioError(path, "", exc.detail) from None
    if not isinstance(raw, dict):
        raise ScenarioError(path, "", f"expected {expected}")
    return raw


def validated(path: Path, model: type[BaseModel], raw: dict) -> Any:
    """``model`` from ``raw``, its first problem a one-line ScenarioError naming ``path`` and the field."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ScenarioError(path, _fmt_loc(tuple(err["loc"])),
                            "unknown key" if err["type"] == "extra_forbidden" else err["msg"]) from None


def parse_scenario(path: str | Path) -> ScenarioSpec:
    """Schema-check a scenario file without opening its scene."""
    return _read_spec(Path(path))[0]


def load_scenario(path: str | Path, scene: RenderableScene | None = None, renderer: str = "fast") -> Plan:
    """Parse, validate and resolve a scenario. ``scene`` overrides the scene the file names (tests, scoring);
    ``renderer`` is how the named scene renders (``open_scene``)."""
    from .scenes import open_scene

    file = Path(path)
    spec, text = _read_spec(file)
    scene_path = (file.parent / spec.scene).resolve() if not Path(spec.scene).is_absolute() else Path(spec.scene)
    if scene is None:
        try:
            scene = open_scene(scene_path, renderer)
        except (ValueError, FileNotFoundError) as exc:
            raise ScenarioError(file, "scene", str(exc)) from None
    return resolve(spec, scene, file, scene_path, text)


@dataclass
class _Where:
    """What every part of ``resolve`` reports errors against: the scenario file and its log."""

    file: Path
    log: DriveLog
    scene_path: Path

    def error(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(self.file, path, message)


def _resolve_ego(spec: EgoSpec, log: DriveLog, at: _Where) -> tuple[Callable[[float], np.ndarray],
                                                                     Callable[[float], np.ndarray]]:
    """(edited ego pose at t, logged ego pose at t): vehicle-to-world [4, 4]."""
    ego_track, _ = _ego_track(log)

    def logged_ego(t: float) -> np.ndarray:
        return ego_track.pose_at(t, hold=True)

    base = logged_ego
    if spec.trajectory is not None:
        z0 = float(logged_ego(spec.trajectory[0].t)[2, 3])
        new_track = _waypoint_track(spec.trajectory, z0, at.file, "ego.trajectory")
        base = lambda t: new_track.pose_at(t, hold=True)  # noqa: E731
    offset = make_pose(np.eye(3), np.array([spec.longitudinal, spec.lateral, 0.0]))

    def ego_fn(t: float) -> np.ndarray:
        return base(t) @ offset

    return ego_fn, logged_ego


def _resolve_camera(c: CameraSpec, where: str, logged_ego: Callable[[float], np.ndarray],
                    at: _Where) -> PlannedCamera:
    """One camera: a logged one (its intrinsics and mount unless the scenario overrides them) or a new one."""
    cams = at.log.cameras
    if c.name in cams:
        first = cams[c.name][0]
        li = first.intrinsics
        intr = c.intrinsics.build() if c.intrinsics is not None else Intrinsics(
            li.fl_x, li.fl_y, li.cx, li.cy, li.w, li.h, model="PINHOLE")
        mount = c.mount.build() if c.mount is not None else invert_pose(logged_ego(first.timestamp)) @ first.c2w
        logged = c.intrinsics is None and c.mount is None
    else:
        cam_names = ", ".join(sorted(cams)) or "none"
        for key in ("intrinsics", "mount"):
            if getattr(c, key) is None:
                raise at.error(f"{where}.{key}", f"camera {c.name!r} is not in the log (cameras: {cam_names}): "
                                                 f"a new camera needs {key if key == 'intrinsics' else 'a mount'}")
        intr, mount, logged = c.intrinsics.build(), c.mount.build(), False
    if c.scale is not None:
        intr = intr.scaled(c.scale)
        if intr.w < 1 or intr.h < 1:
            raise at.error(f"{where}.scale", f"scale {c.scale} leaves an empty image")
    if intr.w * intr.h > MAX_PIXELS:
        raise at.error(f"{where}.scale" if c.scale is not None else f"{where}.intrinsics",
                       f"{intr.w}x{intr.h} pixels: more than {MAX_PIXELS >> 20} MP per frame")
    return PlannedCamera(c.name, intr, mount, logged)


def _resolve_cameras(spec: ScenarioSpec, logged_ego: Callable[[float], np.ndarray], at: _Where) -> list[PlannedCamera]:
    specs = spec.cameras if spec.cameras is not None else [CameraSpec(name=n) for n in sorted(at.log.cameras)]
    if not specs:
        raise at.error("cameras", "no cameras to render")
    cameras: list[PlannedCamera] = []
    for i, c in enumerate(specs):
        if any(p.name == c.name for p in cameras):
            raise at.error(f"cameras[{i}].name", f"camera {c.name!r} is listed twice")
        cameras.append(_resolve_camera(c, f"cameras[{i}]", logged_ego, at))
    return cameras


def _resolve_times(ts: TimeSpec, cameras: list[PlannedCamera], at: _Where) -> np.ndarray:
    """The render times [T] in seconds: listed, at a rate, or the first logged camera's frame times."""
    t0, t1 = at.log.time_span
    span = f"the log covers {t0:.3f} to {t1:.3f} s"
    if ts.times is not None:
        times = np.array(ts.times, dtype=float)
        for i, t in enumerate(times):
            if not (t0 - TIME_EPS <= t <= t1 + TIME_EPS):
                raise at.error(f"time.times[{i}]", f"{t} s is outside the log ({span})")
        if np.any(np.diff(times) <= 0):
            raise at.error("time.times", "times must increase")
        return _bounded(times, cameras, at)
    start = t0 if ts.start is None else ts.start
    end = t1 if ts.end is None else ts.end
    for key, v in (("start", start), ("end", end)):
        if not (t0 - TIME_EPS <= v <= t1 + TIME_EPS):
            raise at.error(f"time.{key}", f"{v} s is outside the log ({span})")
    if end < start:
        raise at.error("time.end", f"end {end} s is before start {start} s")
    if ts.rate is not None:
        n = math.floor((end - start) * ts.rate + 1e-6) + 1
        if n * len(cameras) > MAX_FRAMES:  # checked before anything of that size is allocated
            raise at.error("time.rate", f"{ts.rate} Hz over {end - start:.3f} s is {n} times x {len(cameras)} "
                                        f"camera(s): more than {MAX_FRAMES} frames")
        return start + np.arange(n) / ts.rate
    ref = next((c.name for c in cameras if c.name in at.log.cameras), None)
    if ref is None:
        raise at.error("time.rate", "no logged camera to take times from: give a rate")
    lt = _log_camera_rate_times(at.log, ref)
    times = lt[(lt >= start - TIME_EPS) & (lt <= end + TIME_EPS)]
    if not len(times):
        raise at.error("time", f"no frame of camera {ref!r} between {start} and {end} s: give a rate")
    return _bounded(times, cameras, at)


def _bounded(times: np.ndarray, cameras: list[PlannedCamera], at: _Where) -> np.ndarray:
    if len(times) * len(cameras) > MAX_FRAMES:
        raise at.error("time", f"{len(times) * len(cameras)} frames: more than {MAX_FRAMES}")
    return times


def _sort_actor_specs(actors: list[ActorSpec], at: _Where) -> tuple[dict[str, tuple[int, ActorSpec]],
                                                                     list[tuple[int, ActorSpec]]]:
    """Check the scenario's actor entries against the log: (edits of logged actors by id, inserted actors)."""
    logged_ids = [a.id for a in at.log.actors]
    actor_names = ", ".join(logged_ids) or "none"
    edits: dict[str, tuple[int, ActorSpec]] = {}
    inserts: list[tuple[int, ActorSpec]] = []
    for i, a in enumerate(actors):
        where = f"actors[{i}]"
        if a.id in edits or any(x.id == a.id for _, x in inserts):
            raise at.error(f"{where}.id", f"actor {a.id!r} is listed twice")
        if a.source is None:
            if a.id not in logged_ids:
                raise at.error(f"{where}.id", f"no actor {a.id!r} in the scene (actors: {actor_names})")
            others = [k for k in ("translate", "rotate", "speed", "trajectory") if getattr(a, k) is not None]
            others += ["time_offset"] if a.time_offset else []
            if a.remove and others:
                raise at.error(f"{where}.remove", f"remove cannot be combined with {', '.join(others)}")
            edits[a.id] = (i, a)
            continue
        if a.id in logged_ids:
            raise at.error(f"{where}.id", f"an inserted actor needs a new id; {a.id!r} is already in the scene")
        if not a.source.startswith("asset:") and a.source not in logged_ids:
            raise at.error(f"{where}.source", f"no actor {a.source!r} in the scene (actors: {actor_names}) and not "
                                              "an asset:<mesh>")
        if a.trajectory is None:
            raise at.error(f"{where}.trajectory", "an inserted actor needs a trajectory")
        if a.remove:
            raise at.error(f"{where}.remove", "an inserted actor cannot be removed")
        inserts.append((i, a))
    return edits, inserts


def _pose_fn(track: Track, hold: bool, a: ActorSpec | None, t_anchor: float) -> Callable[[float], Optional[np.ndarray]]:
    """Box-to-world pose at t of an actor on ``track``, retimed (speed about ``t_anchor``, time_offset) and moved
    in its box frame (rotate, translate) as ``a`` says; None where the track has no pose."""
    speed = 1.0 if a is None or a.speed is None else a.speed
    dt = 0.0 if a is None else a.time_offset
    local = np.eye(4)
    if a is not None and a.rotate is not None:
        local[:3, :3] = _vehicle_rotation(a.rotate.yaw, a.rotate.pitch, a.rotate.roll)
    if a is not None and a.translate is not None:
        local[:3, 3] = a.translate
    identity = np.array_equal(local, np.eye(4))

    def fn(t: float) -> Optional[np.ndarray]:
        pose = track.pose_at(t_anchor + speed * (t - t_anchor) - dt, hold=hold)
        if pose is None:
            return None
        return pose if identity else pose @ local

    return fn


def _logged_actors(edits: dict[str, tuple[int, ActorSpec]], t_anchor: float,
                   at: _Where) -> tuple[list[PlannedActor], list[str]]:
    """The log's actors with their edits applied: (present actors, removed ids)."""
    actors: list[PlannedActor] = []
    removed: list[str] = []
    for actor in at.log.actors:
        i, a = edits.get(actor.id, (-1, None))
        if a is not None and a.remove:
            removed.append(actor.id)
            continue
        track, hold, names = actor.track, actor.static, []
        if a is not None and a.trajectory is not None:
            track = _waypoint_track(a.trajectory, float(actor.track.poses[0][2, 3]), at.file,
                                    f"actors[{i}].trajectory")
            hold = len(track) == 1
            names.append("trajectory")
        if a is not None:
            names += [k for k in ("translate", "rotate", "speed") if getattr(a, k) is not None]
            names += ["time_offset"] if a.time_offset else []
        actors.append(PlannedActor(actor.id, actor.id, actor.cls, np.asarray(actor.size, float), 0,
                                   _pose_fn(track, hold, a, t_anchor), edits=names))
    return actors, removed


def _inserted_actors(inserts: list[tuple[int, ActorSpec]], t_anchor: float,
                     at: _Where) -> tuple[list[PlannedActor], dict]:
    """Actors the scenario adds: copies of logged actors, or meshes from the asset library (docs/meshes.md) whose
    class and size come from their sidecar and whose box stands on the ground. Returns (actors, assets by name)."""
    actors: list[PlannedActor] = []
    assets: dict = {}
    for i, a in inserts:
        where = f"actors[{i}]"
        if a.source.startswith("asset:"):
            from ..mesh.compose import ground_z, scenario_assets

            try:
                found = scenario_assets([a.source], scene_dir=at.scene_path, base_dir=at.file.parent)
            except (FileNotFoundError, ValueError) as exc:
                raise at.error(f"{where}.source", str(exc)) from None
            assets.update(found)
            asset = next(iter(found.values()))
            size, cls, source = np.asarray(asset.size, float), asset.cls, a.source
            z0 = ground_z(at.log) + size[2] / 2
        else:
            src = at.log.actor(a.source)
            size, cls, source, z0 = np.asarray(src.size, float), src.cls, src.id, float(src.track.poses[0][2, 3])
        track = _waypoint_track(a.trajectory, z0, at.file, f"{where}.trajectory")
        actors.append(PlannedActor(a.id, source, cls, size, 0, _pose_fn(track, len(track) == 1, a, t_anchor),
                                   inserted=True, edits=["insert"]))
    return actors, assets


def resolve(spec: ScenarioSpec, scene: RenderableScene, file: Path, scene_path: Path, text: str = "") -> Plan:
    """Check ``spec`` against ``scene`` and resolve it into a Plan: ego, cameras, times, then actors."""
    at = _Where(file, scene.log, scene_path)
    ego_fn, logged_ego = _resolve_ego(spec.ego, scene.log, at)
    cameras = _resolve_cameras(spec, logged_ego, at)
    times = _resolve_times(spec.time, cameras, at)
    edits, inserts = _sort_actor_specs(spec.actors, at)
    actors, removed = _logged_actors(edits, float(times[0]), at)
    added, assets = _inserted_actors(inserts, float(times[0]), at)
    actors += added
    if assets:
        from ..mesh.compose import with_assets

        scene = with_assets(scene, assets)
    if len(actors) > 65535:
        raise at.error("actors", "more than 65535 actors do not fit uint16 instance ids")
    for k, pa in enumerate(actors, start=1):
        pa.instance_id = k
    outputs = tuple(o for o in OUTPUT_KINDS + (LIDAR_OUTPUT,) if o in spec.outputs)
    if not outputs:
        raise at.error("outputs", f"nothing to render: choose from {', '.join(OUTPUT_KINDS + (LIDAR_OUTPUT,))}")
    return Plan(file, spec, spec.name or file.stem, scene_path, scene, times, cameras, actors, removed, ego_fn,
                logged_ego, outputs, text)
