"""``simrecon synth``: write a synthetic drive log (OUT/log) and the ground truth it lacks (OUT/gt).

Ground truth sets (each with ``cameras.json`` in the transforms.json frame schema):
- ``ego_shift_left_1m``, ``ego_shift_right_1m``, ``ego_shift_left_2m``: the front camera with the ego path
  moved along the vehicle's left axis;
- ``actor_removed``: the front camera on the logged path with the moving actor ``car_0`` removed.
Plus ``actors.json`` (exact boxes and parts), ``boxes/<id>.ply`` (tight box) and ``meshes/<id>.ply``
(the true geometry), all in the actor's box frame.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..data.geometry import make_pose
from ..data.io import atomic_write_text, write_log
from ..data.lidar_io import write_points, write_sidecar
from ..data.lidar_model import LidarSensor, uniform_sensor
from ..data.model import Actor, DriveLog, Frame, LidarSweep, Track
from ..data.shutter import RollingShutter
from ..data.outdir import check_target, naming_failures, swap_in, temp_beside
from .lidar import sweep_points, trace_sweep
from .noise import noisy_actors, rig_noise, write_true_poses
from .render import View, render_camera, world_at
from .rig import CAMERAS, LIDAR_TO_VEHICLE
from .scene import SEMANTIC, Street, build_street
from .shutter import render_rolling

Progress = Callable[[str], None]  # called once per finished unit of work with a short label
REMOVED_ACTOR = "car_0"
SHIFTS = {"ego_shift_left_1m": 1.0, "ego_shift_right_1m": -1.0, "ego_shift_left_2m": 2.0}


@dataclass
class SynthConfig:
    """What to generate. The defaults render in about a minute on two CPU cores (60 s idle, 2026-11-21)."""

    seconds: float = 2.0  # length of the drive
    fps: float = 10.0  # camera and lidar rate
    width: int = 480
    height: int = 270
    seed: int = 0
    ego_speed: float = 8.0  # m/s
    lidar_beams: int = 32
    lidar_azimuths: int = 1024
    ground_truth: bool = True
    antialias: int = 2  # k x k rays over the area of edge pixels (a camera integrates over its pixels); 1: off
    # Auto-exposure in the log's images: camera k's gain is exp(A sin(2 pi t / 1.6 s + 2 k)) (0.25: +-28 %). The
    # ground truth keeps the scene's own exposure. 0: every frame exposed alike.
    exposure_drift: float = 0.0
    # Pose noise (synth/noise.py): every timestamp's camera rig and ego pose in the log is moved by exactly
    # pose_noise_m metres and rotated by pose_noise_deg degrees (random directions); every actor track keyframe by
    # track_noise_m and a yaw of track_noise_deg. Images, lidar and ground truth stay exact; OUT/true_poses.json
    # keeps the exact poses. 0: exact poses (the log says so: "poses_exact": true).
    pose_noise_m: float = 0.0
    pose_noise_deg: float = 0.0
    track_noise_m: float = 0.0
    track_noise_deg: float = 0.0
    # Rolling shutter (synth/shutter.py): every camera reads its lines top to bottom over this many seconds, each
    # line rendered where the ego and the actors were at its exposure; frames say so (drive-log v1.2). The ground
    # truth's novel views stay global-shutter. 0: global shutter.
    rolling_shutter_s: float = 0.0

    def check(self) -> None:
        if not (0 < self.seconds <= 120):
            raise ValueError(f"--seconds must be in (0, 120], got {self.seconds}")
        if not (0 < self.fps <= 60):
            raise ValueError(f"fps must be in (0, 60], got {self.fps}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not (16 <= v <= 4096):
                raise ValueError(f"--{name} must be in [16, 4096], got {v}")
        if not (1 <= self.antialias <= 8):
            raise ValueError(f"antialias must be in [1, 8], got {self.antialias}")
        if not (0.0 <= self.exposure_drift <= 2.0):
            raise ValueError(f"--exposure-drift must be in [0, 2], got {self.exposure_drift}")
        for name in ("pose_noise_m", "pose_noise_deg", "track_noise_m", "track_noise_deg"):
            v = getattr(self, name)
            if not 0.0 <= v <= (5.0 if name.endswith("_m") else 45.0):
                raise ValueError(f"{name}: must be in [0, {5 if name.endswith('_m') else 45}], got {v}")
        if not 0.0 < self.ego_speed <= 40.0:
            raise ValueError(f"--ego-speed must be in (0, 40] m/s, got {self.ego_speed}")
        if not 0.0 <= self.rolling_shutter_s <= 0.1:
            raise ValueError(f"--rolling-shutter must be in [0, 0.1] seconds, got {self.rolling_shutter_s}")
        if self.seconds * self.fps < 2:
            raise ValueError("the drive needs at least 2 timestamps: raise --seconds")


def lidar_sensor(cfg: SynthConfig) -> LidarSensor:
    """The roof lidar: ``lidar_beams`` beams evenly from -22 to +8 degrees, ``lidar_azimuths`` columns, 0.5-80 m."""
    return uniform_sensor(cfg.lidar_beams, cfg.lidar_azimuths, min_range_m=0.5, max_range_m=80.0)


def _write_sweep(log_dir: Path, k: int, world, s2w: np.ndarray, t: float, cfg: SynthConfig) -> LidarSweep:
    """Sweep ``k`` (points and their beam/column indices) into ``log_dir/lidar``."""
    sensor = lidar_sensor(cfg)
    points, layout = sweep_points(trace_sweep(world, sensor, s2w, t, cfg.seed), sensor)
    rel, index = f"lidar/{k:06d}.npy", f"lidar/{k:06d}.index.npy"
    write_points(log_dir / rel, points)
    write_sidecar(log_dir / index, "index_path", np.stack([layout.beam, layout.column], axis=1))
    return LidarSweep(rel, s2w, t, "lidar", index_path=index)


def count_units(cfg: SynthConfig) -> int:
    """How many progress steps ``generate`` reports (for a progress bar)."""
    n = max(2, int(round(cfg.seconds * cfg.fps)))
    per_t = len(CAMERAS) + 1 + ((len(SHIFTS) + 1) if cfg.ground_truth else 0)
    return n * per_t


def _exposed(rgb: np.ndarray, drift: float, t: float, camera: int) -> np.ndarray:
    """``rgb`` [H, W, 3] uint8 as camera ``camera``'s auto-exposure would record it at ``t`` (``exposure_drift``)."""
    if drift == 0.0:
        return rgb
    gain = math.exp(drift * math.sin(2 * math.pi * t / 1.6 + 2.0 * camera))
    return np.clip(rgb.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)


