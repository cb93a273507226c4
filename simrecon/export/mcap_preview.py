"""Draw what an MCAP file of ours holds, from the file alone: a camera's image with the ``/actors`` boxes
projected through that file's ``/tf`` and ``/camera/<name>/calibration`` (what Foxglove's image panel
shows with the boxes overlaid). Used for the screenshot in docs/export.md and as a check that the
transforms, calibration and boxes in the file agree with each other.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..data.geometry import invert_pose, quat_to_matrix
from .mcap_writer import CLASS_COLOURS

_EDGES = [(0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7)]


@dataclass
class Preview:
    image: np.ndarray  # [H, W, 3] uint8 with the boxes drawn
    time_ns: int  # the log time shown
    centres: dict[str, tuple[float, float]]  # actor id -> its box centre in pixels (OpenCV: pixel centres at ints)


def _matrix(translation, rotation) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(np.array([rotation.w, rotation.x, rotation.y, rotation.z]))
    out[:3, 3] = [translation.x, translation.y, translation.z]
    return out


def _at(path: Path, camera: str, index: int) -> dict:
    """The decoded messages that the preview needs at the ``index``-th image of ``camera``."""
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    image_topic = f"/camera/{camera}/image"
    found: dict = {"links": {}}
    with open(path, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        images = [m.log_time for _, ch, m in reader.iter_messages(topics=[image_topic])]
        if not images:
            raise ValueError(f"{path}: no {image_topic} topic")
        t = images[min(max(index, 0), len(images) - 1)]
        for _, ch, msg, proto in reader.iter_decoded_messages(starting_at=t, ending_at=t):
            if ch.topic == "/tf":
                for x in proto.transforms:
                    found["links"][(x.parent_frame_id, x.child_frame_id)] = _matrix(x.translation, x.rotation)
            elif ch.topic in (image_topic, f"/camera/{camera}/calibration", "/actors"):
                found[ch.topic.rsplit("/", 1)[-1]] = proto
    found["time_ns"] = t
    return found


def preview(path: str | Path, camera: str = "front", index: int = 0) -> Preview:
    """The ``index``-th image of ``camera`` in the MCAP file ``path`` with every actor box drawn on it."""
    got = _at(Path(path), camera, index)
    rgb = np.array(Image.open(io.BytesIO(got["image"].data)).convert("RGB"))
    k = np.array(got["calibration"].K).reshape(3, 3)
    w2c = invert_pose(got["links"][("world", "ego")] @ got["links"][("ego", camera)])  # world -> optical
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    centres = {}
    for entity in got["actors"].entities if "actors" in got else []:
        for cube in entity.cubes:
            pose = _matrix(cube.pose.position, cube.pose.orientation)
            half = np.array([cube.size.x, cube.size.y, cube.size.z]) / 2
            signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
            pts = np.vstack([signs * half, [0.0, 0.0, 0.0]])
            cam = (pts @ pose[:3, :3].T + pose[:3, 3]) @ w2c[:3, :3].T + w2c[:3, 3]
            if np.any(cam[:, 2] <= 0.1):
                continue  # partly behind the camera: not drawn
            uv = (cam @ k.T)[:, :2] / cam[:, 2:3]
            colour = tuple(int(255 * c) for c in CLASS_COLOURS.get(dict((kv.key, kv.value) for kv in
                                                                         entity.metadata).get("class", "other"),
                                                                    CLASS_COLOURS["other"]))
            for a, b in _EDGES:
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=colour, width=1)
            centres[entity.id] = (float(uv[8, 0]), float(uv[8, 1]))
    return Preview(np.array(canvas), got["time_ns"], centres)
