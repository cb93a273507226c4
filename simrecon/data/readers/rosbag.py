"""ROS 1 bags, ROS 2 bags (sqlite3 or MCAP storage) and plain MCAP files with ROS 2 messages.

``SRC`` is the recording or a topics YAML file naming it (``_ros_source``). Cameras come from
``sensor_msgs/Image`` / ``CompressedImage`` with their ``CameraInfo`` (plumb_bob -> OPENCV, equidistant
-> OPENCV_FISHEYE, K's OpenCV pixel centres shifted by +0.5); lidar from ``PointCloud2`` (x, y, z,
intensity; points stay in the cloud's frame; with a ``ring`` field, an estimated v1.1 sensor model and each
point's beam, column and time: ``_ros_lidar``); poses from ``/tf`` + ``/tf_static``: every image and cloud
is placed at its own header stamp by chaining the tree from its ``frame_id`` to the world frame
(moving links interpolated), so camera and lidar extrinsics come from the tree. The ego is the base
frame (``base_link``) in the world frame (``map``, else ``odom``, else the tree's root), or a
``nav_msgs/Odometry`` topic when tf does not reach the base frame. ROS optical frames (x right, y down,
z forward) become our OpenGL camera axes. Times count from the first kept image or cloud stamp
(``source.time_offset_ns`` holds that stamp); a world more than 1 km from its origin is recentred on the
first ego position (``source.world_offset``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..geometry import opencv_to_opengl
from ..lidar_estimate import BeamModel
from ..model import Frame, LidarSweep, Track
from ._common import ActorBuilder, Conversion, ReaderError, build_actors, check_cameras, finish_log, map_class
from ._ros_collect import Collected, MessageStream, collect, open_recording
from ._ros_lidar import cloud_layout, estimate_sensor
from ._ros_source import RosOptions, resolve
from ._ros_tf import TfTree
from ._ros_topics import Selection, choose

_RECENTRE_M = 1000.0  # recentre worlds whose first ego position is further than this from the origin (metres)


def _types(reader) -> dict[str, str | None]:
    return {name: info.msgtype for name, info in reader.topics.items()}


def _world_frame(tree: TfTree, world: str | None) -> str:
    if world is not None:
        return world
    frames = tree.frames()
    return next((f for f in ("map", "odom") if f in frames), "")


def _ego_frames(data: Collected, sel: Selection, opts: RosOptions, bag: Path) -> tuple[str, str, str]:
    """(world frame, base frame, how the ego was found); odometry goes into the tree as the base's link."""
    tree = data.tree
    frames = tree.frames()
    base = opts.base_frame or next((f for f in ("base_link", "base_footprint") if f in frames), None)
    odom_topic = sel.odometry
    if odom_topic is None and (base is None or tree.root_of(base) == base):
        if len(sel.odometry_candidates) > 1:
            raise ReaderError(bag, "", f"no tf to the base frame and several odometry topics: "
                                       f"{', '.join(sel.odometry_candidates)}; choose one (odometry: TOPIC)")
        odom_topic = sel.odometry_candidates[0] if sel.odometry_candidates else None
    if odom_topic is not None:
        samples = data.odometry.get(odom_topic, [])
        if not samples:
            raise ReaderError(bag, odom_topic, "odometry topic has no message")
        base = opts.base_frame or samples[0].child
        world = opts.world_frame or samples[0].parent
        tree.links.pop(TfTree.clean(base), None)
        for s in samples:
            tree.add(s.parent, base, s.pose, s.t)
        return world, base, f"odometry {odom_topic} ({world} -> {base})"
    if base is None:
        raise ReaderError(bag, "", f"no base frame: tf has neither base_link nor base_footprint (frames: "
                                   f"{', '.join(sorted(frames)) or 'none'}) and there is no odometry topic; "
                                   "set base_frame in a topics YAML")
    world = _world_frame(tree, opts.world_frame) or tree.root_of(base)
    return world, base, f"tf ({world} -> {base})"


def _place(tree: TfTree, world: str, frame: str, stamp_ns: int, t_ref: int, what: str, problems: list[str]):
    """The frame-to-world pose at ``stamp_ns``, or None (the reason appended to ``problems``)."""
    found = tree.lookup(world, frame, (stamp_ns - t_ref) * 1e-9)
    if found.pose is None:
        problems.append(f"{what}: {found.problem}")
    return found.pose


