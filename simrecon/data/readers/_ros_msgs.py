"""Decoding of the ROS messages the rosbag reader uses (objects deserialised by ``rosbags``).

ROS 1 and ROS 2 spell some fields differently (``CameraInfo.K`` / ``k``); :func:`field` reads either.
Every failure is a :class:`ReaderError` naming the topic and the field.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..geometry import make_pose
from ..model import Intrinsics
from ._common import ReaderError, quat_to_rotation

# sensor_msgs/PointField datatypes
_POINT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
# raw image encodings -> (numpy dtype, channels, channel order to RGB(A) or None for grey)
_RAW_ENCODINGS = {
    "rgb8": ("u1", 3, None), "bgr8": ("u1", 3, [2, 1, 0]), "rgba8": ("u1", 4, None),
    "bgra8": ("u1", 4, [2, 1, 0, 3]), "mono8": ("u1", 1, None), "8uc1": ("u1", 1, None),
    "8uc3": ("u1", 3, [2, 1, 0]), "mono16": ("u2", 1, None), "16uc1": ("u2", 1, None),
}
_COMPRESSED = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}


def field(msg, *names: str):
    """The first of ``names`` that ``msg`` has (ROS 1 / ROS 2 spellings); AttributeError when none."""
    for name in names:
        if hasattr(msg, name):
            return getattr(msg, name)
    raise AttributeError(names[0])


def stamp_ns(msg) -> int:
    """``header.stamp`` in integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(field(stamp, "nanosec", "nsec"))


def frame_id(msg) -> str:
    return str(msg.header.frame_id).lstrip("/")


def transform_pose(tf, topic: str) -> np.ndarray:
    """geometry_msgs/Transform -> child-to-parent 4x4."""
    t, q = tf.translation, tf.rotation
    rot = quat_to_rotation([q.w, q.x, q.y, q.z], topic, "transform.rotation")
    trans = np.array([t.x, t.y, t.z], dtype=np.float64)
    if not np.all(np.isfinite(trans)):
        raise ReaderError(topic, "transform.translation", f"expected finite numbers, got {trans.tolist()}")
    return make_pose(rot, trans)


