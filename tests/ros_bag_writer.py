"""Test helper: write a drive log (the synthetic street) as a ROS 1 bag, a ROS 2 bag or a plain MCAP file.

The tf tree is map -> odom (static) -> base_link (moving, the ego) -> <cam>_mount (static) ->
<cam>_optical (static, ROS optical axes) and base_link -> lidar (static); every image, CameraInfo and
PointCloud2 (x, y, z, intensity, ring, time) is stamped at its log time plus ``T0_NS``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rosbags.typesys import Stores, get_typestore

from simrecon.data.geometry import invert_pose, make_pose, matrix_to_quat, opengl_to_opencv, rot_z
from simrecon.data.model import DriveLog

T0_NS = 1_700_000_000_123_456_789  # a realistic ROS stamp (nanoseconds)
ODOM_IN_MAP = make_pose(rot_z(0.3), np.array([5.0, -2.0, 0.5]))
MOUNT_TILT = make_pose(rot_z(-0.2), np.array([0.1, 0.0, 0.0]))


@dataclass
class BagOptions:
    """What to write and which faults to inject."""

    kind: str = "ros2-mcap"  # ros1, ros2-sqlite3, ros2-mcap, mcap (plain file)
    compressed: bool = False  # CompressedImage (PNG) instead of raw rgb8 Image
    encoding: str = "rgb8"  # raw image encoding (bgr8 swaps the channels)
    distortion: tuple[str, list[float]] = ("plumb_bob", [0.0] * 5)
    cameras: list[str] | None = None  # None: every camera of the log
    camera_info: bool = True
    tf_cameras: bool = True  # the static links of the cameras
    odometry: bool = False  # a nav_msgs/Odometry topic /odom (odom -> base_link) as well as tf
    tf_ego: bool = True  # the moving odom -> base_link link on /tf
    duplicate_compressed: bool = False  # also publish each image on <ns>/image_raw/compressed
    boxes: str = "none"  # actor boxes in base_link at every ego time: none, markers (MarkerArray) or detections
    extra_topics: dict[str, str] = field(default_factory=dict)


def stamp(ns: int, ts) -> object:
    return ts.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(ts, ros1: bool, ns: int, frame: str):
    h = ts.types["std_msgs/msg/Header"]
    return h(seq=0, stamp=stamp(ns, ts), frame_id=frame) if ros1 else h(stamp=stamp(ns, ts), frame_id=frame)


def ns_of(t: float) -> int:
    return T0_NS + int(round(t * 1e9))


def _transform(ts, ros1: bool, ns: int, parent: str, child: str, pose: np.ndarray):
    q = matrix_to_quat(pose[:3, :3])
    v3, qt = ts.types["geometry_msgs/msg/Vector3"], ts.types["geometry_msgs/msg/Quaternion"]
    tf = ts.types["geometry_msgs/msg/Transform"](translation=v3(*pose[:3, 3]), rotation=qt(q[1], q[2], q[3], q[0]))
    return ts.types["geometry_msgs/msg/TransformStamped"](header=header(ts, ros1, ns, parent), child_frame_id=child,
                                                          transform=tf)


def camera_info(ts, ros1: bool, ns: int, frame: str, intr, distortion):
    model, d = distortion
    k = np.array([intr.fl_x, 0, intr.cx - 0.5, 0, intr.fl_y, intr.cy - 0.5, 0, 0, 1], np.float64)
    p = np.array([intr.fl_x, 0, intr.cx - 0.5, 0, 0, intr.fl_y, intr.cy - 0.5, 0, 0, 0, 1, 0], np.float64)
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    arrays = {"D": np.array(d, np.float64), "K": k, "R": np.eye(3).ravel(), "P": p}
    if not ros1:
        arrays = {key.lower(): val for key, val in arrays.items()}
    return ts.types["sensor_msgs/msg/CameraInfo"](header=header(ts, ros1, ns, frame), height=intr.h, width=intr.w,
                                                  distortion_model=model, binning_x=0, binning_y=0, roi=roi,
                                                  **arrays)


def image_msg(ts, ros1: bool, ns: int, frame: str, rgb: np.ndarray, opts: BagOptions):
    if opts.compressed:
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        return ts.types["sensor_msgs/msg/CompressedImage"](header=header(ts, ros1, ns, frame), format="png",
                                                           data=np.frombuffer(buf.getvalue(), np.uint8))
    arr = rgb[..., ::-1] if opts.encoding == "bgr8" else rgb
    h, w = rgb.shape[:2]
    return ts.types["sensor_msgs/msg/Image"](header=header(ts, ros1, ns, frame), height=h, width=w,
                                             encoding=opts.encoding, is_bigendian=0, step=w * 3,
                                             data=np.ascontiguousarray(arr).reshape(-1))


CLOUD_DTYPE = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                        "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
                        "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})


def cloud_msg(ts, ros1: bool, ns: int, frame: str, pts: np.ndarray, ring: np.ndarray, time: np.ndarray):
    """A PointCloud2 as a Velodyne driver writes it: x, y, z, intensity, ring (the beam) and time (s after the
    header stamp)."""
    rec = np.zeros(len(pts), CLOUD_DTYPE)
    for i, k in enumerate(("x", "y", "z", "intensity")):
        rec[k] = pts[:, i]
    rec["ring"] = ring
    rec["time"] = time
    pf = ts.types["sensor_msgs/msg/PointField"]
    fields = [pf(name=n, offset=CLOUD_DTYPE.fields[n][1], datatype=t, count=1)
              for n, t in (("x", 7), ("y", 7), ("z", 7), ("intensity", 7), ("ring", 4), ("time", 7))]
    return ts.types["sensor_msgs/msg/PointCloud2"](header=header(ts, ros1, ns, frame), height=1, width=len(pts),
                                                   fields=fields, is_bigendian=False, point_step=24,
                                                   row_step=24 * len(pts), data=rec.view(np.uint8).reshape(-1),
                                                   is_dense=True)


def _odometry(ts, ros1: bool, ns: int, pose: np.ndarray):
    q = matrix_to_quat(pose[:3, :3])
    g = ts.types
    p = g["geometry_msgs/msg/Pose"](position=g["geometry_msgs/msg/Point"](*pose[:3, 3]),
                                    orientation=g["geometry_msgs/msg/Quaternion"](q[1], q[2], q[3], q[0]))
    twist = g["geometry_msgs/msg/Twist"](linear=g["geometry_msgs/msg/Vector3"](0, 0, 0),
                                         angular=g["geometry_msgs/msg/Vector3"](0, 0, 0))
    return g["nav_msgs/msg/Odometry"](
        header=header(ts, ros1, ns, "odom"), child_frame_id="base_link",
        pose=g["geometry_msgs/msg/PoseWithCovariance"](pose=p, covariance=np.zeros(36)),
        twist=g["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))


VISION_MSGS = {  # vision_msgs (Humble), which rosbags' stores do not carry
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score",
    "vision_msgs/msg/ObjectHypothesisWithPose": "vision_msgs/ObjectHypothesis hypothesis\n"
                                                "geometry_msgs/PoseWithCovariance pose",
    "vision_msgs/msg/BoundingBox3D": "geometry_msgs/Pose center\ngeometry_msgs/Vector3 size",
    "vision_msgs/msg/Detection3D": "std_msgs/Header header\nvision_msgs/ObjectHypothesisWithPose[] results\n"
                                   "vision_msgs/BoundingBox3D bbox\nstring id",
    "vision_msgs/msg/Detection3DArray": "std_msgs/Header header\nvision_msgs/Detection3D[] detections",
}


def _geometry_pose(ts, pose: np.ndarray):
    q = matrix_to_quat(pose[:3, :3])
    g = ts.types
    return g["geometry_msgs/msg/Pose"](position=g["geometry_msgs/msg/Point"](*pose[:3, 3]),
                                       orientation=g["geometry_msgs/msg/Quaternion"](q[1], q[2], q[3], q[0]))


def _boxes_msg(ts, ros1: bool, ns: int, boxes: list, kind: str):
    """``boxes``: (index, class, box-to-base_link pose, size)."""
    g = ts.types
    v3 = g["geometry_msgs/msg/Vector3"]
    if kind == "markers":
        col = g["std_msgs/msg/ColorRGBA"](r=1.0, g=0.0, b=0.0, a=0.5)
        extra = {"lifetime": g["builtin_interfaces/msg/Duration"](sec=0, nanosec=0), "frame_locked": False,
                 "points": [], "colors": [], "text": "", "mesh_resource": "", "mesh_use_embedded_materials": False}
        if not ros1:
            extra.update(texture_resource="", texture=g["sensor_msgs/msg/CompressedImage"](
                header=header(ts, ros1, 0, ""), format="", data=np.zeros(0, np.uint8)), uv_coordinates=[],
                mesh_file=g["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)))
        markers = [g["visualization_msgs/msg/Marker"](header=header(ts, ros1, ns, "base_link"), ns=cls, id=i, type=1,
                                                       action=0, pose=_geometry_pose(ts, pose), scale=v3(*size),
                                                       color=col, **extra)
                   for i, cls, pose, size in boxes]
        return "visualization_msgs/msg/MarkerArray", g["visualization_msgs/msg/MarkerArray"](markers=markers)
    dets = []
    for i, cls, pose, size in boxes:
        hyp = g["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=g["vision_msgs/msg/ObjectHypothesis"](class_id=cls, score=1.0),
            pose=g["geometry_msgs/msg/PoseWithCovariance"](pose=_geometry_pose(ts, pose), covariance=np.zeros(36)))
        dets.append(g["vision_msgs/msg/Detection3D"](header=header(ts, ros1, ns, "base_link"), results=[hyp],
                                                     bbox=g["vision_msgs/msg/BoundingBox3D"](
                                                         center=_geometry_pose(ts, pose), size=v3(*size)),
                                                     id=f"{cls}_{i}"))
    return "vision_msgs/msg/Detection3DArray", g["vision_msgs/msg/Detection3DArray"](
        header=header(ts, ros1, ns, "base_link"), detections=dets)


def messages(log: DriveLog, opts: BagOptions, ts, ros1: bool) -> list[tuple[str, str, int, object]]:
    """(topic, type, log time ns, message) for the whole log, in time order."""
    out: list[tuple[str, str, int, object]] = []
    tf_msg = ts.types["tf2_msgs/msg/TFMessage"]
    ego = log.ego
    cams = list(log.cameras) if opts.cameras is None else opts.cameras
    statics = [_transform(ts, ros1, T0_NS, "map", "odom", ODOM_IN_MAP)]
    for cam in cams:
        f0 = log.cameras[cam][0]
        base_cam = invert_pose(ego.poses_at(np.array([f0.timestamp]))[0][0]) @ opengl_to_opencv(f0.c2w)
        if opts.tf_cameras:
            statics.append(_transform(ts, ros1, T0_NS, "base_link", f"{cam}_mount", MOUNT_TILT))
            statics.append(_transform(ts, ros1, T0_NS, f"{cam}_mount", f"{cam}_optical",
                                      invert_pose(MOUNT_TILT) @ base_cam))
    for sweep in log.lidar[:1]:
        base_lidar = invert_pose(ego.poses_at(np.array([sweep.timestamp]))[0][0]) @ sweep.s2w
        statics.append(_transform(ts, ros1, T0_NS, "base_link", sweep.sensor, base_lidar))
    out.append(("/tf_static", "tf2_msgs/msg/TFMessage", T0_NS - 1000, tf_msg(transforms=statics)))
    for t, pose in zip(ego.timestamps, ego.poses):
        odom_base = invert_pose(ODOM_IN_MAP) @ pose
        if opts.tf_ego:
            out.append(("/tf", "tf2_msgs/msg/TFMessage", ns_of(t),
                        tf_msg(transforms=[_transform(ts, ros1, ns_of(t), "odom", "base_link", odom_base)])))
        if opts.odometry:
            out.append(("/odom", "nav_msgs/msg/Odometry", ns_of(t), _odometry(ts, ros1, ns_of(t), odom_base)))
        if opts.boxes != "none":
            boxes = [(i, a.cls, invert_pose(pose) @ p, a.size) for i, a in enumerate(log.actors)
                     for p in [a.pose_at(t)] if p is not None]
            typ, msg = _boxes_msg(ts, ros1, ns_of(t), boxes, opts.boxes)
            out.append(("/perception/boxes", typ, ns_of(t) + 3, msg))
    for f in log.frames:
        if f.camera not in cams:
            continue
        ns = ns_of(f.timestamp)
        rgb = np.array(Image.open(log.root / f.file_path).convert("RGB"))
        frame = f"{f.camera}_optical"
        topic = f"/sensors/{f.camera}/image_raw" + ("/compressed" if opts.compressed else "")
        typ = "sensor_msgs/msg/CompressedImage" if opts.compressed else "sensor_msgs/msg/Image"
        out.append((topic, typ, ns + 1, image_msg(ts, ros1, ns, frame, rgb, opts)))
        if opts.duplicate_compressed:
            copy = BagOptions(compressed=True)
            out.append((f"/sensors/{f.camera}/image_raw/compressed", "sensor_msgs/msg/CompressedImage", ns + 1,
                        image_msg(ts, ros1, ns, frame, rgb, copy)))
        if opts.camera_info:
            out.append((f"/sensors/{f.camera}/camera_info", "sensor_msgs/msg/CameraInfo", ns + 1,
                        camera_info(ts, ros1, ns, frame, f.intrinsics, opts.distortion)))
    for s in log.lidar:
        layout, sensor = s.load_layout(log.root), log.lidar_sensors[s.sensor]
        time = layout.column / (sensor.columns * sensor.spin_rate_hz)  # each column fires in turn
        out.append(("/sensors/lidar/points", "sensor_msgs/msg/PointCloud2", ns_of(s.timestamp) + 2,
                    cloud_msg(ts, ros1, ns_of(s.timestamp), s.sensor, s.load(log.root), layout.beam, time)))
    out.sort(key=lambda m: m[2])
    return out


def write_bag(log: DriveLog, path: Path, opts: BagOptions | None = None) -> Path:
    """Write ``log`` as a recording at ``path`` (a .bag file, a ROS 2 bag folder or an .mcap file)."""
    opts = opts or BagOptions()
    ros1 = opts.kind == "ros1"
    ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    if ros1:  # rosbags' Noetic store lacks tf2_msgs
        from rosbags.typesys import get_types_from_msg

        ts.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    if opts.boxes == "detections":
        from rosbags.typesys import get_types_from_msg

        for name, text in VISION_MSGS.items():
            ts.register(get_types_from_msg(text, name))
    msgs = messages(log, opts, ts, ros1)
    if ros1:
        from rosbags.rosbag1 import Writer as Writer1

        writer = Writer1(path)
        serialize = ts.serialize_ros1
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.SQLITE3 if opts.kind == "ros2-sqlite3" else StoragePlugin.MCAP
        writer = Writer(path, version=9, storage_plugin=plugin)
        serialize = ts.serialize_cdr
    with writer:
        conns = {}
        for topic, typ, ns, msg in msgs:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, typ, typestore=ts)
            writer.write(conns[topic], ns, serialize(msg, typ))
    if opts.kind == "mcap":  # a plain MCAP file: the storage file of the ROS 2 bag on its own
        files = list(Path(path).glob("*.mcap"))
        plain = Path(path).with_suffix(".mcap")
        files[0].rename(plain)
        return plain
    return Path(path)
