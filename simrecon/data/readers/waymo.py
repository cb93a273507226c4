"""Waymo Open Dataset v1 (perception) segments: one ``.tfrecord`` of ``Frame`` protos, read without TensorFlow.

TFRecord framing (uint64 length, masked CRC32C of the length, payload, masked CRC32C of the payload)
is parsed here; the length CRC is checked, the payload CRC is not (pure-Python CRC over gigabytes is
slow). The protobuf messages are decoded by a small wire-format reader that knows only the fields used,
with the field numbers of ``waymo_open_dataset/dataset.proto`` and ``label.proto``:

Frame: context=1, timestamp_micros=2, pose=3 (Transform), images=4, lasers=5, laser_labels=6.
Context: name=1, camera_calibrations=2, laser_calibrations=3.
CameraCalibration: name=1, intrinsic=2 [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3], extrinsic=3 (camera to
vehicle), width=4, height=5, rolling_shutter_direction=6 (1 top to bottom, 2 left to right, 3 bottom to top, 4 right
to left, 5 global).  LaserCalibration: name=1, beam_inclinations=2, beam_inclination_min=3,
beam_inclination_max=4, extrinsic=5 (lidar to vehicle).  Transform: transform=1 (16 doubles, row-major).
CameraImage: name=1, image=2 (JPEG), pose=3 (vehicle to world at pose_timestamp), velocity=4 (v_x=1, v_y=2, v_z=3
floats, m/s, and w_x=4, w_y=5, w_z=6 doubles, rad/s, both in the global frame), pose_timestamp=5, shutter=6 (exposure
of a line, s), camera_trigger_time=7, camera_readout_done_time=8.
Laser: name=1, ri_return1=2.  RangeImage: range_image_compressed=2 (zlib MatrixFloat [H, W, 4]:
range, intensity, elongation, no-label-zone).  MatrixFloat: data=1 (packed floats), shape=2 (dims=1).
Label: box=1, type=3, id=4; Box: center_x=1, center_y=2, center_z=3, width=4, length=5, height=6, heading=7.

Cameras use Waymo's camera frame (x forward, y left, z up), turned here to OpenGL axes; intrinsics
follow OpenCV (cx + 0.5). Range images become points in each lidar's own frame (the beam geometry of
the Waymo devkit: per-row inclinations, reversed; column azimuths corrected by the extrinsic's yaw).
Rolling-shutter cameras become drive-log v1.2 frames: readout = readout done - trigger - exposure (from the middle of
the first line's exposure to the last's), the frame's time the middle of the readout ((trigger + readout done) / 2)
and its pose the image's pose moved there with the image's velocity.
Each laser's drive-log v1.1 sensor model is exact (not estimated): the calibrated inclinations, one column per
range-image column (clockwise, from the devkit's first azimuth), and the cells with range <= 0 are the rays that
returned nothing; every sweep carries its points' (beam, column) (row r is beam H - 1 - r).
The per-pixel ego-motion correction of the TOP lidar (range_image_pose) is not applied: points use the
frame pose. Intensity is squashed into [0, 1] with tanh. Only the first return is converted.
Boxes (vehicle frame at the frame pose) become actors by label id. The world is Waymo's global frame
(z up) shifted so the first ego position is the origin.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..geometry import make_pose
from ..lidar_model import MAX_BEAMS, MAX_COLUMNS, LidarSensor, SweepLayout
from ..model import Frame, Intrinsics, LidarSweep
from ..shutter import RollingShutter, rotation_exp
from ._common import (
    ActorBuilder,
    Conversion,
    ReaderError,
    build_actors,
    check_cameras,
    finish_log,
    make_track,
    opencv_intrinsics,
    select_indices,
    yaw_pose,
)

CAMERA_NAMES = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT", 6: "REAR_LEFT",
                7: "REAR", 8: "REAR_RIGHT"}
LASER_NAMES = {1: "TOP", 2: "FRONT", 3: "SIDE_LEFT", 4: "SIDE_RIGHT", 5: "REAR"}
# metres: the mid-range TOP lidar's returns are truncated at 75 m, the short-range lidars' at 20 m (Waymo Open
# Dataset paper, section 3.1)
MAX_RANGE_M = {"TOP": 75.0, "FRONT": 20.0, "SIDE_LEFT": 20.0, "SIDE_RIGHT": 20.0, "REAR": 20.0}
ROLLING_SHUTTER = {1: "top_to_bottom", 2: "left_to_right", 3: "bottom_to_top", 4: "right_to_left"}  # 5: global
LABEL_TYPES = {0: "unknown", 1: "vehicle", 2: "pedestrian", 3: "sign", 4: "cyclist"}
# Waymo camera axes (x forward, y left, z up) -> OpenGL camera axes (x right, y up, looking along -z)
WAYMO_CAM_TO_GL = make_pose(np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.zeros(3))


# -- TFRecord -------------------------------------------------------------------------------------------

def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_index(path: Path) -> list[tuple[int, int]]:
    """(payload offset, length) of each record; checks the framing and the length CRC."""
    out = []
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0
        while pos < size:
            head = fh.read(12)
            if len(head) < 12:
                raise ReaderError(path, f"record {len(out)}", "truncated TFRecord header")
            (length,) = struct.unpack("<Q", head[:8])
            (crc,) = struct.unpack("<I", head[8:])
            if crc != masked_crc(head[:8]):
                raise ReaderError(path, f"record {len(out)}", "length CRC mismatch: not a TFRecord file")
            if pos + 12 + length + 4 > size:
                raise ReaderError(path, f"record {len(out)}", f"truncated record (needs {length} bytes)")
            out.append((pos + 12, length))
            pos += 12 + length + 4
            fh.seek(pos)
    return out


def read_record(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(length)


# -- protobuf wire format -------------------------------------------------------------------------------

class Message:
    """The fields of one protobuf message: number -> list of raw values (int for varint/fixed, bytes for LEN)."""

    def __init__(self, buf: bytes, where: str = "message"):
        self.fields: dict[int, list] = {}
        self.where = where
        mv = memoryview(buf)
        pos, n = 0, len(buf)
        try:
            while pos < n:
                key, pos = _varint(mv, pos)
                num, wire = key >> 3, key & 7
                if wire == 0:
                    val, pos = _varint(mv, pos)
                elif wire == 1:
                    val = bytes(mv[pos:pos + 8])
                    pos += 8
                elif wire == 2:
                    ln, pos = _varint(mv, pos)
                    val = mv[pos:pos + ln]
                    pos += ln
                elif wire == 5:
                    val = bytes(mv[pos:pos + 4])
                    pos += 4
                else:
                    raise ValueError(f"unsupported wire type {wire}")
                if pos > n:
                    raise ValueError("field runs past the end")
                self.fields.setdefault(num, []).append((wire, val))
        except (ValueError, IndexError) as exc:
            raise ReaderError(where, "", f"malformed protobuf ({exc})") from None

    def has(self, num: int) -> bool:
        return num in self.fields

    def message(self, num: int, name: str) -> "Message | None":
        vals = self.fields.get(num)
        return Message(bytes(vals[-1][1]), f"{self.where}.{name}") if vals else None

    def messages(self, num: int, name: str) -> list["Message"]:
        return [Message(bytes(v), f"{self.where}.{name}[{i}]") for i, (_, v) in enumerate(self.fields.get(num, []))]

    def bytes_(self, num: int) -> bytes | None:
        vals = self.fields.get(num)
        return bytes(vals[-1][1]) if vals else None

    def string(self, num: int) -> str | None:
        b = self.bytes_(num)
        return b.decode("utf-8", "replace") if b is not None else None

    def int_(self, num: int, default: int | None = None) -> int | None:
        vals = self.fields.get(num)
        if not vals:
            return default
        wire, v = vals[-1]
        if wire == 0:
            return v - (1 << 64) if v >= 1 << 63 else v
        if wire == 1:
            return struct.unpack("<q", v)[0]
        return struct.unpack("<i", v)[0]

    def doubles(self, num: int) -> np.ndarray:
        """Repeated double (packed or not)."""
        out = []
        for wire, v in self.fields.get(num, []):
            if wire == 2:
                out.append(np.frombuffer(bytes(v), "<f8"))
            elif wire == 1:
                out.append(np.frombuffer(v, "<f8"))
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def double(self, num: int, default: float | None = None) -> float | None:
        vals = self.doubles(num)
        return float(vals[-1]) if len(vals) else default

    def floats(self, num: int) -> np.ndarray:
        out = []
        for wire, v in self.fields.get(num, []):
            if wire == 2:
                out.append(np.frombuffer(bytes(v), "<f4"))
            elif wire == 5:
                out.append(np.frombuffer(v, "<f4"))
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def ints(self, num: int) -> list[int]:
        out = []
        for wire, v in self.fields.get(num, []):
            if wire == 2:
                mv, pos = memoryview(bytes(v)), 0
                while pos < len(mv):
                    x, pos = _varint(mv, pos)
                    out.append(x)
            elif wire == 0:
                out.append(v)
        return out


def _varint(mv: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = mv[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def transform(msg: Message | None, where: str, path: Path) -> np.ndarray:
    if msg is None:
        raise ReaderError(path, where, "missing required Transform")
    vals = msg.doubles(1)
    if vals.shape != (16,):
        raise ReaderError(path, f"{where}.transform", f"expected 16 doubles (row-major 4x4), got {len(vals)}")
    m = vals.reshape(4, 4)
    m[3] = [0, 0, 0, 1]
    return m


# -- lidar ----------------------------------------------------------------------------------------------

def range_image_points(ri: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray) -> np.ndarray:
    """Range image [H, W, >=2] -> float32 [N, 4] points (x, y, z, intensity in [0, 1]) in the lidar frame."""
    h, w = ri.shape[:2]
    incl = inclinations[::-1]  # row 0 is the highest beam
    az_correction = math.atan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (np.arange(w, 0, -1, dtype=np.float64) - 0.5) / w
    azimuth = (ratios * 2.0 - 1.0) * math.pi - az_correction
    rng = ri[..., 0].astype(np.float64)
    valid = rng > 0
    cos_i, sin_i = np.cos(incl)[:, None], np.sin(incl)[:, None]
    x = rng * cos_i * np.cos(azimuth)[None, :]
    y = rng * cos_i * np.sin(azimuth)[None, :]
    z = rng * sin_i * np.ones((1, w))
    out = np.zeros((int(valid.sum()), 4), np.float32)
    out[:, 0], out[:, 1], out[:, 2] = x[valid], y[valid], z[valid]
    out[:, 3] = np.tanh(np.maximum(ri[..., 1][valid], 0.0))
    return out


def range_image_layout(ri: np.ndarray) -> SweepLayout:
    """Beam and column of every return of a range image [H, W, >=1], in ``range_image_points`` order: row r is
    beam H - 1 - r (beams ascend in elevation), column c is column c."""
    rows, cols = np.nonzero(ri[..., 0] > 0)
    return SweepLayout((ri.shape[0] - 1 - rows).astype(np.int32), cols.astype(np.int32))


def laser_sensor(name: str, shape: tuple[int, int], extrinsic: np.ndarray, inclinations: np.ndarray) -> LidarSensor:
    """The exact sensor model of a Waymo laser with range images of ``shape`` (H, W): the calibration's beam
    inclinations, one column per range-image column, turning clockwise from the devkit's first azimuth."""
    h, w = shape
    incl = _row_inclinations(inclinations, h)
    start = math.pi - math.pi / w - math.atan2(extrinsic[1, 0], extrinsic[0, 0])
    start_deg = (math.degrees(start) + 180.0) % 360.0 - 180.0
    return LidarSensor(tuple(float(math.degrees(e)) for e in incl), int(w), min_range_m=0.5,
                       max_range_m=MAX_RANGE_M.get(name, 75.0), spin_rate_hz=10.0, rotation="cw",
                       azimuth_start_deg=start_deg)


