"""Streaming passes over a ROS recording, in bounded memory.

The first pass (:func:`collect`) keeps what is small: ``/tf`` and ``/tf_static`` in a :class:`TfTree`,
odometry poses, CameraInfo, actor boxes, and for each image and cloud only its stamp, frame and size.
Images and clouds are kept only inside the time window; poses and CameraInfo are read from the whole
recording (a window still needs the tf before it). Pixels and points are read again, one message at a
time, when the output is written (:class:`MessageStream`), so memory does not grow with the recording.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model import Intrinsics
from . import _ros_msgs as msgs
from ._common import ReaderError, image_size_from_bytes
from ._ros_source import RosOptions
from ._ros_tf import TfTree
from ._ros_topics import COMPRESSED, DETECTIONS, Selection

MessageKey = tuple[str, int]  # (topic, index of the message among that topic's messages in recording order)


@dataclass
class ImageMsg:
    key: MessageKey
    seq: int  # position in the recording (among the selected topics' messages)
    stamp_ns: int  # header stamp
    suffix: str  # .jpg or .png
    frame: str  # the optical frame (header.frame_id)
    size: tuple[int, int]  # (width, height) in pixels


@dataclass
class CloudMsg:
    key: MessageKey
    seq: int
    stamp_ns: int
    frame: str


@dataclass
class OdomMsg:
    t: float  # seconds after the recording's first message
    parent: str
    child: str
    pose: np.ndarray  # child-to-parent 4x4


@dataclass
class BoxMsg:
    """One actor box: box-to-``frame`` pose (x forward, y left, z up at the centre) and size in metres."""

    actor: str
    source_class: str
    stamp_ns: int
    frame: str
    pose: np.ndarray
    size: np.ndarray


@dataclass
class Collected:
    """Everything the first pass kept; ``t_ref_ns`` is the recording's first message time (tf times count
    from it)."""

    t_ref_ns: int
    tree: TfTree
    images: dict[str, list[ImageMsg]] = field(default_factory=dict)
    infos: dict[str, Intrinsics] = field(default_factory=dict)
    clouds: dict[str, list[CloudMsg]] = field(default_factory=dict)
    odometry: dict[str, list[OdomMsg]] = field(default_factory=dict)
    boxes: list[BoxMsg] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # messages read per topic


def open_reader(bag: Path):
    """An unopened ``rosbags`` AnyReader for ``bag`` (ROS 2 bags without message definitions use Humble's)."""
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise ReaderError(bag, "", "reading ROS bags needs the 'ros' extra: pip install -c constraints.txt "
                                   "-e '.[ros]'") from None
    try:
        return AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
    except Exception as exc:  # any parser failure on an untrusted recording is one line
        raise ReaderError(bag, "", f"cannot open the recording ({type(exc).__name__}: {exc})") from None


def open_recording(bag: Path):
    """An open AnyReader (close it); a file that cannot be opened (truncated, unindexed, foreign) is one line."""
    reader = open_reader(bag)
    try:
        reader.open()
    except Exception as exc:
        raise ReaderError(bag, "", f"cannot open the recording ({type(exc).__name__}: {exc})") from None
    return reader


def _roles(sel: Selection) -> dict[str, tuple[str, str]]:
    """topic -> (role, name)."""
    roles: dict[str, tuple[str, str]] = {}
    for name, cam in sel.cameras.items():
        roles[cam.image] = ("image", name)
        roles[cam.info] = ("info", name)  # type: ignore[index]  # choose() filled every info topic
    for name, topic in sel.lidar.items():
        roles[topic] = ("cloud", name)
    for topic in sel.tf:
        roles[topic] = ("tf", topic)
    for topic in ([sel.odometry] if sel.odometry else sel.odometry_candidates):
        roles[topic] = ("odom", topic)
    for topic in sel.boxes:
        roles[topic] = ("boxes", topic)
    return roles


def _image(msg, msgtype: str, topic: str, key: MessageKey, seq: int) -> ImageMsg:
    if msgtype == COMPRESSED:
        data, suffix = msgs.compressed_image(msg, topic)
        size = image_size_from_bytes(data, topic)
    else:
        msgs.raw_layout(msg, topic)  # refuse an unsupported encoding now, not when writing
        suffix, size = ".png", (int(msg.width), int(msg.height))
    return ImageMsg(key, seq, msgs.stamp_ns(msg), suffix, msgs.frame_id(msg), size)


def _boxes(out: Collected, msg, msgtype: str, topic: str, log_ns: int) -> None:
    found = msgs.detection_boxes(msg, topic) if msgtype == DETECTIONS else msgs.marker_boxes(msg, topic)
    for actor, cls, item, pose, size in found:
        has_header = hasattr(item, "header") and str(item.header.frame_id)
        carrier = item if has_header else msg
        stamp = msgs.stamp_ns(carrier) or log_ns  # markers stamped 0 mean "now"
        out.boxes.append(BoxMsg(actor, cls, stamp, msgs.frame_id(carrier), pose, size))


def _keep(out: Collected, role: str, name: str, conn, msg, key: MessageKey, log_ns: int, seq: int) -> None:
    topic = conn.topic
    if role == "tf":
        static = "static" in topic
        for tr in msg.transforms:
            t = None if static else (msgs.stamp_ns(tr) - out.t_ref_ns) * 1e-9
            out.tree.add(tr.header.frame_id, tr.child_frame_id, msgs.transform_pose(tr.transform, topic), t)
    elif role == "info":
        out.infos.setdefault(name, msgs.camera_intrinsics(msg, topic))
    elif role == "odom":
        out.odometry.setdefault(name, []).append(OdomMsg((msgs.stamp_ns(msg) - out.t_ref_ns) * 1e-9,
                                                         msgs.frame_id(msg), str(msg.child_frame_id).lstrip("/"),
                                                         msgs.pose_pose(msg.pose.pose, topic)))
    elif role == "boxes":
        _boxes(out, msg, conn.msgtype, topic, log_ns)
    elif role == "image":
        out.images.setdefault(name, []).append(_image(msg, conn.msgtype, topic, key, seq))
    elif role == "cloud":
        out.clouds.setdefault(name, []).append(CloudMsg(key, seq, msgs.stamp_ns(msg), msgs.frame_id(msg)))


def _failure(bag, topic: str, exc: Exception) -> ReaderError:
    where = f" (topic {topic})" if topic else ""
    return ReaderError(bag, "", f"cannot read the recording{where}: {type(exc).__name__}: {exc}")


def collect(reader, sel: Selection, opts: RosOptions) -> Collected:
    """First pass over the selected topics of the open ``reader``."""
    roles = _roles(sel)
    out = Collected(int(reader.start_time), TfTree(opts.tf_tolerance))
    start = out.t_ref_ns + int(round(opts.start * 1e9))
    stop = start + int(round(opts.duration * 1e9)) if opts.duration is not None else None
    conns = [c for c in reader.connections if c.topic in roles]
    topic, done = "", 0
    try:
        for conn, log_ns, raw in reader.messages(connections=conns):
            topic = conn.topic
            role, name = roles[topic]
            index = out.counts.get(topic, 0)
            out.counts[topic] = index + 1
            done += 1
            in_window = log_ns >= start and (stop is None or log_ns < stop)
            if (role in ("image", "cloud", "boxes") and not in_window) or (role == "info" and name in out.infos):
                continue
            _keep(out, role, name, conn, reader.deserialize(raw, conn.msgtype), (topic, index), log_ns, done)
    except ReaderError:
        raise
    except Exception as exc:  # truncated chunks, unknown types, bad CDR: one line naming the topic
        raise _failure(reader.paths[0], topic, exc) from None
    return out


class MessageStream:
    """Hands out chosen messages (by :data:`MessageKey`) from a fresh pass over the recording.

    Asked in recording order (as the reader lays out its files), it holds nothing but the message asked
    for; a message asked for out of order is kept until asked, and one already passed starts a new pass."""

    def __init__(self, bag: Path, wanted: set[MessageKey]) -> None:
        self.bag, self.wanted = bag, set(wanted)
        self.topics = {topic for topic, _ in wanted}
        self.held: dict[MessageKey, tuple[str, object]] = {}
        self._pass = None

    def _messages(self):
        reader = open_recording(self.bag)
        counts: dict[str, int] = {}
        topic = ""
        try:
            conns = [c for c in reader.connections if c.topic in self.topics]
            for conn, _, raw in reader.messages(connections=conns):
                topic = conn.topic
                key = (topic, counts.get(topic, 0))
                counts[topic] = key[1] + 1
                if key in self.wanted:
                    yield key, conn.msgtype, reader.deserialize(raw, conn.msgtype)
        except ReaderError:
            raise
        except Exception as exc:
            raise _failure(self.bag, topic, exc) from None
        finally:
            reader.close()

    def get(self, key: MessageKey) -> tuple[str, object]:
        """(message type, deserialised message)."""
        if key in self.held:
            return self.held.pop(key)
        for attempt in range(2):
            if self._pass is None:
                self._pass = self._messages()
            for found, msgtype, msg in self._pass:
                if found == key:
                    return msgtype, msg
                self.held[found] = (msgtype, msg)
            self._pass = None  # passed already: read the recording again
            self.held.clear()
        raise ReaderError(self.bag, key[0], f"message {key[1]} is no longer in the recording")

    def image(self, key: MessageKey) -> bytes:
        msgtype, msg = self.get(key)
        return msgs.image_bytes(msg, msgtype == COMPRESSED, key[0])[0]

    def points(self, key: MessageKey) -> np.ndarray:
        return msgs.point_cloud(self.get(key)[1], key[0])

    def cloud(self, key: MessageKey) -> msgs.Cloud:
        return msgs.cloud(self.get(key)[1], key[0])

    def close(self) -> None:
        """End the pass under way (its recording closes)."""
        if self._pass is not None:
            self._pass.close()
            self._pass = None
        self.held.clear()