def _camera_frames(data: Collected, sel: Selection, world: str, cams: list[str], frames: slice,
                   conv_images: dict, problems: list[str], bag: Path) -> list[tuple[int, Frame]]:
    """Every placed image as (stamp ns, Frame); ``conv_images`` gets output path -> (position in the recording,
    message key)."""
    out = []
    for name in cams:
        topic = sel.cameras[name].image
        intr = data.infos.get(name)
        if intr is None:
            raise ReaderError(bag, sel.cameras[name].info or topic, f"missing CameraInfo for camera {name!r}: "
                                                                    "the topic has no message")
        msgs = sorted(data.images.get(name, []), key=lambda m: m.stamp_ns)[frames]
        kept = 0
        for i, m in enumerate(msgs):
            if m.size != (intr.w, intr.h):
                raise ReaderError(bag, topic, f"image is {m.size[0]} x {m.size[1]} but CameraInfo says "
                                              f"{intr.w} x {intr.h}")
            pose = _place(data.tree, world, m.frame, m.stamp_ns, data.t_ref_ns, topic, problems)
            if pose is None:
                continue
            rel = f"images/{name}/{i:06d}{m.suffix}"
            conv_images[rel] = (m.seq, m.key)
            out.append((m.stamp_ns, Frame(rel, opencv_to_opengl(pose), intr, name, 0.0)))
            kept += 1
        if msgs and not kept:
            raise ReaderError(bag, topic, f"no image of camera {name!r} could be placed: {problems[-1]}")
    return out


def _sweeps(data: Collected, sel: Selection, world: str, lo: int, hi: int, conv_lidar: dict,
            problems: list[str]) -> list[tuple[int, LidarSweep]]:
    """Sweeps whose stamps fall within the kept images' span (``lo``..``hi`` ns, +-0.1 s)."""
    out = []
    margin = 100_000_000
    for name, topic in sel.lidar.items():
        clouds = sorted(data.clouds.get(name, []), key=lambda m: m.stamp_ns)
        for i, m in enumerate(c for c in clouds if lo - margin <= c.stamp_ns <= hi + margin):
            pose = _place(data.tree, world, m.frame, m.stamp_ns, data.t_ref_ns, topic, problems)
            if pose is None:
                continue
            rel = f"lidar/{name}/{i:06d}.npy"
            conv_lidar[rel] = (m.seq, m.key)
            out.append((m.stamp_ns, LidarSweep(rel, pose, 0.0, name)))
    return out


def _ego(data: Collected, world: str, base: str, stamps: list[int]) -> tuple[list[int], list[np.ndarray]]:
    times, poses = [], []
    for ns in sorted(set(stamps)):
        found = data.tree.lookup(world, base, (ns - data.t_ref_ns) * 1e-9)
        if found.pose is not None:
            times.append(ns)
            poses.append(found.pose)
    return times, poses


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None), skip_missing: bool = False,
         topics: Path | None = None, start: float | None = None, duration: float | None = None) -> Conversion:
    """``src``: a recording or a topics YAML file; ``topics``: a topics file for the recording ``src``; ``start``,
    ``duration`` (s, from the recording's first message) override the topics file's."""
    opts = resolve(Path(src), topics)
    if start is not None:
        opts.start = start
    if duration is not None:
        opts.duration = duration
    reader = open_recording(opts.bag)
    try:
        sel = choose(_types(reader), opts)
        cams = check_cameras(cameras, list(sel.cameras), opts.config or opts.bag)
        sel.cameras = {n: sel.cameras[n] for n in cams}
        data = collect(reader, sel, opts)
    finally:
        reader.close()
    return _assemble(data, sel, opts, cams, frames)


def _loaders(bag: Path, chosen: dict, load: str) -> dict:
    """Output path -> loader reading its message from one stream, in recording order (bounded memory)."""
    ordered = sorted(chosen.items(), key=lambda kv: kv[1][0])
    stream = MessageStream(bag, {key for _, (_, key) in ordered})
    return {rel: (lambda key=key: getattr(stream, load)(key)) for rel, (_, key) in ordered}