def pose_pose(pose, topic: str) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4."""
    p, q = pose.position, pose.orientation
    rot = quat_to_rotation([q.w, q.x, q.y, q.z], topic, "pose.orientation")
    return make_pose(rot, np.array([p.x, p.y, p.z], dtype=np.float64))


def camera_intrinsics(msg, topic: str) -> Intrinsics:
    """sensor_msgs/CameraInfo -> Intrinsics (plumb_bob / rational-free OpenCV, or equidistant fisheye)."""
    k = np.asarray(field(msg, "k", "K"), dtype=np.float64).reshape(-1)
    d = [float(x) for x in np.asarray(field(msg, "d", "D"), dtype=np.float64).reshape(-1)]
    w, h = int(msg.width), int(msg.height)
    if k.shape != (9,) or not np.all(np.isfinite(k)) or k[0] <= 0 or k[4] <= 0:
        raise ReaderError(topic, "K", f"expected a 3x3 camera matrix with positive focal lengths, got {k.tolist()}")
    if w <= 0 or h <= 0:
        raise ReaderError(topic, "width", f"expected a positive image size, got {w} x {h}")
    model = str(msg.distortion_model or "").strip().lower()
    fx, fy, cx, cy = k[0], k[4], k[2] + 0.5, k[5] + 0.5  # OpenCV pixel centres (0, 0) -> ours (0.5, 0.5)
    if not any(d) and model in ("", "plumb_bob", "rational_polynomial", "equidistant", "fisheye"):
        return Intrinsics(fx, fy, cx, cy, w, h, "PINHOLE")
    if model == "plumb_bob" and len(d) == 5:
        k1, k2, p1, p2, k3 = d
        return Intrinsics(fx, fy, cx, cy, w, h, "OPENCV", k1=k1, k2=k2, k3=k3, p1=p1, p2=p2)
    if model in ("equidistant", "fisheye") and len(d) == 4:
        k1, k2, k3, k4 = d
        return Intrinsics(fx, fy, cx, cy, w, h, "OPENCV_FISHEYE", k1=k1, k2=k2, k3=k3, k4=k4)
    raise ReaderError(topic, "distortion_model", f"unsupported distortion model {model!r} with {len(d)} "
                                                 "coefficients (supported: plumb_bob with 5, equidistant with 4)")


def compressed_image(msg, topic: str) -> tuple[bytes, str]:
    """sensor_msgs/CompressedImage -> (encoded bytes, file suffix)."""
    fmt = str(msg.format).lower()
    for word, suffix in _COMPRESSED.items():
        if word in fmt:
            return bytes(np.asarray(msg.data, dtype=np.uint8).tobytes()), suffix
    raise ReaderError(topic, "format", f"unsupported compressed image format {msg.format!r} (supported: jpeg, png)")


def raw_layout(msg, topic: str) -> tuple[np.dtype, int, list[int] | None]:
    """(pixel dtype, channels, channel order) of a sensor_msgs/Image; checks encoding and buffer size."""
    enc = str(msg.encoding).lower()
    if enc not in _RAW_ENCODINGS:
        raise ReaderError(topic, "encoding", f"unsupported image encoding {msg.encoding!r} (supported: "
                                             f"{', '.join(sorted(_RAW_ENCODINGS))})")
    dtype, channels, order = _RAW_ENCODINGS[enc]
    w, h, step = int(msg.width), int(msg.height), int(msg.step)
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    row = w * channels * dt.itemsize
    size = np.asarray(msg.data).size
    if w <= 0 or h <= 0 or step < row or size < step * (h - 1) + row:
        raise ReaderError(topic, "data", f"expected {h} rows of {step} bytes for a {w} x {h} {enc} image, "
                                         f"got {size} bytes")
    return dt, channels, order


def raw_image(msg, topic: str) -> bytes:
    """sensor_msgs/Image -> PNG bytes (8-bit colour / grey, 16-bit grey)."""
    from PIL import Image

    dt, channels, order = raw_layout(msg, topic)
    w, h, step = int(msg.width), int(msg.height), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    rows = np.lib.stride_tricks.as_strided(data, (h, w * channels * dt.itemsize), (step, 1)).copy()
    arr = rows.view(dt).reshape(h, w, channels)
    if order is not None:
        arr = arr[..., order]
    arr = arr[..., 0] if channels == 1 else arr
    arr = arr.astype(np.uint16 if dt.itemsize == 2 else np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def image_bytes(msg, compressed: bool, topic: str) -> tuple[bytes, str]:
    """(encoded bytes, file suffix) of an Image or CompressedImage."""
    return compressed_image(msg, topic) if compressed else (raw_image(msg, topic), ".png")


_CLOUD_FIELDS = ("x", "y", "z", "intensity", "i", "reflectivity", "ring", "time", "t", "timestamp")


def _cloud_dtype(msg, topic: str) -> np.dtype:
    names, formats, offsets = [], [], []
    for f in msg.fields:
        if f.name in _CLOUD_FIELDS and f.name not in names:
            if f.datatype not in _POINT_TYPES:
                raise ReaderError(topic, f"fields.{f.name}", f"unknown PointField datatype {f.datatype}")
            names.append(f.name)
            formats.append(("<" if not msg.is_bigendian else ">") + _POINT_TYPES[f.datatype])
            offsets.append(int(f.offset))
    for axis in "xyz":
        if axis not in names:
            raise ReaderError(topic, "fields", f"expected x, y and z fields, got {[f.name for f in msg.fields]}")
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": int(msg.point_step)})


@dataclass
class Cloud:
    """A PointCloud2's kept points and, where the cloud has them, each point's beam ring and firing time."""

    points: np.ndarray  # float32 [N, 4]: x, y, z, intensity in [0, 1], the cloud's frame
    ring: np.ndarray | None  # int [N]: the ``ring`` field (the beam)
    time: np.ndarray | None  # float64 [N]: seconds after the header stamp (``time`` s, ``t`` ns, ``timestamp``)


def point_cloud(msg, topic: str) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> float32 [N, 4] (x, y, z, intensity in [0, 1]) in the cloud's frame
    (``cloud``'s points)."""
    return cloud(msg, topic).points


def _point_times(pts, names: tuple, header_s: float) -> np.ndarray | None:
    """Per-point seconds after the header stamp: Velodyne ``time`` (s, relative), Ouster ``t`` (ns, relative),
    Hesai ``timestamp`` (s, absolute)."""
    if "time" in names:
        return pts["time"].astype(np.float64)
    if "t" in names:
        return pts["t"].astype(np.float64) * 1e-9
    if "timestamp" in names:
        return pts["timestamp"].astype(np.float64) - header_s
    return None