def _log_view(street: Street, world, c2w: np.ndarray, mount: np.ndarray, intr, t: float,
              shutter: RollingShutter | None, cfg: SynthConfig) -> View:
    """A log camera's image at ``t``: at ``c2w`` in ``world``, or line by line with a rolling ``shutter``."""
    if shutter is None:
        return render_camera(world, c2w, intr, cfg.seed, cfg.antialias)
    return render_rolling(street, mount, intr, t, shutter, cfg.seed, cfg.antialias)


def _save_png(path: Path, arr: np.ndarray) -> None:
    Image.fromarray(arr).save(path, optimize=False, compress_level=1)


def _save_view(root: Path, stem: str, view: View) -> dict:
    """Write a GT view (rgb, depth, instance, semantic); returns its file paths relative to ``root``."""
    paths = {
        "file_path": f"images/{stem}.png",
        "depth_file_path": f"depth/{stem}.npy",
        "instance_file_path": f"instance/{stem}.png",
        "semantic_file_path": f"semantic/{stem}.png",
    }
    _save_png(root / paths["file_path"], view.rgb)
    np.save(root / paths["depth_file_path"], view.depth)
    _save_png(root / paths["instance_file_path"], view.instance)
    _save_png(root / paths["semantic_file_path"], view.semantic)
    return paths


