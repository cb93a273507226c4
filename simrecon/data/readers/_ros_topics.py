"""Which topics of a ROS recording become cameras, lidar sensors and the ego pose.

Without a topics YAML every image topic is a camera (named after its namespace: ``/cam/front/image_raw``
-> ``cam_front``), every PointCloud2 topic a lidar, ``/tf`` + ``/tf_static`` give the poses and a lone
Odometry topic is the fallback ego source. Two topics that would become the same camera (a raw and a
compressed copy), or several odometry topics where one is needed, are an error listing the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ._common import ReaderError
from ._ros_source import CameraTopics, RosOptions

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
INFO = "sensor_msgs/msg/CameraInfo"
CLOUD = "sensor_msgs/msg/PointCloud2"
TF = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")  # tf2, and ROS 1's older tf
ODOM = "nav_msgs/msg/Odometry"
MARKERS = "visualization_msgs/msg/MarkerArray"
DETECTIONS = "vision_msgs/msg/Detection3DArray"

_IMAGE_WORDS = {"compressed", "image_raw", "image_rect", "image_rect_color", "image_color", "image_mono", "image",
                "raw", "rgb"}
_CLOUD_WORDS = {"points", "points_raw", "pointcloud", "point_cloud", "cloud", "velodyne_points"}


@dataclass
class Selection:
    """The chosen topics (every one exists in the recording with the right message type)."""

    cameras: dict[str, CameraTopics] = field(default_factory=dict)
    lidar: dict[str, str] = field(default_factory=dict)
    tf: list[str] = field(default_factory=list)
    odometry: str | None = None  # the ego source named in the topics YAML (overrides tf)
    odometry_candidates: list[str] = field(default_factory=list)  # Odometry topics, the fallback ego source
    boxes: list[str] = field(default_factory=list)  # MarkerArray / Detection3DArray topics: actor tracks

    def describe(self) -> str:
        cams = ", ".join(f"{n}={c.image} (+ {c.info})" for n, c in self.cameras.items())
        lidar = ", ".join(f"{n}={t}" for n, t in self.lidar.items()) or "none"
        odom = self.odometry or ", ".join(self.odometry_candidates) or "none"
        return (f"cameras {cams}; lidar {lidar}; tf {', '.join(self.tf) or 'none'}; odometry {odom}; "
                f"boxes {', '.join(self.boxes) or 'none'}")


def _names(topics: list[str], words: set[str], default: str) -> dict[str, str]:
    """topic -> name: the last part of its namespace (``/sensors/front/image_raw`` -> ``front``), or the whole
    namespace joined by '_' where two topics in different namespaces share that last part."""
    full = {}
    for topic in topics:
        parts = [p for p in topic.strip("/").split("/") if p]
        while parts and parts[-1].lower() in words:
            parts.pop()
        full[topic] = parts or [default]
    last = [p[-1] for p in full.values()]
    joined = ["_".join(p) for p in full.values()]
    return {t: (p[-1] if last.count(p[-1]) == joined.count("_".join(p)) else "_".join(p)) for t, p in full.items()}


def _namespace(topic: str) -> str:
    parts = [p for p in topic.strip("/").split("/") if p]
    while parts and parts[-1].lower() in _IMAGE_WORDS:
        parts.pop()
    return "/" + "/".join(parts) if parts else ""


def _check(types: dict[str, str | None], topic: str, wanted: tuple[str, ...], bag: Path, what: str) -> None:
    if topic not in types:
        raise ReaderError(bag, what, f"topic {topic!r} is not in the recording")
    if types[topic] not in wanted:
        raise ReaderError(bag, what, f"topic {topic!r} has type {types[topic]}, expected {' or '.join(wanted)}")


def _auto_cameras(types: dict[str, str | None], bag: Path) -> dict[str, CameraTopics]:
    found: dict[str, list[str]] = {}
    names = _names([t for t, y in sorted(types.items()) if y in (IMAGE, COMPRESSED)], _IMAGE_WORDS, "camera")
    for topic, name in names.items():
        found.setdefault(name, []).append(topic)
    if not found:
        listing = ", ".join(f"{t} ({y})" for t, y in sorted(types.items())) or "none"
        raise ReaderError(bag, "", f"no image topic (sensor_msgs/Image or CompressedImage); topics: {listing}")
    for name, topics in found.items():
        if len(topics) > 1:
            raise ReaderError(bag, "", f"ambiguous camera {name!r}: topics {', '.join(topics)}; choose one in a "
                                       "topics YAML (cameras: {" + f"{name}: TOPIC" + "})")
    return {name: CameraTopics(topics[0]) for name, topics in found.items()}


def _camera_info(types: dict[str, str | None], name: str, cam: CameraTopics, n_cameras: int, bag: Path) -> str:
    if cam.info is not None:
        _check(types, cam.info, (INFO,), bag, f"cameras.{name}.info")
        return cam.info
    sibling = f"{_namespace(cam.image)}/camera_info"
    if types.get(sibling) == INFO:
        return sibling
    infos = [t for t, y in types.items() if y == INFO]
    if len(infos) == 1 and n_cameras == 1:
        return infos[0]
    raise ReaderError(bag, cam.image, f"missing CameraInfo for camera {name!r}: no topic {sibling} (CameraInfo "
                                      f"topics: {', '.join(sorted(infos)) or 'none'}); name it in a topics YAML")


def _choose_lidar(types: dict[str, str | None], opts: RosOptions, bag: Path) -> dict[str, str]:
    if opts.lidar is not None:
        for name, topic in opts.lidar.items():
            _check(types, topic, (CLOUD,), bag, f"lidar.{name}")
        return dict(opts.lidar)
    lidar: dict[str, str] = {}
    for topic, name in _names([t for t, y in sorted(types.items()) if y == CLOUD], _CLOUD_WORDS, "lidar").items():
        if name in lidar:
            raise ReaderError(bag, "", f"ambiguous lidar {name!r}: topics {lidar[name]}, {topic}; choose in a "
                                       "topics YAML (lidar: {NAME: TOPIC})")
        lidar[name] = topic
    return lidar


def choose(types: dict[str, str | None], opts: RosOptions) -> Selection:
    """The topics to read, from ``opts`` where given, else by message type."""
    bag = opts.config or opts.bag
    sel = Selection()
    if opts.cameras is not None:
        for name, cam in opts.cameras.items():
            _check(types, cam.image, (IMAGE, COMPRESSED), bag, f"cameras.{name}")
        cams = dict(opts.cameras)
    else:
        cams = _auto_cameras(types, bag)
    for name, cam in cams.items():
        sel.cameras[name] = CameraTopics(cam.image, _camera_info(types, name, cam, len(cams), bag))
    sel.lidar = _choose_lidar(types, opts, bag)
    sel.tf = [t for t, y in sorted(types.items()) if y in TF]
    if opts.odometry is not None:
        _check(types, opts.odometry, (ODOM,), bag, "odometry")
        sel.odometry = opts.odometry
    else:
        sel.odometry_candidates = [t for t, y in sorted(types.items()) if y == ODOM]
    if opts.boxes is not None:
        for topic in opts.boxes:
            _check(types, topic, (MARKERS, DETECTIONS), bag, "boxes")
        sel.boxes = list(opts.boxes)
    else:
        sel.boxes = [t for t, y in sorted(types.items()) if y in (MARKERS, DETECTIONS)]
    return sel