def _row_inclinations(inclinations: np.ndarray, rows: int) -> np.ndarray:
    """Per-beam inclinations (radians, ascending): as calibrated, or spread evenly over (min, max)."""
    if inclinations.size == rows:
        return inclinations
    lo, hi = inclinations[0], inclinations[-1]
    return (0.5 + np.arange(rows)) / rows * (hi - lo) + lo


def _range_image(path: Path, offset: int, length: int, laser_index: int) -> np.ndarray | None:
    """The first-return range image [H, W, C] of laser ``laser_index`` of a record (None: the laser is empty)."""
    frame = Message(read_record(path, offset, length), f"{path.name}:frame")
    laser = frame.messages(5, "lasers")[laser_index]
    ri_msg = laser.message(2, "ri_return1")
    comp = ri_msg.bytes_(2) if ri_msg is not None else None
    if not comp:
        return None
    try:
        mat = Message(zlib.decompress(comp), f"{laser.where}.range_image")
    except zlib.error as exc:
        raise ReaderError(path, f"{laser.where}.ri_return1.range_image_compressed",
                          f"expected zlib data ({exc})") from None
    data = mat.floats(1)
    dims = mat.message(2, "shape").ints(1) if mat.has(2) else []
    if len(dims) != 3 or int(np.prod(dims)) != data.size:
        raise ReaderError(path, f"{laser.where}.range_image.shape", f"expected [H, W, 4] dims, got {dims}")
    return data.reshape(dims)