def _lidar_sensors(bag: Path, data: Collected, lidar: dict) -> dict[str, BeamModel]:
    """Per lidar with a ``ring`` field: its sensor model estimated from its first kept cloud."""
    first: dict[str, tuple] = {}
    for rel, (seq, key) in sorted(lidar.items(), key=lambda kv: kv[1][0]):
        first.setdefault(rel.split("/")[1], key)
    out = {}
    for name, key in first.items():
        stamps = sorted(m.stamp_ns for m in data.clouds.get(name, []))
        period = float(np.median(np.diff(stamps))) * 1e-9 if len(stamps) > 1 else None
        stream = MessageStream(bag, {key})
        try:
            cloud = stream.cloud(key)
        finally:
            stream.close()
        model = estimate_sensor(cloud, period)
        if model is not None:
            out[name] = model
    return out


def _sweep_loaders(bag: Path, lidar: dict, sensors: dict) -> dict:
    """Output path -> loader of (points, layout or None), one stream in recording order (bounded memory)."""
    ordered = sorted(lidar.items(), key=lambda kv: kv[1][0])
    stream = MessageStream(bag, {key for _, (_, key) in ordered})

    def load(key, name):
        cloud = stream.cloud(key)
        found = sensors.get(name)
        return cloud.points, (cloud_layout(cloud, found) if found is not None else None)

    return {rel: (lambda key=key, name=rel.split("/")[1]: load(key, name)) for rel, (_, key) in ordered}


def _actors(data: Collected, world: str, t0: int, problems: list[str]) -> list:
    builders: dict[str, ActorBuilder] = {}
    for b in data.boxes:
        pose = _place(data.tree, world, b.frame, b.stamp_ns, data.t_ref_ns, f"box {b.actor}", problems)
        if pose is None:
            continue
        builder = builders.setdefault(b.actor, ActorBuilder(map_class(b.source_class), b.size, b.source_class))
        builder.add((b.stamp_ns - t0) * 1e-9, pose @ b.pose, b.size)
    return build_actors(builders)


def _assemble(data: Collected, sel: Selection, opts: RosOptions, cams: list[str], frames: slice) -> Conversion:
    bag = opts.config or opts.bag
    world, base, ego_how = _ego_frames(data, sel, opts, bag)
    images: dict = {}
    lidar: dict = {}
    problems: list[str] = []
    cam_frames = _camera_frames(data, sel, world, cams, frames, images, problems, bag)
    if not cam_frames:
        raise ReaderError(bag, "", "no camera image in the selected window (check start / duration / --frames)")
    stamps = [ns for ns, _ in cam_frames]
    sweeps = _sweeps(data, sel, world, min(stamps), max(stamps), lidar, problems)
    t0 = min(stamps + [ns for ns, _ in sweeps])
    for ns, item in cam_frames + sweeps:
        item.timestamp = (ns - t0) * 1e-9
    ego_ns, ego_poses = _ego(data, world, base, stamps + [ns for ns, _ in sweeps])
    ego = Track(np.array([(ns - t0) * 1e-9 for ns in ego_ns]), np.stack(ego_poses)) if ego_ns else None
    offset = None
    if ego is not None and np.linalg.norm(ego.poses[0, :3, 3]) > _RECENTRE_M:
        offset = ego.poses[0, :3, 3].copy()
    extra = {"time_offset": t0 * 1e-9, "time_offset_ns": int(t0), "world_frame": world, "base_frame": base,
             "ego_source": ego_how, "topics": sel.describe()}
    actors = _actors(data, world, t0, problems)
    log = finish_log("rosbag", opts.bag, [f for _, f in cam_frames], [s for _, s in sweeps], actors, ego,
                     offset=offset, extra=extra)
    sensors = _lidar_sensors(opts.bag, data, lidar)
    log.lidar_sensors.update({name: model.sensor for name, model in sensors.items()})
    conv = Conversion(log, _loaders(opts.bag, images, "image"), _sweep_loaders(opts.bag, lidar, sensors))
    conv.warn(f"{bag}: chose {sel.describe()}; ego from {ego_how}")
    if problems:
        conv.warn(f"{bag}: {len(problems)} message(s) skipped without a pose, first: {problems[0]}")
    return conv