def cloud(msg, topic: str) -> Cloud:
    """sensor_msgs/PointCloud2 -> its points (and rings and times where present), in the cloud's frame.

    Points with a non-finite coordinate (holes of organised clouds) are dropped. Intensity: 8-bit and
    16-bit integers are scaled to [0, 1]; floats already in [0, 1] are kept, larger ones (0..255
    reflectivity) divided by 255; absent intensity is 0."""
    dt = _cloud_dtype(msg, topic)
    n = int(msg.width) * int(msg.height)
    data = np.asarray(msg.data, dtype=np.uint8)
    if int(msg.row_step) * int(msg.height) > data.size or int(msg.point_step) * int(msg.width) > int(msg.row_step):
        raise ReaderError(topic, "data", f"expected {msg.height} rows of {msg.row_step} bytes, got {data.size} bytes")
    rows = data[: int(msg.row_step) * int(msg.height)].reshape(int(msg.height), int(msg.row_step))
    rows = rows[:, : int(msg.point_step) * int(msg.width)]
    pts = np.ascontiguousarray(rows).view(dt).reshape(n)
    out = np.zeros((n, 4), np.float32)
    for i, axis in enumerate("xyz"):
        out[:, i] = pts[axis]
    name = next((k for k in ("intensity", "i", "reflectivity") if k in dt.names), None)
    if name is not None:
        raw = pts[name]
        if raw.dtype.kind in "iu":
            scale = float(np.iinfo(raw.dtype).max)
            out[:, 3] = raw.astype(np.float64) / scale
        else:
            val = raw.astype(np.float64)
            top = np.nanmax(val) if val.size else 0.0
            out[:, 3] = np.clip(val / 255.0 if top > 1.0 else val, 0.0, 1.0)
    keep = np.all(np.isfinite(out[:, :3]), axis=1)
    out[:, 3] = np.nan_to_num(out[:, 3], nan=0.0)
    ring = pts["ring"].astype(np.int64)[keep] if "ring" in dt.names else None
    times = _point_times(pts, dt.names, stamp_ns(msg) * 1e-9)
    if times is not None:
        times = times[keep] if np.all(np.isfinite(times[keep])) else None
    return Cloud(out[keep], ring, times)


_MARKER_CUBE, _MARKER_ADD = 1, 0


def _plain(text: str) -> str:
    """A recording's id or namespace as a plain name (it becomes an actor id): '/', '\\', control characters
    and spaces become '_'."""
    out = "".join("_" if (c in "/\\ " or ord(c) < 32 or ord(c) == 127) else c for c in str(text))
    return out.strip("_")[:200]


def marker_boxes(msg, topic: str) -> list[tuple[str, str, object, np.ndarray, np.ndarray]]:
    """visualization_msgs/MarkerArray -> (actor id, source class, marker, box-to-frame pose, size) per added
    CUBE marker with a positive size; the id is ``<ns>_<id>`` (the namespace names the class, e.g. ``car``)."""
    out = []
    for mk in msg.markers:
        if int(mk.type) != _MARKER_CUBE or int(mk.action) != _MARKER_ADD:
            continue
        ns = _plain(mk.ns)
        size = np.array([mk.scale.x, mk.scale.y, mk.scale.z], dtype=np.float64)
        if not np.all(np.isfinite(size)) or np.any(size <= 0):
            continue  # a degenerate cube is no box
        out.append((f"{ns}_{int(mk.id)}" if ns else str(int(mk.id)), ns or "object", mk, pose_pose(mk.pose, topic),
                    size))
    return out


def detection_boxes(msg, topic: str) -> list[tuple[str, str, object, np.ndarray, np.ndarray]]:
    """vision_msgs/Detection3DArray -> (tracking id, class, detection, box-to-frame pose, size); detections
    without a tracking ``id`` cannot form a track and are left out."""
    out = []
    for det in msg.detections:
        track = _plain(getattr(det, "id", "") or "")
        if not track:
            continue
        cls = "object"
        if len(det.results):
            res = det.results[0]
            hyp = getattr(res, "hypothesis", res)
            cls = str(getattr(hyp, "class_id", getattr(hyp, "id", "object")))
        box = det.bbox
        size = np.array([box.size.x, box.size.y, box.size.z], dtype=np.float64)
        if not np.all(np.isfinite(size)) or np.any(size <= 0):
            continue
        out.append((track, cls, det, pose_pose(box.center, topic), size))
    return out
