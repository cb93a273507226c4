"""nuScenes (v1.0-trainval / -mini / -test): one scene from the JSON tables of a dataroot.

Tables used (``<dataroot>/<version>/*.json``): ``scene`` (name, first_sample_token), ``sample``
(token, timestamp us, next), ``sample_data`` (sample_token, ego_pose_token, calibrated_sensor_token,
filename, width, height, timestamp, is_key_frame), ``ego_pose`` (translation, rotation [w, x, y, z],
vehicle-to-global), ``calibrated_sensor`` (sensor_token, translation, rotation = sensor-to-vehicle,
camera_intrinsic 3x3), ``sensor`` (channel, modality), ``sample_annotation`` (sample_token,
instance_token, translation = global box centre, size = [width, length, height], rotation),
``instance`` (category_token) and ``category`` (name). Key frames only (2 Hz); ``--frames`` selects
samples. Cameras are OpenCV (cx + 0.5); lidar ``.pcd.bin`` is float32 [N, 5] (x, y, z, intensity
0..255, ring) in the LIDAR_TOP frame, intensity scaled to [0, 1]; the ring labels give an estimated
v1.1 sensor model and each point's beam and column (``_lidar_layout.py``). Radar is not converted.

SRC is the dataroot (or its version folder). When it holds several scenes, name one as
``<dataroot>/<scene-name>`` (e.g. ``data/nuscenes/scene-0061``; that path need not exist) or
``<dataroot>#scene-0061``. The world is the global frame (z up) shifted to the first ego position.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..geometry import make_pose, opencv_to_opengl
from ..model import Frame, LidarSweep
from ._common import (
    ActorBuilder,
    Conversion,
    ReaderError,
    build_actors,
    check_cameras,
    finish_log,
    get,
    image_size,
    make_track,
    map_class,
    number,
    opencv_intrinsics,
    plain_name,
    quat_to_rotation,
    read_float_records,
    read_json,
    select_indices,
    source_file,
)
from ._lidar_layout import RawSweep, attach_layouts

TABLES = ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor", "sample_annotation",
          "instance", "category")


def _version_dir(root: Path) -> Path | None:
    if (root / "scene.json").is_file():
        return root
    if root.is_dir():
        for cand in sorted(root.glob("v1.0-*")):
            if (cand / "scene.json").is_file():
                return cand
    return None


def _locate(src: Path) -> tuple[Path, Path, str | None]:
    """(dataroot, version folder, scene name or None)."""
    text = str(src)
    if "#" in text and not src.exists():
        base, scene = text.rsplit("#", 1)
        root = Path(base)
        ver = _version_dir(root)
        if ver is not None:
            return (root if ver != root else root.parent), ver, scene
    ver = _version_dir(src)
    if ver is not None:
        return (src if ver != src else src.parent), ver, None
    ver = _version_dir(src.parent)
    if ver is not None and not src.exists():
        return (src.parent if ver != src.parent else src.parent.parent), ver, src.name
    raise ReaderError(src, "", "expected a nuScenes dataroot (a v1.0-* folder with scene.json, sample.json, ...)")


def _table(ver: Path, name: str) -> list[dict]:
    path = ver / f"{name}.json"
    data = read_json(path)
    if not isinstance(data, list):
        raise ReaderError(path, "", "expected a JSON list of records")
    return data


def _pose(rec: dict, path: Path, where: str) -> np.ndarray:
    t = get(rec, "translation", path, where, list)
    q = get(rec, "rotation", path, where, list)
    if len(t) != 3 or len(q) != 4:
        raise ReaderError(path, f"{where}.translation", "expected translation [x, y, z] and rotation [w, x, y, z]")
    return make_pose(quat_to_rotation(q, path, f"{where}.rotation"), np.asarray(t, float))


def _load_pcd_bin(path: Path):
    def load() -> RawSweep:
        rec = read_float_records(path, 5, "x, y, z, intensity, ring")
        pts = rec[:, :4].copy()
        pts[:, 3] = np.clip(pts[:, 3] / 255.0, 0.0, 1.0)
        return RawSweep(pts, ring=np.round(rec[:, 4]).astype(np.int64))

    return load


@dataclass
class _Tables:
    """The JSON tables of a version folder, as lists and indexed by token; the scene SRC names, if any."""

    dataroot: Path
    ver: Path
    scene_name: str | None
    records: dict[str, list]
    by_token: dict[str, dict]


@dataclass
class _Selection:
    """The converted scene, its chain of samples and the selected ones (sample token -> index in ``samples``)."""

    scene: dict
    samples: list[dict]
    keep_tokens: dict


@dataclass
class _Sensor:
    """What a sample_data record was taken with: the channel, its modality and its calibrated_sensor record."""

    channel: str
    modality: object
    calibration: dict


@dataclass
class _Record:
    """One sample_data record with its sensor, ego pose (vehicle-to-global) and source file resolved."""

    where: str
    sensor: _Sensor
    ego: np.ndarray
    s2w: np.ndarray
    timestamp: float
    rel_src: str
    path: Path


@dataclass
class _SensorData:
    """The camera frames and lidar sweeps of the selected samples (the ego track follows the lidar)."""

    frames: list[Frame] = field(default_factory=list)
    sweeps: list[LidarSweep] = field(default_factory=list)
    images: dict[str, Path] = field(default_factory=dict)
    lidar_files: dict = field(default_factory=dict)
    ego_t: list[float] = field(default_factory=list)
    ego_p: list[np.ndarray] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    tables = _load_tables(src)
    sel = _select(tables, _pick_scene(tables), frames)
    sensor_of = _sensors(tables)
    scene_sd = [sd for sd in tables.records["sample_data"]
                if sd.get("sample_token") in sel.keep_tokens and sd.get("is_key_frame", True)]
    cam_names = sorted({sensor_of[sd["token"]].channel for sd in scene_sd if sd["token"] in sensor_of
                        and sensor_of[sd["token"]].modality == "camera"})
    keep_cams = set(check_cameras(cameras, cam_names, tables.ver / "sensor.json"))
    got = _SensorData()
    for sd in scene_sd:
        rec = _record(tables, sd, sensor_of)
        if rec.sensor.modality == "camera" and rec.sensor.channel in keep_cams:
            _add_frame(tables, rec, sd, skip_missing, got)
        elif rec.sensor.modality == "lidar":
            _add_sweep(tables, rec, got)
    return _assemble(tables, sel.scene, got, _actors(tables, sel))


def _load_tables(src: Path) -> _Tables:
    dataroot, ver, scene_name = _locate(src)
    records = {name: _table(ver, name) for name in TABLES}
    by_token = {name: {r.get("token"): r for r in recs if isinstance(r, dict)} for name, recs in records.items()}
    return _Tables(dataroot, ver, scene_name, records, by_token)


def _pick_scene(tables: _Tables) -> dict:
    """The scene SRC names, or the only scene of the tables."""
    scenes, scene_name = tables.records["scene"], tables.scene_name
    if scene_name is None:
        if len(scenes) != 1:
            names = ", ".join(str(s.get("name")) for s in scenes[:8])
            more = "..." if len(scenes) > 8 else ""
            raise ReaderError(tables.ver / "scene.json", "", f"expected one scene, found {len(scenes)}: pass "
                                                             f"{tables.dataroot}/<scene-name> ({names}{more})")
        return scenes[0]
    match = [s for s in scenes if s.get("name") == scene_name or s.get("token") == scene_name]
    if not match:
        names = ", ".join(str(s.get("name")) for s in scenes[:8])
        raise ReaderError(tables.ver / "scene.json", "name", f"no scene {scene_name!r} (have {names}"
                                                             f"{'...' if len(scenes) > 8 else ''})")
    return match[0]


def _select(tables: _Tables, scene: dict, frames: slice) -> _Selection:
    """Follows the scene's chain of samples from ``first_sample_token`` and applies ``--frames``."""
    sample_file = tables.ver / "sample.json"
    samples = []
    tok = get(scene, "first_sample_token", tables.ver / "scene.json", f"scene[{scene.get('name')}]")
    while tok:
        if tok not in tables.by_token["sample"]:
            raise ReaderError(sample_file, f"token {tok}", "sample referenced by the scene is missing")
        samples.append(tables.by_token["sample"][tok])
        tok = samples[-1].get("next", "")
        if len(samples) > 10000:
            raise ReaderError(sample_file, "next", "expected a finite chain of samples")
    indices = select_indices(len(samples), frames)
    if not indices:
        raise ReaderError(sample_file, "frames", f"the selection is empty ({len(samples)} samples)")
    return _Selection(scene, samples, {samples[i]["token"]: i for i in indices})


