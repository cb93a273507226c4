"""TRI DGP scenes (DDAD and other SynchronizedScene JSON logs).

Layout: ``<scene>/scene_<sha1>.json`` with ``samples`` (each: ``calibration_key``, ``datum_keys``) and
``data`` (datums by ``key``: ``datum.image`` / ``datum.point_cloud`` with ``filename``, ``pose`` =
sensor-to-world as ``rotation {qw,qx,qy,qz}`` + ``translation {x,y,z}``, ``annotations`` by annotation
type id: ``"0"`` 2D boxes, ``"1"`` 3D boxes); ``calibration/<key>.json`` (parallel ``names``,
``intrinsics {fx,fy,cx,cy,skew[,k1..]}``, ``extrinsics`` = sensor-to-vehicle); ``ontology/<sha1>.json``
(class ``items`` with ``id``/``name``); ``point_cloud/<LIDAR>/<ts>.npz`` (key ``data`` [N, >=3],
columns in ``point_format``); ``bounding_box_3d/<LIDAR>/<ts>.json`` (boxes in that sensor's frame:
``box.pose`` centre, ``length``/``width``/``height`` along box x/y/z, ``instance_id``).

Cameras are OpenCV (x right, y down, z forward); each image datum's own pose is used. The ego pose is
the LIDAR datum pose times the inverse LIDAR extrinsic (identity in DDAD). A lidar whose extrinsic is the
identity holds its points in the vehicle frame (DDAD's merged clouds: the ground lies at z = 0), so rays cast
from that origin would skim the ground; its sweeps are written from the centre of the calibrated cameras
instead (``lidar_origin``), with the points moved to match (the same world points). The world is shifted so that
the first ego position is the origin (axes unchanged, z up); the shift is recorded in ``source``.
``--frames`` selects samples. SRC may be a scene folder, a scene JSON, or a dataset folder with a
single scene.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..geometry import invert_pose, make_pose, opencv_to_opengl
from ..model import Frame, LidarSweep
from ._common import (
    ActorBuilder,
    Conversion,
    ReaderError,
    build_actors,
    check_cameras,
    finish_log,
    get,
    make_track,
    map_class,
    number,
    plain_name,
    pose_from_quat,
    read_json,
    select_indices,
    source_file,
)
from ._lidar_layout import RawSweep, attach_layouts

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _find_scene(src: Path) -> Path:
    if src.is_file():
        return src
    if not src.is_dir():
        raise ReaderError(src, "", "source does not exist")
    scenes = sorted(src.glob("scene_*.json"))
    scenes = [s for s in scenes if not s.name.startswith("scene_dataset")]
    if len(scenes) == 1:
        return scenes[0]
    if len(scenes) > 1:
        raise ReaderError(src, "", f"expected one scene JSON, found {len(scenes)}: pass one of "
                                   f"{', '.join(s.name for s in scenes)}")
    index = sorted(src.glob("scene_dataset*.json"))
    if index:
        data = read_json(index[0])
        names = sorted({f for split in (data.get("scene_splits") or {}).values() if isinstance(split, dict)
                        for f in split.get("filenames", [])})
        if len(names) == 1:
            return source_file(src, names[0], index[0], "scene_splits")
        raise ReaderError(index[0], "scene_splits", f"expected one scene, the dataset has {len(names)}: convert one "
                                                    f"scene folder ({', '.join(str(Path(n).parent) for n in names)})")
    raise ReaderError(src, "scene_*.json", "expected a DGP scene JSON in this folder")


def _micros(datum: dict, file: Path, where: str) -> int:
    """Datum time in integer microseconds (from ``id.timestamp``; file-name microseconds as fallback)."""
    ts = (datum.get("id") or {}).get("timestamp")
    if isinstance(ts, str) and ts:
        text = ts[:-1] + "+00:00" if ts.endswith("Z") else ts
        try:
            dt = datetime.fromisoformat(text)
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            delta = dt - _EPOCH
            return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
        except ValueError:
            pass
    for kind in ("image", "point_cloud"):
        name = ((datum.get("datum") or {}).get(kind) or {}).get("filename")
        if isinstance(name, str) and Path(name).stem.isdigit():
            return int(Path(name).stem)
    raise ReaderError(file, f"{where}.id.timestamp", f"expected an ISO time such as 2020-01-01T00:00:00.000000Z, "
                                                     f"got {ts!r}")


def _intrinsics(calib: dict, idx: int, file: Path, w: int, h: int, warnings: list[str]):
    from ._common import opencv_intrinsics

    intr = get(calib, "intrinsics", file, "")
    if not isinstance(intr, list) or idx >= len(intr):
        raise ReaderError(file, "intrinsics", "expected a list parallel to names")
    k = intr[idx]
    where = f"intrinsics[{idx}]"
    fx, fy, cx, cy = (number(k, key, file, where) for key in ("fx", "fy", "cx", "cy"))
    if fx <= 0 or fy <= 0:
        raise ReaderError(file, f"{where}.fx", f"expected positive focal lengths, got {fx}, {fy}")
    if abs(float(k.get("skew", 0.0) or 0.0)) > 1e-6:
        warnings.append(f"{file}: {where}.skew: non-zero skew {k['skew']} ignored")
    dist = {key: float(k[key]) for key in ("k1", "k2", "k3", "p1", "p2") if isinstance(k.get(key), (int, float))}
    extra = [key for key in ("k4", "k5", "k6", "s1", "s2", "s3", "s4", "taux", "tauy")
             if isinstance(k.get(key), (int, float)) and k[key]]
    if extra:
        warnings.append(f"{file}: {where}.{extra[0]}: distortion terms {', '.join(extra)} are not representable "
                        "(drive-log OPENCV has k1 k2 k3 p1 p2) and are ignored")
    if k.get("fisheye"):
        raise ReaderError(file, f"{where}.fisheye", "fisheye DGP cameras are not supported")
    return opencv_intrinsics(fx, fy, cx, cy, w, h, **dist)


def _load_points(path: Path, point_format: list[str]):
    def load() -> RawSweep:
        try:
            with np.load(path, allow_pickle=False) as z:
                if not hasattr(z, "files"):
                    raise ReaderError(path, "", "expected an .npz archive, got a single .npy array")
                if "data" not in z.files:
                    raise ReaderError(path, "data", f"expected the point array under key 'data', got {z.files}")
                data = np.asarray(z["data"], dtype=np.float64)
        except ReaderError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            raise ReaderError(path, "", f"not a readable .npz ({type(exc).__name__}: {exc})") from None
        fmt = [str(x).upper() for x in point_format] or ["X", "Y", "Z", "INTENSITY"][: data.shape[1]]
        if data.ndim != 2 or data.shape[1] < 3 or not {"X", "Y", "Z"} <= set(fmt[: data.shape[1]]):
            raise ReaderError(path, "data", f"expected [N, >=3] with columns X, Y, Z, got {data.shape} {fmt}")
        cols = [fmt.index(c) for c in ("X", "Y", "Z")]
        out = np.zeros((len(data), 4), np.float32)
        out[:, :3] = data[:, cols]
        if "INTENSITY" in fmt and fmt.index("INTENSITY") < data.shape[1]:
            inten = data[:, fmt.index("INTENSITY")]
            if inten.size and np.nanmax(inten) > 1.0:
                inten = inten / 255.0
            out[:, 3] = np.clip(inten, 0.0, 1.0)
        ring = data[:, fmt.index("RING")].astype(np.int64) if "RING" in fmt[: data.shape[1]] else None
        return RawSweep(out, ring=ring)

    return load


@dataclass
class _Scene:
    """The scene JSON: its samples, its datums by key and the class names of its 3D boxes."""

    file: Path
    root: Path
    samples: list
    by_key: dict[str, tuple[int, dict]]
    classes: dict[int, str]


@dataclass
class _Calibration:
    """One ``calibration/<key>.json``: parallel ``names``, ``intrinsics`` and ``extrinsics`` (sensor-to-vehicle)."""

    file: Path
    data: dict
    names: list
    extrinsics: list


@dataclass
class _Datum:
    """One datum of a sample: where it is in the scene JSON, its sensor name, body and time (microseconds)."""

    where: str
    name: str
    body: dict
    t_us: int


@dataclass
class _Box:
    """One 3D box in the world, at an absolute time (microseconds)."""

    instance: str
    t_us: int
    pose: np.ndarray
    size: np.ndarray
    class_name: str


@dataclass
class _Collected:
    """What the selected samples hold; times stay absolute microseconds until the log is assembled."""

    frames: list[tuple[int, Frame]] = field(default_factory=list)
    sweeps: list[tuple[int, LidarSweep]] = field(default_factory=list)
    images: dict[str, Path | bytes] = field(default_factory=dict)
    lidar_files: dict = field(default_factory=dict)
    ego_t: list[int] = field(default_factory=list)
    ego_p: list[np.ndarray] = field(default_factory=list)
    boxes: list[_Box] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    scene = _load_scene(src)
    keep = set(check_cameras(cameras, sorted(_camera_names(scene)), scene.file))
    indices = select_indices(len(scene.samples), frames)
    if not indices:
        raise ReaderError(scene.file, "frames", f"the selection is empty (the scene has {len(scene.samples)} samples)")
    got = _Collected()
    calibrations: dict[str, _Calibration] = {}
    for s in indices:
        _read_sample(scene, s, _calibration(scene, s, calibrations), keep, skip_missing, got)
    return _assemble(scene.file, got)


def _load_scene(src: Path) -> _Scene:
    file = _find_scene(src)
    root = file.parent
    scene = read_json(file)
    samples = get(scene, "samples", file, "", list)
    data = get(scene, "data", file, "", list)
    if not samples:
        raise ReaderError(file, "samples", "expected a non-empty list of samples")
    by_key: dict[str, tuple[int, dict]] = {}
    for i, d in enumerate(data):
        by_key[str(get(d, "key", file, f"data[{i}]"))] = (i, d)
    return _Scene(file, root, samples, by_key, _box_classes(scene, file, root))


def _box_classes(scene: dict, file: Path, root: Path) -> dict[int, str]:
    """Class id -> name from the ontology of the 3D boxes (annotation type "1"), when the scene has one."""
    classes: dict[int, str] = {}
    onto_key = (scene.get("ontologies") or {}).get("1")
    if onto_key:
        onto_file = root / "ontology" / f"{plain_name(onto_key, file, 'ontologies.1', 'ontology key')}.json"
        if onto_file.is_file():
            for j, item in enumerate(get(read_json(onto_file), "items", onto_file, "", list)):
                classes[int(number(item, "id", onto_file, f"items[{j}]"))] = str(item.get("name", "other"))
    return classes


def _camera_names(scene: _Scene) -> list[str]:
    """Cameras available in the scene, in first-seen order."""
    names: list[str] = []
    for _, d in scene.by_key.values():
        if "image" in (d.get("datum") or {}):
            name = (d.get("id") or {}).get("name")
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def _calibration(scene: _Scene, s: int, cache: dict[str, _Calibration]) -> _Calibration:
    """The calibration of sample ``s`` (each calibration file is read once)."""
    sw = f"samples[{s}]"
    ckey = str(get(scene.samples[s], "calibration_key", scene.file, sw))
    if ckey not in cache:
        key = plain_name(ckey, scene.file, f"{sw}.calibration_key", "calibration key")
        cfile = scene.root / "calibration" / f"{key}.json"
        calib = read_json(cfile)
        cache[ckey] = _Calibration(cfile, calib, get(calib, "names", cfile, "", list),
                                   get(calib, "extrinsics", cfile, "", list))
    return cache[ckey]


def _read_sample(scene: _Scene, s: int, calib: _Calibration, keep: set[str], skip_missing: bool,
                 got: _Collected) -> None:
    """The camera frames, lidar sweeps, ego pose and boxes of sample ``s`` into ``got``."""
    sw = f"samples[{s}]"
    lidar_done = False
    for dkey in get(scene.samples[s], "datum_keys", scene.file, sw, list):
        datum = _datum(scene, dkey, sw)
        if "image" in datum.body:
            if datum.name in keep:
                _add_image(scene, calib, datum, skip_missing, got)
        elif "point_cloud" in datum.body:
            s2w = _add_sweep(scene, datum, got, lidar_origin(calib, datum.name))
            if not lidar_done:  # ego (and boxes) from the first lidar of the sample
                lidar_done = True
                _add_ego(calib, datum, s2w, got)
                _add_boxes(scene, datum, s2w, got)


def _datum(scene: _Scene, dkey: object, sw: str) -> _Datum:
    file = scene.file
    if str(dkey) not in scene.by_key:
        raise ReaderError(file, f"{sw}.datum_keys", f"datum {dkey!r} is not in data")
    di, d = scene.by_key[str(dkey)]
    where = f"data[{di}]"
    name = plain_name(get(get(d, "id", file, where), "name", file, f"{where}.id", str), file,
                      f"{where}.id.name", "sensor name")
    body = get(d, "datum", file, where, dict)
    return _Datum(where, name, body, _micros(d, file, where))


def _quat_pose(obj: object, file: Path, where: str) -> np.ndarray:
    """4x4 from ``obj``'s ``rotation {qw,qx,qy,qz}`` and ``translation {x,y,z}``."""
    return pose_from_quat(get(obj, "rotation", file, where, dict), get(obj, "translation", file, where, dict), file,
                          where)