def _laser_loader(path: Path, offset: int, length: int, laser_index: int, laser: "_Laser",
                  shape: tuple[int, int] | None) -> Callable[[], tuple]:
    """Loader of (points, layout): the layout when the range image has the sensor model's ``shape``."""
    def load() -> tuple:
        ri = _range_image(path, offset, length, laser_index)
        if ri is None:
            return np.zeros((0, 4), np.float32), None
        pts = range_image_points(ri, laser.extrinsic, _row_inclinations(laser.inclinations, ri.shape[0]))
        return pts, (range_image_layout(ri) if tuple(ri.shape[:2]) == shape else None)

    return load


def _image_loader(path: Path, offset: int, length: int, image_index: int) -> Callable[[], bytes]:
    def load() -> bytes:
        frame = Message(read_record(path, offset, length), f"{path.name}:frame")
        return frame.messages(4, "images")[image_index].bytes_(2) or b""

    return load


# -- reader ---------------------------------------------------------------------------------------------

def _find(src: Path) -> Path:
    if src.is_file():
        return src
    files = sorted(src.glob("*.tfrecord")) if src.is_dir() else []
    if len(files) == 1:
        return files[0]
    if not src.exists():
        raise ReaderError(src, "", "source does not exist")
    raise ReaderError(src, "", f"expected one segment .tfrecord, found {len(files)}"
                               + (f": pass one of {', '.join(f.name for f in files[:5])}" if files else ""))