def _box_mesh_ply(boxes: list[tuple[np.ndarray, np.ndarray]]) -> str:
    """ASCII PLY of boxes given as (centre [3], half size [3]), 8 vertices and 12 triangles each."""
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    verts, faces = [], []
    for center, half in boxes:
        base = len(verts)
        verts.extend(center + signs * half)
        for a, b, c, d in quads:  # outward-facing winding
            faces.append((base + a, base + b, base + c))
            faces.append((base + a, base + c, base + d))
    lines = ["ply", "format ascii 1.0", f"element vertex {len(verts)}", "property float x", "property float y",
             "property float z", f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    lines += [f"{v[0]:.6f} {v[1]:.6f} {v[2]:.6f}" for v in verts]
    lines += [f"3 {a} {b} {c}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


def _log_actors(street: Street) -> list[Actor]:
    out = []
    for a in street.actors:
        if a.static:
            track = Track(a.times[:1], a.poses[:1])
        else:
            track = Track(a.times, a.poses)
        out.append(Actor(a.id, a.cls, a.size.copy(), track, static=a.static))
    return out


def _write_gt_actors(gt: Path, street: Street) -> None:
    (gt / "meshes").mkdir()
    (gt / "boxes").mkdir()
    entries = []
    for k, a in enumerate(street.actors, start=1):
        entries.append({
            "id": a.id, "class": a.cls, "instance_id": k, "semantic_id": SEMANTIC[a.cls],
            "size": a.size.tolist(), "static": a.static, "moving": a.id in street.moving_actor_ids,
            "parts": [{"center": p.center.tolist(), "half_size": p.half.tolist()} for p in a.parts],
            "mesh": f"meshes/{a.id}.ply", "box_mesh": f"boxes/{a.id}.ply",
        })
        (gt / "meshes" / f"{a.id}.ply").write_text(_box_mesh_ply([(p.center, p.half) for p in a.parts]))
        (gt / "boxes" / f"{a.id}.ply").write_text(_box_mesh_ply([(np.zeros(3), a.size / 2)]))
    doc = {"frame": "box frame: origin at the box centre, x forward, y left, z up, metres",
           "semantic_classes": SEMANTIC, "actors": entries}
    atomic_write_text(gt / "actors.json", json.dumps(doc, indent=1))


def _generate_into(root: Path, cfg: SynthConfig, progress: Progress | None) -> DriveLog:
    tick = progress or (lambda _label: None)
    street = build_street(cfg.seconds, cfg.fps, cfg.seed, cfg.ego_speed)
    log_dir = root / "log"
    for cam in CAMERAS:
        (log_dir / "images" / cam.name).mkdir(parents=True)
    (log_dir / "lidar").mkdir()
    frames, sweeps = [], []
    gt_frames: dict[str, list[dict]] = {name: [] for name in list(SHIFTS) + ["actor_removed"]}
    if cfg.ground_truth:
        for name in gt_frames:
            for sub in ("images", "depth", "instance", "semantic"):
                (root / "gt" / name / sub).mkdir(parents=True)
    front = CAMERAS[0]
    intr = {cam.name: cam.intrinsics(cfg.width, cfg.height) for cam in CAMERAS}
    noise = rig_noise(len(street.ego_times), cfg.pose_noise_m, cfg.pose_noise_deg, cfg.seed)
    true_frames, noisy_ego = [], []
    shutter = RollingShutter(cfg.rolling_shutter_s) if cfg.rolling_shutter_s > 0 else None
    for k, (t, ego) in enumerate(zip(street.ego_times, street.ego_poses)):
        world = world_at(street, float(t))
        noisy_ego.append(ego @ noise[k])
        for ci, cam in enumerate(CAMERAS):
            c2w = ego @ cam.camera_to_vehicle()
            view = _log_view(street, world, c2w, cam.camera_to_vehicle(), intr[cam.name], float(t), shutter, cfg)
            rel = f"images/{cam.name}/{k:06d}.png"
            _save_png(log_dir / rel, _exposed(view.rgb, cfg.exposure_drift, float(t), ci))
            true_frames.append(Frame(rel, c2w, intr[cam.name], cam.name, float(t), rolling_shutter=shutter))
            frames.append(Frame(rel, noisy_ego[-1] @ cam.camera_to_vehicle(), intr[cam.name], cam.name, float(t),
                                rolling_shutter=shutter))
            tick(f"camera {cam.name} t={t:.2f}s")
        sweeps.append(_write_sweep(log_dir, k, world, ego @ LIDAR_TO_VEHICLE, float(t), cfg))
        tick(f"lidar t={t:.2f}s")
        if not cfg.ground_truth:
            continue
        for name, shift in SHIFTS.items():
            c2w = ego @ make_pose(np.eye(3), np.array([0.0, shift, 0.0])) @ front.camera_to_vehicle()
            view = render_camera(world, c2w, intr["front"], cfg.seed, cfg.antialias)
            paths = _save_view(root / "gt" / name, f"{k:06d}", view)
            gt_frames[name].append({**paths, "camera": "front", "timestamp": float(t),
                                    "transform_matrix": c2w.tolist()})
            tick(f"gt {name} t={t:.2f}s")
        removed = world_at(street, float(t), exclude=frozenset({REMOVED_ACTOR}))
        c2w = ego @ front.camera_to_vehicle()
        paths = _save_view(root / "gt" / "actor_removed", f"{k:06d}", render_camera(removed, c2w, intr["front"],
                                                                                    cfg.seed, cfg.antialias))
        gt_frames["actor_removed"].append({**paths, "camera": "front", "timestamp": float(t),
                                           "transform_matrix": c2w.tolist()})
        tick(f"gt actor_removed t={t:.2f}s")
    actors = _log_actors(street)
    exact = cfg.pose_noise_m == 0 and cfg.pose_noise_deg == 0
    log = DriveLog(log_dir, frames, sweeps,
                   noisy_actors(actors, cfg.track_noise_m, cfg.track_noise_deg, cfg.seed),
                   Track(street.ego_times, np.stack(noisy_ego)), 1.1, np.array([0.0, 0.0, 1.0]),
                   {"source": "simrecon synth", "synth_config": asdict(cfg), "poses_exact": exact,
                    "tracks_exact": not (cfg.track_noise_m or cfg.track_noise_deg)},
                   {"lidar": lidar_sensor(cfg)})
    write_log(log)
    if not exact or cfg.track_noise_m or cfg.track_noise_deg:
        write_true_poses(root, true_frames, Track(street.ego_times, street.ego_poses), actors,
                         {"pose_m": cfg.pose_noise_m, "pose_deg": cfg.pose_noise_deg,
                          "track_m": cfg.track_noise_m, "track_deg": cfg.track_noise_deg})
    if cfg.ground_truth:
        gt = root / "gt"
        for name, entries in gt_frames.items():
            desc = (f"front camera with the ego path shifted {SHIFTS[name]:+.1f} m along the vehicle's left axis"
                    if name in SHIFTS else f"front camera on the logged path with actor {REMOVED_ACTOR} removed")
            doc = {**intr["front"].to_json(), "description": desc,
                   "depth": "float32 .npy, metres along the camera's view axis, inf where sky",
                   "instance": "uint16 PNG: 0 background, k = actors.json entry with instance_id k",
                   "semantic": "uint8 PNG, ids in actors.json semantic_classes",
                   "frames": entries}
            if name in SHIFTS:
                doc["ego_shift_left_m"] = SHIFTS[name]
            else:
                doc["removed_actor"] = REMOVED_ACTOR
            atomic_write_text(gt / name / "cameras.json", json.dumps(doc, indent=1))
        _write_gt_actors(gt, street)
    return log


def generate(out: str | Path, cfg: SynthConfig | None = None, progress: Progress | None = None,
             force: bool = False) -> Path:
    """Generate the synthetic drive into ``out`` (built under a temporary name, renamed when complete).

    Returns the log folder ``out/log``. An existing ``out`` is an error unless ``force`` (and then only a
    folder that simrecon wrote is replaced: see ``data.outdir``).
    """
    cfg = cfg or SynthConfig()
    cfg.check()
    out = Path(out)
    check_target(out, force)
    tmp = temp_beside(out)
    try:
        with naming_failures(out):
            _generate_into(tmp, cfg, progress)
            swap_in(tmp, out, "synth")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out / "log"