def _add_image(scene: _Scene, calib: _Calibration, datum: _Datum, skip_missing: bool, got: _Collected) -> None:
    file, img, name = scene.file, datum.body["image"], datum.name
    iw = f"{datum.where}.datum.image"
    rel_src = get(img, "filename", file, iw, str)
    path = source_file(scene.root, rel_src, file, f"{iw}.filename")
    if not path.is_file():
        if skip_missing:
            got.warnings.append(f"{file}: {iw}.filename: image {rel_src!r} does not exist, skipped")
            return
        raise ReaderError(file, f"{iw}.filename", f"image {rel_src!r} does not exist (use --skip-missing to skip it)")
    if name not in calib.names:
        raise ReaderError(calib.file, "names", f"expected calibration for {name}, have {', '.join(calib.names)}")
    w = int(number(img, "width", file, iw))
    h = int(number(img, "height", file, iw))
    intr = _intrinsics(calib.data, calib.names.index(name), calib.file, w, h, got.warnings)
    s2w = _quat_pose(get(img, "pose", file, iw, dict), file, f"{iw}.pose")
    rel = f"images/{name}/{path.name}"
    got.images[rel] = path
    got.frames.append((datum.t_us, Frame(rel, opencv_to_opengl(s2w), intr, name, 0.0)))