@dataclass
class _Camera:
    extrinsic: np.ndarray  # camera to vehicle (Waymo camera axes)
    intrinsics: Intrinsics
    readout_direction: str | None = None  # a ROLLING_SHUTTER value; None for a global (or unknown) shutter


@dataclass
class _Laser:
    name: str
    extrinsic: np.ndarray  # lidar to vehicle
    inclinations: np.ndarray  # per beam, or (min, max)


@dataclass
class _Segment:
    """The segment file, its record index and the calibrations of the first record's Context."""

    path: Path
    index: list[tuple[int, int]]
    context: Message
    cameras: dict[str, _Camera]
    lasers: dict[int, _Laser]


@dataclass
class _Record:
    """One Frame record: its number and place in the file, the decoded message, time (s) and vehicle pose."""

    index: int
    offset: int
    length: int
    frame: Message
    where: str
    time: float
    pose: np.ndarray


@dataclass
class _Collected:
    frames: list[Frame] = field(default_factory=list)
    sweeps: list[LidarSweep] = field(default_factory=list)
    images: dict[str, object] = field(default_factory=dict)
    lidar_files: dict = field(default_factory=dict)
    sensors: dict[str, LidarSensor | None] = field(default_factory=dict)  # laser name -> exact model (None: none)
    ego_t: list[float] = field(default_factory=list)
    ego_p: list[np.ndarray] = field(default_factory=list)
    actors: dict[str, ActorBuilder] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    seg = _open_segment(src)
    keep = set(check_cameras(cameras, list(seg.cameras), seg.path))
    indices = select_indices(len(seg.index), frames)
    if not indices:
        raise ReaderError(seg.path, "frames", f"the selection is empty ({len(seg.index)} frames)")
    got = _Collected()
    for fi in indices:
        rec = _record(seg, fi)
        got.ego_t.append(rec.time)
        got.ego_p.append(rec.pose)
        _add_images(seg, rec, keep, skip_missing, got)
        _add_sweeps(seg, rec, got)
        _add_boxes(seg, rec, got)
    return _assemble(seg, got)