def _sensors(tables: _Tables) -> dict[str, _Sensor]:
    """sample_data token -> the sensor it was taken with (records without a known sensor are left out)."""
    sensor_of = {}
    for sd in tables.records["sample_data"]:
        cs = tables.by_token["calibrated_sensor"].get(sd.get("calibrated_sensor_token"))
        if cs is None:
            continue
        sensor = tables.by_token["sensor"].get(cs.get("sensor_token"))
        if sensor is not None:
            channel = plain_name(sensor.get("channel"), tables.ver / "sensor.json",
                                 f"token {sensor.get('token')}.channel", "channel name")
            sensor_of[sd["token"]] = _Sensor(channel, sensor.get("modality"), cs)
    return sensor_of


def _record(tables: _Tables, sd: dict, sensor_of: dict[str, _Sensor]) -> _Record:
    ver, sd_file = tables.ver, tables.ver / "sample_data.json"
    where = f"token {sd.get('token')}"
    if sd["token"] not in sensor_of:
        raise ReaderError(sd_file, f"{where}.calibrated_sensor_token", "expected a calibrated sensor record")
    sensor = sensor_of[sd["token"]]
    cs = sensor.calibration
    ep = tables.by_token["ego_pose"].get(sd.get("ego_pose_token"))
    if ep is None:
        raise ReaderError(sd_file, f"{where}.ego_pose_token", "expected an ego_pose record")
    ego = _pose(ep, ver / "ego_pose.json", f"token {ep.get('token')}")
    s2v = _pose(cs, ver / "calibrated_sensor.json", f"token {cs.get('token')}")
    ts = number(sd, "timestamp", sd_file, where) / 1e6
    rel_src = get(sd, "filename", sd_file, where, str)
    path = source_file(tables.dataroot, rel_src, sd_file, f"{where}.filename")
    return _Record(where, sensor, ego, ego @ s2v, ts, rel_src, path)