def lidar_origin(calib: _Calibration, name: str) -> np.ndarray | None:
    """Where rays of lidar ``name`` start, in its frame, when its frame is the vehicle's (an identity or missing
    extrinsic): the mean position of the calibrated cameras (the roof); None when the lidar has an extrinsic of
    its own, or no camera is calibrated."""
    pose = _vehicle_pose(calib, name)
    if pose is not None and not np.allclose(pose, np.eye(4), atol=1e-6):
        return None
    cams = [_vehicle_pose(calib, n) for n in calib.names if n != name and not str(n).upper().startswith("LIDAR")]
    cams = [c[:3, 3] for c in cams if c is not None and not np.allclose(c, np.eye(4), atol=1e-6)]
    return np.mean(cams, axis=0) if cams else None


def _vehicle_pose(calib: _Calibration, name: str) -> np.ndarray | None:
    if name not in calib.names:
        return None
    i = calib.names.index(name)
    return _quat_pose(calib.extrinsics[i], calib.file, f"extrinsics[{i}]") if i < len(calib.extrinsics) else None


def _shifted(load, origin: np.ndarray):
    """``load``'s points in a frame moved to ``origin`` (same axes)."""
    def shifted() -> RawSweep:
        raw = load()
        raw.points[:, :3] -= origin.astype(np.float32)
        return raw

    return shifted