def _open_segment(src: Path) -> _Segment:
    path = _find(src)
    index = tfrecord_index(path)
    if not index:
        raise ReaderError(path, "", "no record in the file")
    first = Message(read_record(path, *index[0]), f"{path.name}:record 0")
    ctx = first.message(1, "context")
    if ctx is None:
        raise ReaderError(path, "record 0.context", "missing required Context (is this a v1 Frame segment?)")
    return _Segment(path, index, ctx, _camera_calibrations(ctx, path), _laser_calibrations(ctx, path))


def _camera_calibrations(ctx: Message, path: Path) -> dict[str, _Camera]:
    cams: dict[str, _Camera] = {}
    for i, cc in enumerate(ctx.messages(2, "camera_calibrations")):
        where = f"context.camera_calibrations[{i}]"
        name = CAMERA_NAMES.get(cc.int_(1, 0) or 0, f"CAMERA_{cc.int_(1, 0)}")
        k = cc.doubles(2)
        if len(k) < 4:
            raise ReaderError(path, f"{where}.intrinsic", f"expected [f_u, f_v, c_u, c_v, k1, k2, p1, p2, k3], "
                                                         f"got {len(k)} values")
        k = np.concatenate([k, np.zeros(max(0, 9 - len(k)))])
        w, h = cc.int_(4), cc.int_(5)
        if not w or not h:
            raise ReaderError(path, f"{where}.width", "expected positive width and height")
        intr = opencv_intrinsics(k[0], k[1], k[2], k[3], w, h, k1=k[4], k2=k[5], p1=k[6], p2=k[7], k3=k[8])
        cams[name] = _Camera(transform(cc.message(3, "extrinsic"), f"{where}.extrinsic", path), intr,
                             ROLLING_SHUTTER.get(cc.int_(6, 0) or 0))
    return cams


def _laser_calibrations(ctx: Message, path: Path) -> dict[int, _Laser]:
    lasers: dict[int, _Laser] = {}
    for i, lc in enumerate(ctx.messages(3, "laser_calibrations")):
        where = f"context.laser_calibrations[{i}]"
        lid = lc.int_(1, 0) or 0
        incl = lc.doubles(2)
        if incl.size == 0:
            lo, hi = lc.double(3), lc.double(4)
            if lo is None or hi is None:
                raise ReaderError(path, f"{where}.beam_inclination_min", "expected beam_inclinations or min/max")
            incl = np.array([lo, hi])
        lasers[lid] = _Laser(LASER_NAMES.get(lid, f"LIDAR_{lid}"),
                             transform(lc.message(5, "extrinsic"), f"{where}.extrinsic", path), incl)
    return lasers


def _record(seg: _Segment, fi: int) -> _Record:
    off, ln = seg.index[fi]
    fr = Message(read_record(seg.path, off, ln), f"{seg.path.name}:frame {fi}")
    where = f"frame {fi}"
    t_us = fr.int_(2)
    if t_us is None:
        raise ReaderError(seg.path, f"{where}.timestamp_micros", "missing required key")
    pose = transform(fr.message(3, "pose"), f"{where}.pose", seg.path)
    return _Record(fi, off, ln, fr, where, t_us / 1e6, pose)


def _add_images(seg: _Segment, rec: _Record, keep: set[str], skip_missing: bool, got: _Collected) -> None:
    path, where = seg.path, rec.where
    for ii, im in enumerate(rec.frame.messages(4, "images")):
        cid = im.int_(1, 0)
        name = CAMERA_NAMES.get(cid, f"CAMERA_{cid}")
        if name not in keep:
            continue
        if name not in seg.cameras:
            raise ReaderError(path, f"{where}.images[{ii}].name", f"no calibration for camera {name}")
        if not im.has(2):
            if skip_missing:
                got.warnings.append(f"{path}: {where}.images[{ii}].image: empty, skipped")
                continue
            raise ReaderError(path, f"{where}.images[{ii}].image", "expected JPEG bytes, the field is empty "
                                                                   "(use --skip-missing to skip it)")
        cam = seg.cameras[name]
        im_pose = transform(im.message(3, "pose"), f"{where}.images[{ii}].pose", path) if im.has(3) else rec.pose
        ts = im.double(5, rec.time)
        im_pose, ts, shutter = _mid_readout(im, cam, im_pose, ts)
        rel = f"images/{name}/{rec.index:06d}.jpg"
        got.images[rel] = _image_loader(path, rec.offset, rec.length, ii)
        got.frames.append(Frame(rel, im_pose @ cam.extrinsic @ WAYMO_CAM_TO_GL, cam.intrinsics, name, ts,
                                rolling_shutter=shutter))


