"""Where a ROS recording is and which of its topics to convert: the bag itself, or a topics YAML file.

``SRC`` of ``simrecon convert rosbag`` is a ROS 1 ``.bag`` file, a ROS 2 bag folder (``metadata.yaml``
with sqlite3 or MCAP storage), a ROS 2 ``.db3`` / ``.mcap`` file, or a ``.yaml`` file that names the
bag and chooses topics and frames (docs/datasets.md, "ROS bags and MCAP").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ..safe_load import InputFileError, loads_yaml
from ._common import ReaderError, plain_name, source_file

_BAG_SUFFIXES = (".bag", ".mcap", ".db3")
_KEYS = ("bag", "cameras", "lidar", "odometry", "boxes", "world_frame", "base_frame", "start", "duration",
         "tf_tolerance")


@dataclass
class CameraTopics:
    """One camera: its image topic (Image or CompressedImage) and its CameraInfo topic."""

    image: str
    info: str | None = None  # None: the sibling ``camera_info`` of the image topic


@dataclass
class RosOptions:
    """What to convert from a recording; every field may be left to auto-detection."""

    bag: Path  # the recording (file or ROS 2 bag folder)
    config: Path | None = None  # the topics YAML file it was named in, if any
    cameras: dict[str, CameraTopics] | None = None  # camera name -> topics; None: every image topic
    lidar: dict[str, str] | None = None  # sensor name -> PointCloud2 topic; None: every PointCloud2 topic
    boxes: list[str] | None = None  # MarkerArray / Detection3DArray topics of actor boxes; None: every one
    odometry: str | None = None  # nav_msgs/Odometry topic for the ego pose (None: tf, else a lone odometry topic)
    world_frame: str | None = None  # None: map, else odom, else the root of the base frame's tree
    base_frame: str | None = None  # the vehicle frame; None: base_link, else base_footprint
    start: float = 0.0  # seconds after the recording's first message
    duration: float | None = None  # seconds to convert from ``start``; None: to the end
    tf_tolerance: float = 0.05  # seconds a pose is held beyond the first/last tf stamp of a moving link


def _is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix in _BAG_SUFFIXES)


def resolve(src: Path, topics: Path | None = None) -> RosOptions:
    """The recording and options named by ``src`` (a bag, or a topics YAML file); ``topics``: a topics YAML file
    for the bag ``src`` (its ``bag:`` key, if any, must name the same recording)."""
    if not src.exists():
        raise ReaderError(src, "", "source does not exist")
    if topics is not None:
        if src.is_file() and src.suffix in (".yaml", ".yml") and src.name != "metadata.yaml":
            raise ReaderError(topics, "", "--topics goes with a recording, not with another topics file")
        return _from_yaml(Path(topics), bag=resolve(src).bag)
    if src.is_file() and src.suffix in (".yaml", ".yml") and src.name != "metadata.yaml":
        return _from_yaml(src)
    if src.is_file() and src.name == "metadata.yaml":
        src = src.parent
    if not _is_bag(src):
        raise ReaderError(src, "", "expected a ROS 1 .bag file, a ROS 2 bag folder (with metadata.yaml), a .db3 or "
                                   ".mcap file, or a topics .yaml file naming one")
    return RosOptions(bag=src)


def _text(doc: dict, key: str, file: Path) -> str | None:
    val = doc.get(key)
    if val is not None and (not isinstance(val, str) or not val.strip()):
        raise ReaderError(file, key, f"expected a non-empty string, got {val!r}")
    return val


def _seconds(doc: dict, key: str, file: Path, default: float | None, minimum: float) -> float | None:
    val = doc.get(key, default)
    if val is None:
        return None
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < minimum:
        raise ReaderError(file, key, f"expected a number of seconds >= {minimum}, got {val!r}")
    return float(val)


def _cameras(doc: dict, file: Path) -> dict[str, CameraTopics] | None:
    raw = doc.get("cameras")
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw:
        raise ReaderError(file, "cameras", "expected a mapping camera name -> image topic (or {image, info})")
    out = {}
    for name, val in raw.items():
        plain_name(name, file, f"cameras.{name}", "camera name")
        if isinstance(val, str):
            out[name] = CameraTopics(val)
        elif isinstance(val, dict) and isinstance(val.get("image"), str):
            info = val.get("info")
            if info is not None and not isinstance(info, str):
                raise ReaderError(file, f"cameras.{name}.info", f"expected a topic name, got {info!r}")
            out[name] = CameraTopics(val["image"], info)
        else:
            raise ReaderError(file, f"cameras.{name}", f"expected an image topic or {{image, info}}, got {val!r}")
    return out


def _lidar(doc: dict, file: Path) -> dict[str, str] | None:
    raw = doc.get("lidar")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ReaderError(file, "lidar", "expected a mapping sensor name -> PointCloud2 topic ({} for none)")
    for name, topic in raw.items():
        plain_name(name, file, f"lidar.{name}", "sensor name")
        if not isinstance(topic, str):
            raise ReaderError(file, f"lidar.{name}", f"expected a topic name, got {topic!r}")
    return dict(raw)


def _boxes(doc: dict, file: Path) -> list[str] | None:
    raw = doc.get("boxes")
    if raw is not None and (not isinstance(raw, list) or not all(isinstance(t, str) for t in raw)):
        raise ReaderError(file, "boxes", "expected a list of MarkerArray / Detection3DArray topics ([] for none)")
    return raw


def _from_yaml(file: Path, bag: Path | None = None) -> RosOptions:
    """Options from a topics file; ``bag`` (given on the command line) replaces its ``bag:`` key."""
    if not file.is_file():
        raise ReaderError(file, "", "no such topics file")
    try:
        doc = loads_yaml(file.read_text(encoding="utf-8"), file)
    except InputFileError as exc:
        raise ReaderError(file, "", exc.detail) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReaderError(file, "", f"cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise ReaderError(file, "", "expected a mapping with at least `bag:`")
    unknown = [k for k in doc if k not in _KEYS]
    if unknown:
        raise ReaderError(file, str(unknown[0]), f"unknown key; known keys: {', '.join(_KEYS)}")
    if bag is None:
        if not isinstance(doc.get("bag"), str):
            raise ReaderError(file, "bag", "expected the recording's path, relative to this file's folder")
        bag = source_file(file.parent, doc["bag"], file, "bag")
    elif "bag" in doc and (not isinstance(doc["bag"], str)
                           or source_file(file.parent, doc["bag"], file, "bag").resolve() != bag.resolve()):
        raise ReaderError(file, "bag", f"names another recording than {bag}; leave it out with --topics")
    if not _is_bag(bag):
        raise ReaderError(file, "bag", f"{bag} is not a ROS 1 .bag, a ROS 2 bag folder, a .db3 or an .mcap file")
    return RosOptions(bag=bag, config=file, cameras=_cameras(doc, file), lidar=_lidar(doc, file),
                      boxes=_boxes(doc, file),
                      odometry=_text(doc, "odometry", file), world_frame=_text(doc, "world_frame", file),
                      base_frame=_text(doc, "base_frame", file), start=_seconds(doc, "start", file, 0.0, 0.0) or 0.0,
                      duration=_seconds(doc, "duration", file, None, 0.0),
                      tf_tolerance=_seconds(doc, "tf_tolerance", file, 0.05, 0.0) or 0.0)