def _add_sweep(scene: _Scene, datum: _Datum, got: _Collected, origin: np.ndarray | None) -> np.ndarray:
    """Adds the point cloud datum as a sweep (from ``origin`` in its frame when given); returns the datum's
    sensor-to-world pose."""
    file, pc = scene.file, datum.body["point_cloud"]
    pw = f"{datum.where}.datum.point_cloud"
    s2w = _quat_pose(get(pc, "pose", file, pw, dict), file, f"{pw}.pose")
    rel_src = get(pc, "filename", file, pw, str)
    path = source_file(scene.root, rel_src, file, f"{pw}.filename")
    if not path.is_file():
        raise ReaderError(file, f"{pw}.filename", f"point cloud {rel_src!r} does not exist")
    rel = f"lidar/{datum.name}/{path.stem}.npy"
    load = _load_points(path, list(pc.get("point_format") or []))
    pose = s2w
    if origin is not None:
        load, pose = _shifted(load, origin), s2w @ make_pose(np.eye(3), origin)
    got.lidar_files[rel] = load
    got.sweeps.append((datum.t_us, LidarSweep(rel, pose, 0.0, datum.name)))
    return s2w


def _add_ego(calib: _Calibration, datum: _Datum, s2w: np.ndarray, got: _Collected) -> None:
    """Ego pose = lidar pose times the inverse lidar extrinsic (identity when the lidar is not calibrated)."""
    v_from_s = np.eye(4)
    if datum.name in calib.names:
        ci = calib.names.index(datum.name)
        v_from_s = _quat_pose(calib.extrinsics[ci], calib.file, f"extrinsics[{ci}]")
    got.ego_t.append(datum.t_us)
    got.ego_p.append(s2w @ invert_pose(v_from_s))


