"""nuScenes (v1.0-trainval / -mini / -test): one scene from the JSON tables of a dataroot.

Tables used (``<dataroot>/<version>/*.json``): ``scene`` (name, first_sample_token), ``sample``
(token, timestamp us, next), ``sample_data`` (sample_token, ego_pose_token, calibrated_sensor_token,
filename, width, height, timestamp, is_key_frame), ``ego_pose`` (translation, rotation [w, x, y, z],
vehicle-to-global), ``calibrated_sensor`` (sensor_token, translation, rotation = sensor-to-vehicle,
camera_intrinsic 3x3), ``sensor`` (channel, modality), ``sample_annotation`` (sample_token,
instance_token, translation = global box centre, size = [width, length, height], rotation),
``instance`` (category_token) and ``category`` (name). Key frames only (2 Hz); ``--frames`` selects
samples. Cameras are OpenCV (cx + 0.5); lidar ``.pcd.bin`` is float32 [N, 5] (x, y, z, intensity
0..255, ring) in the LIDAR_TOP frame, intensity scaled to [0, 1]. Radar is not converted.

SRC is the dataroot (or its version folder). When it holds several scenes, name one as
``<dataroot>/<scene-name>`` (e.g. ``data/nuscenes/scene-0061``; that path need not exist) or
``<dataroot>#scene-0061``. The world is the global frame (z up) shifted to the first ego position.
"""