def _add_frame(tables: _Tables, rec: _Record, sd: dict, skip_missing: bool, got: _SensorData) -> None:
    sd_file, where, path, cs = tables.ver / "sample_data.json", rec.where, rec.path, rec.sensor.calibration
    if not path.is_file():
        if skip_missing:
            got.warnings.append(f"{sd_file}: {where}.filename: image {rec.rel_src!r} does not exist, skipped")
            return
        raise ReaderError(sd_file, f"{where}.filename", f"image {rec.rel_src!r} does not exist "
                                                       "(use --skip-missing to skip it)")
    K = np.asarray(cs.get("camera_intrinsic") or [], float)
    if K.shape != (3, 3):
        raise ReaderError(tables.ver / "calibrated_sensor.json", f"token {cs.get('token')}.camera_intrinsic",
                          "expected a 3x3 matrix")
    w, h = (int(number(sd, k, sd_file, where)) if sd.get(k) else 0 for k in ("width", "height"))
    if w <= 0 or h <= 0:
        w, h = image_size(path)
    intr = opencv_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h)
    rel = f"images/{rec.sensor.channel}/{path.name}"
    got.images[rel] = path
    got.frames.append(Frame(rel, opencv_to_opengl(rec.s2w), intr, rec.sensor.channel, rec.timestamp))


def _add_sweep(tables: _Tables, rec: _Record, got: _SensorData) -> None:
    if not rec.path.is_file():
        raise ReaderError(tables.ver / "sample_data.json", f"{rec.where}.filename",
                          f"lidar file {rec.rel_src!r} does not exist")
    rel = f"lidar/{rec.sensor.channel}/{rec.path.name.split('.')[0]}.npy"
    got.lidar_files[rel] = _load_pcd_bin(rec.path)
    got.sweeps.append(LidarSweep(rel, rec.s2w, rec.timestamp, rec.sensor.channel))
    got.ego_t.append(rec.timestamp)
    got.ego_p.append(rec.ego)


def _actors(tables: _Tables, sel: _Selection) -> dict[str, ActorBuilder]:
    """The annotated instances of the selected samples (global box poses at the sample times)."""
    actors: dict[str, ActorBuilder] = {}
    ann_file = tables.ver / "sample_annotation.json"
    for ann in tables.records["sample_annotation"]:
        si = sel.keep_tokens.get(ann.get("sample_token"))
        if si is None:
            continue
        where = f"token {ann.get('token')}"
        pose = _pose(ann, ann_file, where)
        size = get(ann, "size", ann_file, where, list)
        if len(size) != 3:
            raise ReaderError(ann_file, f"{where}.size", "expected [width, length, height]")
        inst = tables.by_token["instance"].get(ann.get("instance_token"), {})
        cat = tables.by_token["category"].get(inst.get("category_token"), {}).get("name", "other")
        iid = plain_name(str(ann.get("instance_token")), ann_file, f"{where}.instance_token", "instance token")
        lwh = np.array([size[1], size[0], size[2]], float)
        b = actors.setdefault(iid, ActorBuilder(_category(cat), lwh, cat))
        b.add(float(sel.samples[si]["timestamp"]) / 1e6, pose, lwh)
    return actors


def _assemble(tables: _Tables, scene: dict, got: _SensorData, actors: dict[str, ActorBuilder]) -> Conversion:
    """The world shifted to the first ego position, times to the earliest frame or sweep."""
    ego_track = make_track(got.ego_t, got.ego_p)
    if not got.frames:
        raise ReaderError(tables.ver / "sample_data.json", "",
                          "no camera image to convert (check --cameras / --frames)")
    t0 = min([f.timestamp for f in got.frames] + got.ego_t)
    offset = (ego_track.poses[0, :3, 3] if ego_track is not None else got.frames[0].c2w[:3, 3]).copy()
    log = finish_log("nuscenes", tables.ver, got.frames, got.sweeps, build_actors(actors), ego_track, offset=offset,
                     t0=t0, extra={"scene": scene.get("name")})
    conv = Conversion(log, got.images, {})
    attach_layouts(conv, got.lidar_files)
    for w in got.warnings:
        conv.warn(w)
    return conv


def _category(name: str) -> str:
    """nuScenes category (``vehicle.car``, ``human.pedestrian.adult``, ``vehicle.bicycle``...) -> log class."""
    parts = name.split(".")
    if parts[0] == "human":
        return "pedestrian"
    if parts[0] == "vehicle":
        sub = parts[1] if len(parts) > 1 else ""
        return {"car": "car", "bus": "bus", "truck": "truck", "trailer": "truck", "construction": "truck",
                "bicycle": "cyclist", "motorcycle": "cyclist", "emergency": "car"}.get(sub, "car")
    return map_class(name) if parts[0] != "movable_object" else "other"
