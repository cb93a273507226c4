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
    outputs: list[Literal["rgb", "depth", "instance", "semantic", "boxes"]] = list(OUTPUT_KINDS)
    visibility: Literal["render", "box", "none"] = "render"
    tile_pixels: int = Field(1 << 19, ge=1024)

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


def parse_scenario(path: str | Path) -> ScenarioSpec:
    """Schema-check a scenario file without opening its scene."""
    return _read_spec(Path(path))[0]


def load_scenario(path: str | Path, scene: RenderableScene | None = None) -> Plan:
    """Parse, validate and resolve a scenario. ``scene`` overrides the scene the file names (tests, scoring)."""
    from .scenes import open_scene

    file = Path(path)
    spec, text = _read_spec(file)
    scene_path = (file.parent / spec.scene).resolve() if not Path(spec.scene).is_absolute() else Path(spec.scene)
    if scene is None:
        try:
            scene = open_scene(scene_path)
        except (ValueError, FileNotFoundError) as exc:
            raise ScenarioError(file, "scene", str(exc)) from None
    return resolve(spec, scene, file, scene_path, text)


def resolve(spec: ScenarioSpec, scene: RenderableScene, file: Path, scene_path: Path, text: str = "") -> Plan:
    log = scene.log
    t0, t1 = log.time_span
    span = f"the log covers {t0:.3f} to {t1:.3f} s"
    cams = log.cameras
    cam_names = ", ".join(sorted(cams)) or "none"

    # -- ego ----------------------------------------------------------------------------------------------
    ego_track, _ = _ego_track(log)

    def logged_ego(t: float) -> np.ndarray:
        return ego_track.pose_at(t, hold=True)

    ego = spec.ego
    if ego.trajectory is not None:
        z0 = float(logged_ego(ego.trajectory[0].t)[2, 3])
        new_track = _waypoint_track(ego.trajectory, z0, file, "ego.trajectory")
        base = lambda t: new_track.pose_at(t, hold=True)  # noqa: E731
    else:
        base = logged_ego
    offset = make_pose(np.eye(3), np.array([ego.longitudinal, ego.lateral, 0.0]))

    def ego_fn(t: float) -> np.ndarray:
        return base(t) @ offset

    # -- cameras ------------------------------------------------------------------------------------------
    specs = spec.cameras if spec.cameras is not None else [CameraSpec(name=n) for n in sorted(cams)]
    if not specs:
        raise ScenarioError(file, "cameras", "no cameras to render")
    cameras: list[PlannedCamera] = []
    seen = set()
    for i, c in enumerate(specs):
        where = f"cameras[{i}]"
        if c.name in seen:
            raise ScenarioError(file, f"{where}.name", f"camera {c.name!r} is listed twice")
        seen.add(c.name)
        if c.name in cams:
            first = cams[c.name][0]
            li = first.intrinsics
            intr = c.intrinsics.build() if c.intrinsics is not None else Intrinsics(
                li.fl_x, li.fl_y, li.cx, li.cy, li.w, li.h, model="PINHOLE")
            mount = c.mount.build() if c.mount is not None else invert_pose(logged_ego(first.timestamp)) @ first.c2w
            logged = c.intrinsics is None and c.mount is None
        else:
            if c.intrinsics is None:
                raise ScenarioError(file, f"{where}.intrinsics", f"camera {c.name!r} is not in the log (cameras: "
                                                                 f"{cam_names}): a new camera needs intrinsics")
            if c.mount is None:
                raise ScenarioError(file, f"{where}.mount", f"camera {c.name!r} is not in the log (cameras: "
                                                            f"{cam_names}): a new camera needs a mount")
            intr, mount, logged = c.intrinsics.build(), c.mount.build(), False
        if c.scale is not None:
            intr = intr.scaled(c.scale)
            if intr.w < 1 or intr.h < 1:
                raise ScenarioError(file, f"{where}.scale", f"scale {c.scale} leaves an empty image")
        if intr.w * intr.h > MAX_PIXELS:
            raise ScenarioError(file, f"{where}.scale" if c.scale is not None else f"{where}.intrinsics",
                                f"{intr.w}x{intr.h} pixels: more than {MAX_PIXELS >> 20} MP per frame")
        cameras.append(PlannedCamera(c.name, intr, mount, logged))

    # -- times --------------------------------------------------------------------------------------------
    ts = spec.time
    if ts.times is not None:
        times = np.array(ts.times, dtype=float)
        for i, t in enumerate(times):
            if not (t0 - TIME_EPS <= t <= t1 + TIME_EPS):
                raise ScenarioError(file, f"time.times[{i}]", f"{t} s is outside the log ({span})")
        if np.any(np.diff(times) <= 0):
            raise ScenarioError(file, "time.times", "times must increase")
    else:
        start = t0 if ts.start is None else ts.start
        end = t1 if ts.end is None else ts.end
        for key, v in (("start", start), ("end", end)):
            if not (t0 - TIME_EPS <= v <= t1 + TIME_EPS):
                raise ScenarioError(file, f"time.{key}", f"{v} s is outside the log ({span})")
        if end < start:
            raise ScenarioError(file, "time.end", f"end {end} s is before start {start} s")
        if ts.rate is not None:
            n = math.floor((end - start) * ts.rate + 1e-6) + 1
            if n * len(cameras) > MAX_FRAMES:  # checked before anything of that size is allocated
                raise ScenarioError(file, "time.rate", f"{ts.rate} Hz over {end - start:.3f} s is {n} times x "
                                                       f"{len(cameras)} camera(s): more than {MAX_FRAMES} frames")
            times = start + np.arange(n) / ts.rate
        else:
            ref = next((c.name for c in cameras if c.name in cams), None)
            if ref is None:
                raise ScenarioError(file, "time.rate", "no logged camera to take times from: give a rate")
            lt = _log_camera_rate_times(log, ref)
            times = lt[(lt >= start - TIME_EPS) & (lt <= end + TIME_EPS)]
            if not len(times):
                raise ScenarioError(file, "time", f"no frame of camera {ref!r} between {start} and {end} s: "
                                                  "give a rate")
    if len(times) * len(cameras) > MAX_FRAMES:
        raise ScenarioError(file, "time", f"{len(times) * len(cameras)} frames: more than {MAX_FRAMES}")

    # -- actors -------------------------------------------------------------------------------------------
    logged_ids = [a.id for a in log.actors]
    actor_names = ", ".join(logged_ids) or "none"
    t_anchor = float(times[0])
    edits: dict[str, tuple[int, ActorSpec]] = {}
    inserts: list[tuple[int, ActorSpec]] = []
    for i, a in enumerate(spec.actors):
        where = f"actors[{i}]"
        if a.id in edits or any(x.id == a.id for _, x in inserts):
            raise ScenarioError(file, f"{where}.id", f"actor {a.id!r} is listed twice")
        if a.source is not None:
            if a.id in logged_ids:
                raise ScenarioError(file, f"{where}.id", f"an inserted actor needs a new id; {a.id!r} is already "
                                                         "in the scene")
            if not a.source.startswith("asset:") and a.source not in logged_ids:
                raise ScenarioError(file, f"{where}.source", f"no actor {a.source!r} in the scene (actors: "
                                                             f"{actor_names}) and not an asset:<mesh>")
            if a.trajectory is None:
                raise ScenarioError(file, f"{where}.trajectory", "an inserted actor needs a trajectory")
            if a.remove:
                raise ScenarioError(file, f"{where}.remove", "an inserted actor cannot be removed")
            inserts.append((i, a))
        else:
            if a.id not in logged_ids:
                raise ScenarioError(file, f"{where}.id", f"no actor {a.id!r} in the scene (actors: {actor_names})")
            others = [k for k in ("translate", "rotate", "speed", "trajectory") if getattr(a, k) is not None]
            if a.time_offset:
                others.append("time_offset")
            if a.remove and others:
                raise ScenarioError(file, f"{where}.remove", f"remove cannot be combined with {', '.join(others)}")
            edits[a.id] = (i, a)

    def build_fn(track: Track, hold: bool, a: ActorSpec | None) -> Callable[[float], Optional[np.ndarray]]:
        speed = 1.0 if a is None or a.speed is None else a.speed
        dt = 0.0 if a is None else a.time_offset
        local = np.eye(4)
        if a is not None and a.rotate is not None:
            local[:3, :3] = _vehicle_rotation(a.rotate.yaw, a.rotate.pitch, a.rotate.roll)
        if a is not None and a.translate is not None:
            local[:3, 3] = a.translate
        identity = np.array_equal(local, np.eye(4))

        def fn(t: float) -> Optional[np.ndarray]:
            tq = t_anchor + speed * (t - t_anchor) - dt
            pose = track.pose_at(tq, hold=hold)
            if pose is None:
                return None
            return pose if identity else pose @ local

        return fn

    actors: list[PlannedActor] = []
    removed: list[str] = []
    for actor in log.actors:
        i_a = edits.get(actor.id)
        a = i_a[1] if i_a else None
        if a is not None and a.remove:
            removed.append(actor.id)
            continue
        track, hold = actor.track, actor.static
        names = []
        if a is not None and a.trajectory is not None:
            z0 = float(actor.track.poses[0][2, 3])
            track = _waypoint_track(a.trajectory, z0, file, f"actors[{i_a[0]}].trajectory")
            hold = len(track) == 1
            names.append("trajectory")
        if a is not None:
            names += [k for k in ("translate", "rotate", "speed") if getattr(a, k) is not None]
            if a.time_offset:
                names.append("time_offset")
        actors.append(PlannedActor(actor.id, actor.id, actor.cls, np.asarray(actor.size, float), 0,
                                   build_fn(track, hold, a), edits=names))
    assets: dict = {}
    for i, a in inserts:
        if a.source.startswith("asset:"):
            # A mesh from the asset library (docs/meshes.md): class and size from its sidecar, box on the ground.
            from ..mesh.compose import ground_z, scenario_assets

            try:
                found = scenario_assets([a.source], scene_dir=scene_path, base_dir=file.parent)
            except (FileNotFoundError, ValueError) as exc:
                raise ScenarioError(file, f"actors[{i}].source", str(exc)) from None
            assets.update(found)
            asset = next(iter(found.values()))
            size = np.asarray(asset.size, float)
            track = _waypoint_track(a.trajectory, ground_z(log) + size[2] / 2, file, f"actors[{i}].trajectory")
            actors.append(PlannedActor(a.id, a.source, asset.cls, size, 0, build_fn(track, len(track) == 1, a),
                                       inserted=True, edits=["insert"]))
            continue
        src = log.actor(a.source)
        z0 = float(src.track.poses[0][2, 3])
        track = _waypoint_track(a.trajectory, z0, file, f"actors[{i}].trajectory")
        actors.append(PlannedActor(a.id, src.id, src.cls, np.asarray(src.size, float), 0,
                                   build_fn(track, len(track) == 1, a), inserted=True, edits=["insert"]))
    if assets:
        from ..mesh.compose import with_assets

        scene = with_assets(scene, assets)
    if len(actors) > 65535:
        raise ScenarioError(file, "actors", "more than 65535 actors do not fit uint16 instance ids")
    for k, pa in enumerate(actors, start=1):
        pa.instance_id = k

    outputs = tuple(o for o in OUTPUT_KINDS if o in spec.outputs)
    if not outputs:
        raise ScenarioError(file, "outputs", f"nothing to render: choose from {', '.join(OUTPUT_KINDS)}")
    return Plan(file, spec, spec.name or file.stem, scene_path, scene, times, cameras, actors, removed, ego_fn,
                logged_ego, outputs, text)