from __future__ import annotations

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
    def load() -> np.ndarray:
        pts = read_float_records(path, 5, "x, y, z, intensity, ring")[:, :4].copy()
        pts[:, 3] = np.clip(pts[:, 3] / 255.0, 0.0, 1.0)
        return pts

    return load


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    dataroot, ver, scene_name = _locate(src)
    t = {name: _table(ver, name) for name in TABLES}
    idx = {name: {r.get("token"): r for r in recs if isinstance(r, dict)} for name, recs in t.items()}
    scenes = t["scene"]
    if scene_name is None:
        if len(scenes) != 1:
            names = ", ".join(str(s.get("name")) for s in scenes[:8])
            more = "..." if len(scenes) > 8 else ""
            raise ReaderError(ver / "scene.json", "", f"expected one scene, found {len(scenes)}: pass "
                                                      f"{dataroot}/<scene-name> ({names}{more})")
        scene = scenes[0]
    else:
        match = [s for s in scenes if s.get("name") == scene_name or s.get("token") == scene_name]
        if not match:
            names = ", ".join(str(s.get("name")) for s in scenes[:8])
            raise ReaderError(ver / "scene.json", "name", f"no scene {scene_name!r} (have {names}"
                                                          f"{'...' if len(scenes) > 8 else ''})")
        scene = match[0]
    sample_file = ver / "sample.json"
    samples = []
    tok = get(scene, "first_sample_token", ver / "scene.json", f"scene[{scene.get('name')}]")
    while tok:
        if tok not in idx["sample"]:
            raise ReaderError(sample_file, f"token {tok}", "sample referenced by the scene is missing")
        samples.append(idx["sample"][tok])
        tok = samples[-1].get("next", "")
        if len(samples) > 10000:
            raise ReaderError(sample_file, "next", "expected a finite chain of samples")
    indices = select_indices(len(samples), frames)
    if not indices:
        raise ReaderError(sample_file, "frames", f"the selection is empty ({len(samples)} samples)")
    keep_tokens = {samples[i]["token"]: i for i in indices}

    sd_file = ver / "sample_data.json"
    sensor_of = {}
    for sd in t["sample_data"]:
        cs = idx["calibrated_sensor"].get(sd.get("calibrated_sensor_token"))
        if cs is None:
            continue
        sensor = idx["sensor"].get(cs.get("sensor_token"))
        if sensor is not None:
            channel = plain_name(sensor.get("channel"), ver / "sensor.json", f"token {sensor.get('token')}.channel",
                                 "channel name")
            sensor_of[sd["token"]] = (channel, sensor.get("modality"), cs)
    scene_sd = [sd for sd in t["sample_data"] if sd.get("sample_token") in keep_tokens and sd.get("is_key_frame", True)]
    cam_names = sorted({sensor_of[sd["token"]][0] for sd in scene_sd if sd["token"] in sensor_of
                        and sensor_of[sd["token"]][1] == "camera"})
    keep_cams = set(check_cameras(cameras, cam_names, ver / "sensor.json"))

    out_frames: list[Frame] = []
    sweeps: list[LidarSweep] = []
    images: dict[str, Path] = {}
    lidar_files = {}
    ego_t, ego_p = [], []
    warnings: list[str] = []
    for sd in scene_sd:
        where = f"token {sd.get('token')}"
        if sd["token"] not in sensor_of:
            raise ReaderError(sd_file, f"{where}.calibrated_sensor_token", "expected a calibrated sensor record")
        channel, modality, cs = sensor_of[sd["token"]]
        ep = idx["ego_pose"].get(sd.get("ego_pose_token"))
        if ep is None:
            raise ReaderError(sd_file, f"{where}.ego_pose_token", "expected an ego_pose record")
        ego = _pose(ep, ver / "ego_pose.json", f"token {ep.get('token')}")
        s2v = _pose(cs, ver / "calibrated_sensor.json", f"token {cs.get('token')}")
        ts = number(sd, "timestamp", sd_file, where) / 1e6
        rel_src = get(sd, "filename", sd_file, where, str)
        path = source_file(dataroot, rel_src, sd_file, f"{where}.filename")
        if modality == "camera" and channel in keep_cams:
            if not path.is_file():
                if skip_missing:
                    warnings.append(f"{sd_file}: {where}.filename: image {rel_src!r} does not exist, skipped")
                    continue
                raise ReaderError(sd_file, f"{where}.filename", f"image {rel_src!r} does not exist "
                                                               "(use --skip-missing to skip it)")
            K = np.asarray(cs.get("camera_intrinsic") or [], float)
            if K.shape != (3, 3):
                raise ReaderError(ver / "calibrated_sensor.json", f"token {cs.get('token')}.camera_intrinsic",
                                  "expected a 3x3 matrix")
            w, h = (int(number(sd, k, sd_file, where)) if sd.get(k) else 0 for k in ("width", "height"))
            if w <= 0 or h <= 0:
                from ._common import image_size

                w, h = image_size(path)
            intr = opencv_intrinsics(K[0, 0], K[1, 1], K[0, 2], K[1, 2], w, h)
            rel = f"images/{channel}/{path.name}"
            images[rel] = path
            out_frames.append(Frame(rel, opencv_to_opengl(ego @ s2v), intr, channel, ts))
        elif modality == "lidar":
            if not path.is_file():
                raise ReaderError(sd_file, f"{where}.filename", f"lidar file {rel_src!r} does not exist")
            rel = f"lidar/{channel}/{path.name.split('.')[0]}.npy"
            lidar_files[rel] = _load_pcd_bin(path)
            sweeps.append(LidarSweep(rel, ego @ s2v, ts, channel))
            ego_t.append(ts)
            ego_p.append(ego)

    actors: dict[str, ActorBuilder] = {}
    ann_file = ver / "sample_annotation.json"
    for ann in t["sample_annotation"]:
        si = keep_tokens.get(ann.get("sample_token"))
        if si is None:
            continue
        where = f"token {ann.get('token')}"
        pose = _pose(ann, ann_file, where)
        size = get(ann, "size", ann_file, where, list)
        if len(size) != 3:
            raise ReaderError(ann_file, f"{where}.size", "expected [width, length, height]")
        inst = idx["instance"].get(ann.get("instance_token"), {})
        cat = idx["category"].get(inst.get("category_token"), {}).get("name", "other")
        iid = plain_name(str(ann.get("instance_token")), ann_file, f"{where}.instance_token", "instance token")
        lwh = np.array([size[1], size[0], size[2]], float)
        b = actors.setdefault(iid, ActorBuilder(_category(cat), lwh, cat))
        b.add(float(samples[si]["timestamp"]) / 1e6, pose, lwh)
    ego_track = make_track(ego_t, ego_p)
    if not out_frames:
        raise ReaderError(sd_file, "", "no camera image to convert (check --cameras / --frames)")
    t0 = min([f.timestamp for f in out_frames] + ego_t)
    offset = (ego_track.poses[0, :3, 3] if ego_track is not None else out_frames[0].c2w[:3, 3]).copy()
    log = finish_log("nuscenes", ver, out_frames, sweeps, build_actors(actors), ego_track, offset=offset, t0=t0,
                     extra={"scene": scene.get("name")})
    conv = Conversion(log, images, lidar_files)
    for w in warnings:
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