def _add_boxes(scene: _Scene, datum: _Datum, s2w: np.ndarray, got: _Collected) -> None:
    """The 3D boxes (annotation type "1", in the lidar frame) of a point cloud datum, moved into the world."""
    ann = (datum.body["point_cloud"].get("annotations") or {}).get("1")
    if not ann:
        return
    bfile = source_file(scene.root, ann, scene.file, f"{datum.where}.datum.point_cloud.annotations.1")
    for j, b in enumerate(get(read_json(bfile), "annotations", bfile, "", list)):
        bw = f"annotations[{j}]"
        box = get(b, "box", bfile, bw, dict)
        local = _quat_pose(get(box, "pose", bfile, f"{bw}.box", dict), bfile, f"{bw}.box.pose")
        size = np.array([number(box, k, bfile, f"{bw}.box") for k in ("length", "width", "height")])
        iid = plain_name(str(get(b, "instance_id", bfile, bw)), bfile, f"{bw}.instance_id", "instance id")
        cname = scene.classes.get(int(b.get("class_id", -1)), f"class_{b.get('class_id')}")
        got.boxes.append(_Box(iid, datum.t_us, s2w @ local, size, cname))


def _assemble(file: Path, got: _Collected) -> Conversion:
    """Times relative to the earliest datum, the world shifted to the first ego position."""
    if not got.frames:
        raise ReaderError(file, "samples", "no camera image to convert (check --cameras / --frames)")
    t0 = min([t for t, _ in got.frames] + [t for t, _ in got.sweeps] + got.ego_t)
    for t, f in got.frames:
        f.timestamp = (t - t0) / 1e6
    for t, sweep in got.sweeps:
        sweep.timestamp = (t - t0) / 1e6
    actors: dict[str, ActorBuilder] = {}
    for box in got.boxes:
        b = actors.setdefault(box.instance, ActorBuilder(map_class(box.class_name), box.size, box.class_name))
        b.add((box.t_us - t0) / 1e6, box.pose, box.size)
    ego = make_track([(t - t0) / 1e6 for t in got.ego_t], got.ego_p)
    offset = (ego.poses[0, :3, 3] if ego is not None else got.frames[0][1].c2w[:3, 3]).copy()
    log = finish_log("dgp", file, [f for _, f in got.frames], [s for _, s in got.sweeps], build_actors(actors), ego,
                     offset=offset, extra={"time_offset": t0 / 1e6})
    conv = Conversion(log, got.images, {})
    attach_layouts(conv, got.lidar_files)
    for w in got.warnings:
        conv.warn(w)
    return conv
