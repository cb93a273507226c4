"""An MCAP file of Foxglove messages (protobuf, the ``foxglove-sdk`` schemas), built in memory.

Frames: ``world`` (z up, the log's world), ``ego`` (vehicle: x forward, y left, z up) and one frame per
camera in ROS optical axes (x right, y down, z forward: what Foxglove's image panels expect). Log times
are the scenario's times in nanoseconds (``t`` seconds -> ``round(t * 1e9)``), so a file opens in
Foxglove with no set-up: the 3D panel follows ``ego`` on ``/tf``, image panels show ``/camera/<name>/image``
with ``/camera/<name>/calibration`` and ``/actors`` draws the boxes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..data.geometry import matrix_to_quat

CLASS_COLOURS = {  # r, g, b in [0, 1]; alpha is set per use
    "car": (0.12, 0.47, 0.71), "truck": (1.0, 0.5, 0.05), "bus": (0.58, 0.4, 0.74),
    "pedestrian": (0.84, 0.15, 0.16), "cyclist": (0.17, 0.63, 0.17), "other": (0.5, 0.5, 0.5),
    "ego": (1.0, 0.85, 0.1),
}


def ns(t: float) -> int:
    """Seconds -> MCAP log time (nanoseconds; negative times clamp to 0)."""
    return max(0, int(round(float(t) * 1e9)))


@dataclass
class Box:
    """One actor box at one time: box-to-world pose (x forward, y left, z up at the centre) and size (m)."""

    id: str
    cls: str
    pose: np.ndarray  # [4, 4]
    size: tuple[float, float, float]  # length, width, height in metres


class FoxgloveMcap:
    """Channels created on first use; ``close()`` returns the file's bytes."""

    def __init__(self, metadata: dict[str, str] | None = None) -> None:
        import foxglove

        self._fg = foxglove
        self._ctx = foxglove.Context()
        self._buf = io.BytesIO()
        self._writer = foxglove.open_mcap(self._buf, context=self._ctx)
        self._channels: dict[str, object] = {}
        if metadata:
            self._writer.write_metadata("simrecon", {k: str(v) for k, v in metadata.items()})

    def _channel(self, topic: str, kind: str):
        if topic not in self._channels:
            from foxglove import channels

            self._channels[topic] = getattr(channels, f"{kind}Channel")(topic, context=self._ctx)
        return self._channels[topic]

    def _stamp(self, t: float):
        n = ns(t)
        return self._fg.messages.Timestamp(n // 1_000_000_000, n % 1_000_000_000)

    def _parts(self, pose: np.ndarray):
        """(Vector3, Quaternion) of a 4x4."""
        m = self._fg.messages
        q = matrix_to_quat(np.asarray(pose)[:3, :3])
        p = np.asarray(pose)[:3, 3]
        return (m.Vector3(x=float(p[0]), y=float(p[1]), z=float(p[2])),
                m.Quaternion(x=float(q[1]), y=float(q[2]), z=float(q[3]), w=float(q[0])))

    def _pose(self, pose: np.ndarray):
        position, orientation = self._parts(pose)
        return self._fg.messages.Pose(position=position, orientation=orientation)

    def transforms(self, t: float, links: list[tuple[str, str, np.ndarray]]) -> None:
        """``(parent, child, child-to-parent 4x4)`` links on ``/tf``."""
        m = self._fg.messages
        items = []
        for parent, child, pose in links:
            translation, rotation = self._parts(pose)
            items.append(m.FrameTransform(timestamp=self._stamp(t), parent_frame_id=parent, child_frame_id=child,
                                          translation=translation, rotation=rotation))
        self._channel("/tf", "FrameTransforms").log(m.FrameTransforms(transforms=items), log_time=ns(t))

    def image(self, t: float, camera: str, data: bytes, fmt: str) -> None:
        m = self._fg.messages
        msg = m.CompressedImage(timestamp=self._stamp(t), frame_id=camera, data=data, format=fmt)
        self._channel(f"/camera/{camera}/image", "CompressedImage").log(msg, log_time=ns(t))

    def depth(self, t: float, camera: str, depth_mm: np.ndarray, kind: str = "depth") -> None:
        """A uint16 image as 16UC1 on ``/camera/<camera>/<kind>``: depth along the view axis in millimetres (0:
        none), or (``kind`` instance) the scenario's instance ids (0: background)."""
        m = self._fg.messages
        arr = np.ascontiguousarray(depth_mm, dtype="<u2")
        msg = m.RawImage(timestamp=self._stamp(t), frame_id=camera, width=arr.shape[1], height=arr.shape[0],
                         encoding="16UC1", step=arr.shape[1] * 2, data=arr.tobytes())
        self._channel(f"/camera/{camera}/{kind}", "RawImage").log(msg, log_time=ns(t))

    def calibration(self, t: float, camera: str, intr: dict) -> None:
        """Pinhole intrinsics (ours: pixel centres at +0.5) as Foxglove's OpenCV-convention K and P."""
        m = self._fg.messages
        fx, fy, cx, cy = intr["fl_x"], intr["fl_y"], intr["cx"] - 0.5, intr["cy"] - 0.5
        msg = m.CameraCalibration(timestamp=self._stamp(t), frame_id=camera, width=int(intr["w"]),
                                  height=int(intr["h"]), distortion_model="plumb_bob", D=[0.0] * 5,
                                  K=[fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0], R=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                                  P=[fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0])
        self._channel(f"/camera/{camera}/calibration", "CameraCalibration").log(msg, log_time=ns(t))

    def boxes(self, t: float, boxes: list[Box], topic: str = "/actors") -> None:
        """Every box at ``t`` in ``world``; the update first deletes the previous time's boxes."""
        m = self._fg.messages
        entities = []
        for b in boxes:
            r, g, bl = CLASS_COLOURS.get(b.cls, CLASS_COLOURS["other"])
            cube = m.CubePrimitive(pose=self._pose(b.pose), size=m.Vector3(x=b.size[0], y=b.size[1], z=b.size[2]),
                                   color=m.Color(r=r, g=g, b=bl, a=0.45))
            entities.append(m.SceneEntity(timestamp=self._stamp(t), frame_id="world", id=b.id, frame_locked=False,
                                          metadata=[m.KeyValuePair(key="class", value=b.cls)], cubes=[cube]))
        deletion = m.SceneEntityDeletion(timestamp=self._stamp(t), type=m.SceneEntityDeletionType.All, id="")
        self._channel(topic, "SceneUpdate").log(m.SceneUpdate(deletions=[deletion], entities=entities),
                                                log_time=ns(t))

    def event(self, t: float, kind: str, message: str, severe: bool) -> None:
        """One event on ``/events`` (foxglove.Log; severe ones as errors)."""
        m = self._fg.messages
        level = m.LogLevel.Error if severe else m.LogLevel.Info
        msg = m.Log(timestamp=self._stamp(t), level=level, message=message, name=kind, file="", line=0)
        self._channel("/events", "Log").log(msg, log_time=ns(t))

    def path(self, t: float, points: np.ndarray, topic: str = "/ego/path") -> None:
        """A line through world points [N, 3] (the ego's path)."""
        m = self._fg.messages
        line = m.LinePrimitive(type=m.LinePrimitiveLineType.LineStrip, pose=self._pose(np.eye(4)), thickness=0.15,
                               scale_invariant=False, points=[m.Point3(x=float(x), y=float(y), z=float(z))
                                                              for x, y, z in np.asarray(points, dtype=float)],
                               color=m.Color(r=1.0, g=0.85, b=0.1, a=1.0))
        entity = m.SceneEntity(timestamp=self._stamp(t), frame_id="world", id="ego_path", lines=[line])
        self._channel(topic, "SceneUpdate").log(m.SceneUpdate(entities=[entity]), log_time=ns(t))

    def point_cloud(self, t: float, frame: str, points: np.ndarray, intensity: np.ndarray | None,
                    instance: np.ndarray, topic: str) -> None:
        """Points [N, 3] in ``frame`` as a foxglove.PointCloud with float32 x, y, z, intensity (0 where unknown)
        and instance (the scenario's instance ids, 0 background)."""
        m = self._fg.messages
        f32 = m.PackedElementFieldNumericType.Float32
        n = len(points)
        packed = np.zeros((n, 5), "<f4")
        packed[:, :3] = points[:, :3]
        packed[:, 3] = intensity if intensity is not None else 0.0
        packed[:, 4] = instance
        fields = [m.PackedElementField(name=name, offset=4 * i, type=f32)
                  for i, name in enumerate(("x", "y", "z", "intensity", "instance"))]
        msg = m.PointCloud(timestamp=self._stamp(t), frame_id=frame, pose=self._pose(np.eye(4)), point_stride=20,
                           fields=fields, data=packed.tobytes())
        self._channel(topic, "PointCloud").log(msg, log_time=ns(t))

    def close(self) -> bytes:
        self._writer.close()
        return self._buf.getvalue()