def _mid_readout(im: Message, cam: _Camera, pose: np.ndarray,
                 ts: float) -> tuple[np.ndarray, float, RollingShutter | None]:
    """(vehicle pose, time, rolling shutter) of an image of a rolling-shutter camera, at the middle of its readout
    (drive-log v1.2); the pose and time as given for a global shutter or an image without its readout times."""
    trigger, done, exposure = im.double(7), im.double(8), im.double(6, 0.0)
    if cam.readout_direction is None or not trigger or not done:
        return pose, ts, None
    readout = done - trigger - exposure
    if not 0 < readout < 1:
        return pose, ts, None
    mid = (trigger + done) / 2
    vel = im.message(4, "velocity")
    v = np.array([float(vel.floats(k)[-1]) if len(vel.floats(k)) else 0.0 for k in (1, 2, 3)]) if vel else np.zeros(3)
    w = np.array([vel.double(k, 0.0) for k in (4, 5, 6)]) if vel else np.zeros(3)
    moved = pose.copy()
    moved[:3, 3] += v * (mid - ts)
    moved[:3, :3] = rotation_exp(w * (mid - ts)) @ pose[:3, :3]
    return moved, mid, RollingShutter(readout, cam.readout_direction)


def _add_sweeps(seg: _Segment, rec: _Record, got: _Collected) -> None:
    for li, laser in enumerate(rec.frame.messages(5, "lasers")):
        lid = laser.int_(1, 0)
        if lid not in seg.lasers or not laser.has(2):
            continue
        las = seg.lasers[lid]
        rel = f"lidar/{las.name}/{rec.index:06d}.npy"
        if las.name not in got.sensors:  # the model from the laser's first range image (its size)
            ri = _range_image(seg.path, rec.offset, rec.length, li)
            got.sensors[las.name] = (laser_sensor(las.name, ri.shape[:2], las.extrinsic, las.inclinations)
                                     if ri is not None and ri.shape[0] <= MAX_BEAMS and ri.shape[1] <= MAX_COLUMNS
                                     else None)
        sensor = got.sensors[las.name]
        shape = (sensor.beams, sensor.columns) if sensor is not None else None
        got.lidar_files[rel] = _laser_loader(seg.path, rec.offset, rec.length, li, las, shape)
        got.sweeps.append(LidarSweep(rel, rec.pose @ las.extrinsic, rec.time, las.name))


def _add_boxes(seg: _Segment, rec: _Record, got: _Collected) -> None:
    """Labelled boxes (vehicle frame at the frame pose) by label id; signs are left out."""
    for bi, lab in enumerate(rec.frame.messages(6, "laser_labels")):
        box = lab.message(1, "box")
        lab_id = lab.string(4)
        if box is None or not lab_id:
            raise ReaderError(seg.path, f"{rec.where}.laser_labels[{bi}]", "expected box and id")
        cx, cy, cz = (box.double(k, 0.0) for k in (1, 2, 3))
        size = np.array([box.double(5, 0.0), box.double(4, 0.0), box.double(6, 0.0)])
        typ = LABEL_TYPES.get(lab.int_(3, 0) or 0, "unknown")
        if typ == "sign":
            continue  # signs are static scenery, not actors
        cls = {"vehicle": "car", "unknown": "other"}.get(typ, typ)
        b = got.actors.setdefault(lab_id, ActorBuilder(cls, size, typ))
        b.add(rec.time, rec.pose @ yaw_pose(cx, cy, cz, box.double(7, 0.0)), size)


def _assemble(seg: _Segment, got: _Collected) -> Conversion:
    """The world shifted to the first ego position, times to the earliest frame or ego pose."""
    ego = make_track(got.ego_t, got.ego_p)
    t0 = min([f.timestamp for f in got.frames] + got.ego_t)
    log = finish_log("waymo", seg.path, got.frames, got.sweeps, build_actors(got.actors), ego,
                     offset=ego.poses[0, :3, 3].copy(), t0=t0,
                     extra={"segment": seg.context.string(1) or seg.path.stem})
    log.lidar_sensors.update({name: sensor for name, sensor in got.sensors.items() if sensor is not None})
    conv = Conversion(log, got.images, got.lidar_files)
    for w in got.warnings:
        conv.warn(w)
    return conv
