"""Tiny source datasets written by the reader tests (each follows its official layout field by field)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from simrecon.data.geometry import make_pose, matrix_to_quat, rot_x, rot_z

SHARED_ENV = "SIMRECON_SHARED_DATA"


def shared_data(name: str) -> Path:
    """A real-data folder from ../shared/data (or $SIMRECON_SHARED_DATA); skips the test when absent."""
    base = Path(os.environ.get(SHARED_ENV, Path(__file__).resolve().parents[2] / "shared" / "data"))
    path = base / name
    if not path.is_dir():
        pytest.skip(f"real data {path} not available")
    return path


def write_image(path: Path, w: int, h: int, mode: str = "RGB", seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = 3 if mode == "RGB" else 1
    arr = rng.integers(0, 255, size=(h, w, channels) if channels > 1 else (h, w), dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)


def fmt_row(values) -> str:
    return " ".join(f"{float(v):.12e}" for v in np.asarray(values).reshape(-1))


# The vehicle-to-OpenCV-camera rotation of a forward-looking camera: cam x = -veh y, cam y = -veh z, cam z = veh x.
R_VEH_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # columns: camera axes in vehicle


# -- nerfstudio -----------------------------------------------------------------------------------------

def write_nerfstudio(root: Path, n: int = 3, missing: int | None = None, w: int = 40, h: int = 30) -> Path:
    """instant-ngp style capture: camera_angle_x, distortion keys, 3x4/4x4 poses, images/ folder."""
    root.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(n):
        c2w = np.eye(4)
        c2w[:3, 3] = [0.0, 0.0, 2.0 + i]  # OpenGL camera at z=2+i looking down -z at the origin
        frames.append({"file_path": f"./images/{i:04d}.jpg", "sharpness": 10.0 + i,
                       "transform_matrix": c2w.tolist()})
        if i != missing:
            write_image(root / "images" / f"{i:04d}.jpg", w, h, seed=i)
    data = {"camera_angle_x": 2 * math.atan(w / (2 * 50.0)), "k1": 0.01, "k2": -0.002, "p1": 0.0, "p2": 0.0,
            "cx": w / 2, "cy": h / 2, "w": float(w), "h": float(h), "aabb_scale": 4, "frames": frames}
    (root / "transforms.json").write_text(json.dumps(data, indent=1))
    return root


# -- KITTI odometry -------------------------------------------------------------------------------------

ODO_P0 = np.array([[700.0, 0, 30.0, 0], [0, 700.0, 20.0, 0], [0, 0, 1, 0]])
ODO_P2 = np.array([[700.0, 0, 30.0, 700.0 * 0.06], [0, 700.0, 20.0, 0], [0, 0, 1, 0]])


def write_kitti_odometry(root: Path, n: int = 4, labelled: bool = True, times: bool = False, lidar: bool = True,
                         w: int = 64, h: int = 40) -> Path:
    """Sequence folder: calib.txt (P0..P3, Tr), poses.txt (cam0-to-world, 1 m forward per frame), image_0, image_2."""
    root.mkdir(parents=True, exist_ok=True)
    P1 = ODO_P0.copy()
    P1[0, 3] = -700.0 * 0.54
    tr = np.array([[0.0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27]])  # velo -> cam0
    rows = [("P0", ODO_P0), ("P1", P1), ("P2", ODO_P2), ("P3", P1), ("Tr", tr)]
    text = "\n".join((f"{k}: " if labelled else "") + fmt_row(m) for k, m in rows)
    (root / "calib.txt").write_text(text)
    poses = []
    for i in range(n):
        p = np.eye(4)
        p[:3, :3] = np.array([[math.cos(0.05 * i), 0, math.sin(0.05 * i)], [0, 1, 0],
                              [-math.sin(0.05 * i), 0, math.cos(0.05 * i)]])  # slight turn about camera y
        p[2, 3] = 1.0 * i
        poses.append(fmt_row(p[:3]))
        write_image(root / "image_0" / f"{i:06d}.png", w, h, mode="L", seed=i)
        write_image(root / "image_2" / f"{i:06d}.png", w, h, seed=i)
        if lidar:
            (root / "velodyne").mkdir(exist_ok=True)
            pts = np.array([[10.0, 0.0, 0.0, 0.5], [5.0, 1.0, -1.0, 0.2]], np.float32)
            pts.tofile(root / "velodyne" / f"{i:06d}.bin")
    (root / "poses.txt").write_text("\n".join(poses) + "\n")
    if times:
        (root / "times.txt").write_text("\n".join(f"{0.2 * i + 5:.6e}" for i in range(n)) + "\n")
    return root


# -- KITTI tracking -------------------------------------------------------------------------------------

KT_P2 = np.array([[720.0, 0, 32.0, 44.8], [0, 720.0, 20.0, 0.2], [0, 0, 1, 0.0027]])


def write_kitti_tracking(split: Path, seq: str = "0003", n_oxts: int = 3, with_images: tuple[int, ...] = (0, 1),
                         colons: bool = False, w: int = 64, h: int = 40) -> Path:
    """Split folder with one sequence: calib (R_rect / Tr_* without ':' unless ``colons``), oxts, velodyne, labels."""
    P0 = KT_P2.copy()
    P0[:, 3] = 0
    P3 = KT_P2.copy()
    P3[0, 3] = -340.0
    r_rect = np.array([[0.9999, 0.0098, -0.0074], [-0.0099, 0.9999, -0.0043], [0.0074, 0.0044, 0.9999]])
    u, _, vt = np.linalg.svd(r_rect)
    r_rect = u @ vt
    tr_velo_cam = np.array([[0.0075, -0.99997, -0.0006, -0.004], [0.0148, 0.0007, -0.9999, -0.076],
                            [0.9999, 0.0075, 0.0148, -0.27]])
    u, _, vt = np.linalg.svd(tr_velo_cam[:, :3])
    tr_velo_cam[:, :3] = u @ vt
    tr_imu_velo = np.array([[1.0, 0, 0, -0.81], [0, 1, 0, 0.32], [0, 0, 1, -0.8]])
    c = ":" if colons else ""
    lines = [f"P0: {fmt_row(P0)}", f"P1: {fmt_row(P0)}", f"P2: {fmt_row(KT_P2)}", f"P3: {fmt_row(P3)}",
             f"R_rect{c} {fmt_row(r_rect)}", f"Tr_velo_cam{c} {fmt_row(tr_velo_cam)}",
             f"Tr_imu_velo{c} {fmt_row(tr_imu_velo)}"]
    (split / "calib").mkdir(parents=True, exist_ok=True)
    (split / "calib" / f"{seq}.txt").write_text("\n".join(lines) + "\n")
    oxts = []
    for i in range(n_oxts):
        rec = np.zeros(30)
        rec[:6] = [49.0 + 1e-5 * i, 8.43, 114.0, 0.01, -0.02, 0.3 + 0.01 * i]
        rec[25:] = [4, 7, 4, 4, 0]
        oxts.append(" ".join(repr(float(v)) for v in rec))
    (split / "oxts").mkdir(exist_ok=True)
    (split / "oxts" / f"{seq}.txt").write_text("\n".join(oxts) + "\n")
    labels = []
    for i in range(n_oxts):
        labels.append(f"{i} -1 DontCare -1 -1 -10 1 2 3 4 -1000 -1000 -1000 -10 -1 -1 -1")
        # a car 15 m ahead, 1 m right, bottom at camera y = 1.6 (road), heading along camera x
        labels.append(f"{i} 0 Car 0 0 -1.5 20 10 40 30 1.5 1.6 4.0 1.0 1.6 {15.0 - 0.5 * i} -1.5708")
        labels.append(f"{i} 1 Pedestrian 0 0 0.2 5 5 10 20 1.8 0.6 0.8 -3.0 1.6 12.0 0.3")
    (split / "label_02").mkdir(exist_ok=True)
    (split / "label_02" / f"{seq}.txt").write_text("\n".join(labels) + "\n")
    for i in with_images:
        write_image(split / "image_02" / seq / f"{i:06d}.png", w, h, seed=i)
        write_image(split / "image_03" / seq / f"{i:06d}.png", w, h, seed=10 + i)
        (split / "velodyne" / seq).mkdir(parents=True, exist_ok=True)
        np.array([[15.0, -1.0, -0.9, 0.3], [8.0, 2.0, -1.5, 0.9]], np.float32).tofile(
            split / "velodyne" / seq / f"{i:06d}.bin")
    return split


# -- DGP ------------------------------------------------------------------------------------------------

def _qt(pose: np.ndarray) -> dict:
    q = matrix_to_quat(pose[:3, :3])
    t = pose[:3, 3]
    return {"rotation": {"qw": q[0], "qx": q[1], "qy": q[2], "qz": q[3]},
            "translation": {"x": t[0], "y": t[1], "z": t[2]}}


DGP_K = {"fx": 500.0, "fy": 510.0, "cx": 31.5, "cy": 19.5, "skew": 0.0}
DGP_CAM_IN_VEHICLE = make_pose(R_VEH_CAM, np.array([1.5, 0.0, 1.6]))
# box centre in the vehicle (= LIDAR) frame at each sample
DGP_BOX = np.array([12.0, 1.0, 0.8])


def dgp_vehicle_pose(s: int) -> np.ndarray:
    return make_pose(rot_z(0.3 + 0.02 * s), np.array([100.0 + 2.0 * s, -2000.0 + s, -12.0]))


def write_dgp(root: Path, n: int = 2, w: int = 64, h: int = 40, drop_image: int | None = None) -> Path:
    """One DGP scene: LIDAR + CAMERA_01, calibration, ontology, 3D boxes, npz points."""
    root.mkdir(parents=True, exist_ok=True)
    calib_key, onto_key = "c" * 40, "o" * 40
    (root / "calibration").mkdir()
    (root / "calibration" / f"{calib_key}.json").write_text(json.dumps({
        "names": ["LIDAR", "CAMERA_01"],
        "intrinsics": [{"fx": 0.0, "fy": 0.0, "cx": 0.0, "cy": 0.0, "skew": 0.0}, DGP_K],
        "extrinsics": [_qt(np.eye(4)), _qt(DGP_CAM_IN_VEHICLE)]}))
    (root / "ontology").mkdir()
    (root / "ontology" / f"{onto_key}.json").write_text(json.dumps({"items": [
        {"id": 0, "name": "Person", "isthing": True}, {"id": 2, "name": "Car", "isthing": True}]}))
    samples, data = [], []
    for s in range(n):
        ts_lidar = 15616458250027900 + s * 1_000_000
        ts_cam = ts_lidar - 91_000
        veh = dgp_vehicle_pose(s)
        lid_rel = f"point_cloud/LIDAR/{ts_lidar}.npz"
        (root / lid_rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez(root / lid_rel, data=np.array([[DGP_BOX[0], DGP_BOX[1], DGP_BOX[2], 0.5],
                                                [5.0, -1.0, 0.2, 0.1]], np.float64))
        box_rel = f"bounding_box_3d/LIDAR/{ts_lidar}.json"
        (root / box_rel).parent.mkdir(parents=True, exist_ok=True)
        (root / box_rel).write_text(json.dumps({"annotations": [
            {"class_id": 2, "instance_id": 443946110, "num_points": 40, "attributes": {},
             "box": {"pose": _qt(make_pose(rot_z(0.1), DGP_BOX)), "length": 4.5, "width": 1.9, "height": 1.6,
                     "occlusion": 0, "truncation": 0.0}}]}))
        img_rel = f"rgb/CAMERA_01/{ts_cam}.jpg"
        if s != drop_image:
            write_image(root / img_rel, w, h, seed=s)
        iso = lambda us: f"2464-11-12T01:04:{10 + (us - 15616458250027900) / 1e6:09.6f}Z"  # noqa: E731
        lkey, ckey = f"l{s:039d}", f"k{s:039d}"
        data.append({"id": {"index": "0", "log": "L", "name": "LIDAR", "timestamp": iso(ts_lidar)}, "key": lkey,
                     "next_key": "", "prev_key": "",
                     "datum": {"point_cloud": {"filename": lid_rel, "point_format": ["X", "Y", "Z", "INTENSITY"],
                                               "annotations": {"1": box_rel}, "pose": _qt(veh), "metadata": {}}}})
        data.append({"id": {"index": "0", "log": "L", "name": "CAMERA_01", "timestamp": iso(ts_cam)}, "key": ckey,
                     "next_key": "", "prev_key": "",
                     "datum": {"image": {"filename": img_rel, "width": w, "height": h, "channels": 3,
                                         "annotations": {}, "pose": _qt(veh @ DGP_CAM_IN_VEHICLE), "metadata": {}}}})
        samples.append({"calibration_key": calib_key, "datum_keys": [lkey, ckey], "metadata": {},
                        "id": {"index": "0", "log": "L", "name": "", "timestamp": iso(ts_lidar)}})
    (root / ("scene_" + "f" * 40 + ".json")).write_text(json.dumps(
        {"data": data, "samples": samples, "ontologies": {"1": onto_key}, "name": "t", "log": "L",
         "metadata": {}, "description": ""}))
    return root


# -- Waymo (protobuf wire format + TFRecord framing, written by hand) ------------------------------------

def pb_varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_len(num: int, data: bytes) -> bytes:
    return pb_varint(num << 3 | 2) + pb_varint(len(data)) + data


def pb_int(num: int, v: int) -> bytes:
    return pb_varint(num << 3) + pb_varint(v)


def pb_double(num: int, v: float) -> bytes:
    return pb_varint(num << 3 | 1) + np.float64(v).tobytes()


def pb_float(num: int, v: float) -> bytes:
    import struct

    return pb_varint(num << 3 | 5) + struct.pack("<f", v)


def pb_doubles(num: int, vals, packed: bool = True) -> bytes:
    arr = np.asarray(vals, "<f8").reshape(-1)
    if packed:
        return pb_len(num, arr.tobytes())
    return b"".join(pb_double(num, v) for v in arr)


def pb_transform(num: int, m: np.ndarray, packed: bool = False) -> bytes:
    return pb_len(num, pb_doubles(1, m, packed=packed))  # Transform.transform = 1, 16 doubles row-major


def _crc32c(data: bytes) -> int:
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 & -(c & 1))
    return c ^ 0xFFFFFFFF


def _masked(data: bytes) -> int:
    c = _crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(records: list[bytes]) -> bytes:
    import struct

    out = b""
    for r in records:
        head = struct.pack("<Q", len(r))
        out += head + struct.pack("<I", _masked(head)) + r + struct.pack("<I", _masked(r))
    return out


WAYMO_K = (500.0, 505.0, 31.5, 19.5)  # f_u f_v c_u c_v
WAYMO_CAM_IN_VEHICLE = make_pose(np.eye(3), np.array([1.5, 0.0, 2.0]))  # Waymo camera axes = vehicle axes
WAYMO_LIDAR_IN_VEHICLE = make_pose(rot_z(0.3), np.array([0.0, 0.0, 2.0]))
WAYMO_INCLINATIONS = np.array([-0.1, 0.05])  # ascending, as in the proto (row 0 is the last one)
WAYMO_BOX = np.array([20.0, 2.0, 1.0])  # vehicle frame


def waymo_pose(i: int) -> np.ndarray:
    return make_pose(rot_z(1.0 + 0.01 * i), np.array([5000.0 + i, 300.0, 10.0]))


# A rolling-shutter FRONT camera (write_waymo(rolling=True)): read left to right; trigger 30 ms before the image's
# pose_timestamp, readout done 20 ms after, 4 ms exposure per column; the car drives at 10 m/s along global x,
# turning at 0.1 rad/s about global z.
WAYMO_RS = {"trigger": -0.03, "done": 0.02, "shutter": 0.004, "v": (10.0, 0.0, 0.0), "w": (0.0, 0.0, 0.1)}


def write_waymo(path: Path, n: int = 2, w: int = 64, h: int = 40,
                ri_hit: tuple[int, int, float] = (0, 3, 10.0), rolling: bool = False) -> Path:
    """A segment of ``n`` Frame records: FRONT camera, TOP lidar (2x8 range image), one vehicle label
    (``rolling``: the camera has a rolling shutter, ``WAYMO_RS``)."""
    import io
    import zlib

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    cam_cal = (pb_int(1, 1) + pb_doubles(2, [*WAYMO_K, 0.0, 0.0, 0.0, 0.0, 0.0])
               + pb_transform(3, WAYMO_CAM_IN_VEHICLE) + pb_int(4, w) + pb_int(5, h) + pb_int(6, 2 if rolling else 5))
    las_cal = pb_int(1, 1) + pb_doubles(2, WAYMO_INCLINATIONS) + pb_transform(5, WAYMO_LIDAR_IN_VEHICLE)
    context = pb_len(1, b"segment-test") + pb_len(2, cam_cal) + pb_len(3, las_cal)
    ri = np.zeros((2, 8, 4), np.float32)
    row, col, rng_m = ri_hit
    ri[row, col] = [rng_m, 2.0, 0.0, 0.0]
    ri[1, 0] = [-1.0, 0.0, 0.0, 0.0]  # no return
    matrix = pb_len(1, ri.astype("<f4").tobytes()) + pb_len(2, b"".join(pb_int(1, d) for d in ri.shape))
    records = []
    for i in range(n):
        pose = waymo_pose(i)
        stamp = 1.5e9 + 0.1 * i + 0.02
        image = pb_int(1, 1) + pb_len(2, jpeg) + pb_transform(3, pose) + pb_double(5, stamp)
        if rolling:
            rs = WAYMO_RS
            velocity = b"".join(pb_float(k + 1, x) for k, x in enumerate(rs["v"])) + \
                b"".join(pb_double(k + 4, x) for k, x in enumerate(rs["w"]))
            image += pb_len(4, velocity) + pb_double(6, rs["shutter"]) + pb_double(7, stamp + rs["trigger"]) + \
                pb_double(8, stamp + rs["done"])
        laser = pb_int(1, 1) + pb_len(2, pb_len(2, zlib.compress(matrix)))
        box = (pb_double(1, WAYMO_BOX[0] - 0.5 * i) + pb_double(2, WAYMO_BOX[1]) + pb_double(3, WAYMO_BOX[2])
               + pb_double(4, 1.9) + pb_double(5, 4.6) + pb_double(6, 1.7) + pb_double(7, 0.2))
        label = pb_len(1, box) + pb_int(3, 1) + pb_len(4, b"car-abc")
        frame = (pb_len(1, context) + pb_int(2, int(1.5e15) + 100_000 * i) + pb_transform(3, pose)
                 + pb_len(4, image) + pb_len(5, laser) + pb_len(6, label))
        records.append(frame)
    path.write_bytes(tfrecord(records))
    return path


# -- nuScenes -------------------------------------------------------------------------------------------

NUS_K = [[500.0, 0.0, 31.5], [0.0, 505.0, 19.5], [0.0, 0.0, 1.0]]
NUS_CAM_IN_VEHICLE = make_pose(R_VEH_CAM, np.array([1.7, 0.0, 1.5]))
NUS_LIDAR_IN_VEHICLE = make_pose(rot_z(-1.5708), np.array([0.9, 0.0, 1.8]))
NUS_BOX_VEHICLE = np.array([15.0, -2.0, 0.9])  # box centre in the vehicle frame of each sample


def nus_ego(i: int) -> np.ndarray:
    return make_pose(rot_z(0.5 + 0.05 * i), np.array([400.0 + 3 * i, 1100.0 + i, 0.0]))


def _wxyz(pose):
    return [float(x) for x in matrix_to_quat(pose[:3, :3])]


def write_nuscenes(root: Path, n: int = 2, w: int = 64, h: int = 40, scenes: int = 1) -> Path:
    """dataroot with v1.0-mini tables: CAM_FRONT, LIDAR_TOP, one car instance per scene."""
    ver = root / "v1.0-mini"
    ver.mkdir(parents=True, exist_ok=True)
    tables = {k: [] for k in ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sensor",
                              "sample_annotation", "instance", "category", "log")}
    tables["sensor"] = [{"token": "s_cam", "channel": "CAM_FRONT", "modality": "camera"},
                        {"token": "s_lid", "channel": "LIDAR_TOP", "modality": "lidar"}]
    tables["calibrated_sensor"] = [
        {"token": "cs_cam", "sensor_token": "s_cam", "translation": NUS_CAM_IN_VEHICLE[:3, 3].tolist(),
         "rotation": _wxyz(NUS_CAM_IN_VEHICLE), "camera_intrinsic": NUS_K},
        {"token": "cs_lid", "sensor_token": "s_lid", "translation": NUS_LIDAR_IN_VEHICLE[:3, 3].tolist(),
         "rotation": _wxyz(NUS_LIDAR_IN_VEHICLE), "camera_intrinsic": []}]
    tables["category"] = [{"token": "cat_car", "name": "vehicle.car", "description": ""}]
    for sc in range(scenes):
        tables["instance"].append({"token": f"inst{sc}", "category_token": "cat_car", "nbr_annotations": n,
                                   "first_annotation_token": f"a{sc}_0", "last_annotation_token": f"a{sc}_{n - 1}"})
        for i in range(n):
            tok, ts = f"smp{sc}_{i}", 1532402927647951 + 500_000 * i
            tables["sample"].append({"token": tok, "timestamp": ts, "scene_token": f"scene{sc}",
                                     "prev": f"smp{sc}_{i - 1}" if i else "",
                                     "next": f"smp{sc}_{i + 1}" if i < n - 1 else ""})
            ego = nus_ego(i)
            for kind, cs, fname, dt in (("cam", "cs_cam", f"samples/CAM_FRONT/n008__CAM_FRONT__{ts}.jpg", -10_000),
                                        ("lid", "cs_lid", f"samples/LIDAR_TOP/n008__LIDAR_TOP__{ts}.pcd.bin", 0)):
                ep = f"ep_{kind}{sc}_{i}"
                tables["ego_pose"].append({"token": ep, "timestamp": ts + dt, "translation": ego[:3, 3].tolist(),
                                           "rotation": _wxyz(ego)})
                tables["sample_data"].append({
                    "token": f"sd_{kind}{sc}_{i}", "sample_token": tok, "ego_pose_token": ep,
                    "calibrated_sensor_token": cs, "timestamp": ts + dt, "fileformat": fname.split(".")[-1],
                    "is_key_frame": True, "height": h if kind == "cam" else 0, "width": w if kind == "cam" else 0,
                    "filename": fname, "prev": "", "next": ""})
                if kind == "cam":
                    write_image(root / fname, w, h, seed=i)
                else:
                    (root / fname).parent.mkdir(parents=True, exist_ok=True)
                    veh_to_lidar = np.linalg.inv(NUS_LIDAR_IN_VEHICLE)
                    p = veh_to_lidar[:3, :3] @ NUS_BOX_VEHICLE + veh_to_lidar[:3, 3]
                    np.array([[*p, 200.0, 5.0], [3.0, 0.0, -1.0, 10.0, 2.0]], np.float32).tofile(root / fname)
            box = ego @ make_pose(rot_z(0.25), NUS_BOX_VEHICLE)
            tables["sample_annotation"].append({
                "token": f"a{sc}_{i}", "sample_token": tok, "instance_token": f"inst{sc}", "visibility_token": "4",
                "attribute_tokens": [], "translation": box[:3, 3].tolist(), "size": [1.9, 4.5, 1.6],
                "rotation": _wxyz(box), "prev": "", "next": "", "num_lidar_pts": 10, "num_radar_pts": 0})
        tables["scene"].append({"token": f"scene{sc}", "name": f"scene-{61 + sc:04d}", "log_token": "log0",
                                "nbr_samples": n, "first_sample_token": f"smp{sc}_0",
                                "last_sample_token": f"smp{sc}_{n - 1}", "description": ""})
    for k, v in tables.items():
        (ver / f"{k}.json").write_text(json.dumps(v))
    return root


# -- Argoverse 2 ----------------------------------------------------------------------------------------

AV2_CAM_IN_EGO = make_pose(R_VEH_CAM, np.array([1.6, 0.0, 1.4]))
AV2_BOX_EGO = np.array([18.0, 1.5, 0.8])
AV2_K = (600.0, 605.0, 31.5, 19.5)


def av2_ego(ns_index: int) -> np.ndarray:
    return make_pose(rot_z(-0.7 + 0.01 * ns_index), np.array([2500.0 + ns_index, -800.0, 20.0]))


# the two VLP-32C lidars (write_argoverse2(lidars=True)): sensor-to-ego, the lower one upside down
AV2_LIDARS = {"up_lidar": make_pose(np.eye(3), np.array([1.35, 0.0, 1.64])),
              "down_lidar": make_pose(rot_x(math.pi), np.array([1.35, 0.0, 1.52]))}


def av2_lidar_points(seed: int) -> dict:
    """Feather columns of a sweep of both lidars (8 beams x 64 columns each, 90 % returns, laser_number 0-7 up
    and 32-39 down), in the ego frame; also ``ego_xyz`` and per-lidar ``sensor_xyz`` for checks."""
    from simrecon.data.lidar_model import uniform_sensor

    rng = np.random.default_rng(seed)
    sensor = uniform_sensor(8, 64, low_deg=-15.0, high_deg=10.0)
    beam, column = sensor.grid()
    cols = {"x": [], "y": [], "z": [], "intensity": [], "laser_number": [], "offset_ns": []}
    for first, pose in zip((0, 32), AV2_LIDARS.values()):
        keep = rng.random(len(beam)) < 0.9
        xyz = sensor.directions()[keep] * rng.uniform(6.0, 40.0, (int(keep.sum()), 1))
        ego = xyz @ pose[:3, :3].T + pose[:3, 3]
        for k, v in zip("xyz", ego.T):
            cols[k].append(v)
        cols["intensity"].append(rng.integers(0, 255, len(ego)))
        cols["laser_number"].append(first + beam[keep])
        cols["offset_ns"].append(column[keep] * 1_000_000)
    return {"x": np.concatenate(cols["x"]).astype(np.float32), "y": np.concatenate(cols["y"]).astype(np.float32),
            "z": np.concatenate(cols["z"]).astype(np.float32),
            "intensity": np.concatenate(cols["intensity"]).astype(np.uint8),
            "laser_number": np.concatenate(cols["laser_number"]).astype(np.uint8),
            "offset_ns": np.concatenate(cols["offset_ns"]).astype(np.int32)}


def write_argoverse2(log: Path, n: int = 2, w: int = 64, h: int = 40, lidars: bool = False) -> Path:
    """One AV2 sensor log: ring_front_center camera, lidar sweeps (ego frame), annotations, poses (feather);
    ``lidars``: the calibration has both lidars and each sweep holds 8 beams x 64 columns of each
    (``av2_lidar_points``)."""
    import pyarrow as pa
    import pyarrow.feather as feather

    def save(path: Path, cols: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        feather.write_feather(pa.table(cols), str(path))

    def pose_cols(poses):
        q = np.stack([matrix_to_quat(p[:3, :3]) for p in poses])
        t = np.stack([p[:3, 3] for p in poses])
        return {"qw": q[:, 0], "qx": q[:, 1], "qy": q[:, 2], "qz": q[:, 3], "tx_m": t[:, 0], "ty_m": t[:, 1],
                "tz_m": t[:, 2]}

    base = 315967376859506000
    names, poses = ["ring_front_center"], [AV2_CAM_IN_EGO]
    if lidars:
        names, poses = names + list(AV2_LIDARS), poses + list(AV2_LIDARS.values())
    save(log / "calibration" / "egovehicle_SE3_sensor.feather", {"sensor_name": names, **pose_cols(poses)})
    save(log / "calibration" / "intrinsics.feather",
         {"sensor_name": ["ring_front_center"], "fx_px": [AV2_K[0]], "fy_px": [AV2_K[1]], "cx_px": [AV2_K[2]],
          "cy_px": [AV2_K[3]], "k1": [0.0], "k2": [0.0], "k3": [0.0], "height_px": [h], "width_px": [w]})
    lidar_ns = [base + 100_000_000 * i for i in range(n)]
    cam_ns = [t + 20_000_000 for t in lidar_ns]
    all_ns = sorted(lidar_ns + cam_ns)
    save(log / "city_SE3_egovehicle.feather",
         {"timestamp_ns": np.array(all_ns, np.int64), **pose_cols([av2_ego(k) for k in range(len(all_ns))])})
    ann = {"timestamp_ns": [], "track_uuid": [], "category": [], "length_m": [], "width_m": [], "height_m": [],
           "num_interior_pts": []}
    boxes = []
    for i, (lns, cns) in enumerate(zip(lidar_ns, cam_ns)):
        write_image(log / "sensors" / "cameras" / "ring_front_center" / f"{cns}.jpg", w, h, seed=i)
        points = av2_lidar_points(i) if lidars else {
            "x": np.array([*AV2_BOX_EGO[:1], 4.0], np.float32), "y": np.array([AV2_BOX_EGO[1], 0.0], np.float32),
            "z": np.array([AV2_BOX_EGO[2], -0.5], np.float32), "intensity": np.array([51, 255], np.uint8),
            "laser_number": np.array([1, 2], np.uint8), "offset_ns": np.array([0, 10], np.int32)}
        save(log / "sensors" / "lidar" / f"{lns}.feather", points)
        for k, v in (("timestamp_ns", lns), ("track_uuid", "uuid-1"), ("category", "REGULAR_VEHICLE"),
                     ("length_m", 4.4), ("width_m", 1.8), ("height_m", 1.5), ("num_interior_pts", 30)):
            ann[k].append(v)
        boxes.append(make_pose(rot_z(0.1), AV2_BOX_EGO))
    ann["timestamp_ns"] = np.array(ann["timestamp_ns"], np.int64)
    save(log / "annotations.feather", {**ann, **pose_cols(boxes)})
    return log


# -- PandaSet -------------------------------------------------------------------------------------------

PANDA_K = {"front_camera": (500.0, 505.0, 31.5, 19.5), "left_camera": (300.0, 302.0, 32.0, 20.0)}
# camera axes (OpenCV) in the vehicle frame (x forward, y left, z up)
PANDA_CAM_IN_VEHICLE = {
    "front_camera": make_pose(R_VEH_CAM, np.array([1.5, 0.0, 1.6])),
    # looking left: image right = vehicle forward, image down = vehicle down, optical axis = vehicle left
    "left_camera": make_pose(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]), np.array([0.5, 0.9, 1.6])),
}
# PandaSet does not publish its lidar axes; any rotation must work: a quarter turn about z here
PANDA_LIDAR_IN_VEHICLE = make_pose(rot_z(math.pi / 2), np.array([0.0, 0.0, 1.9]))
PANDA_BOX_VEHICLE = np.array([14.0, -1.5, 0.8])  # the car's centre in the vehicle frame of every frame
PANDA_BOX_HEADING = 0.1  # the car's heading relative to the vehicle (about z)
PANDA_T0 = 1557540783.6


def panda_vehicle(i: int) -> np.ndarray:
    return make_pose(rot_z(0.4 + 0.02 * i), np.array([-50.0 + 1.5 * i, 20.0, 3.0]))


def _panda_pose(pose: np.ndarray) -> dict:
    q = matrix_to_quat(pose[:3, :3])
    t = pose[:3, 3]
    return {"position": {"x": float(t[0]), "y": float(t[1]), "z": float(t[2])},
            "heading": {"w": float(q[0]), "x": float(q[1]), "y": float(q[2]), "z": float(q[3])}}


def pickle_frame(path: Path, columns: dict) -> None:
    """A DataFrame as PandaSet ships it (object strings, pickled, gzip-compressed)."""
    import gzip
    import pickle

    import pandas as pd

    def series(values):
        text = any(v is None or isinstance(v, str) for v in values)
        return pd.Series(values, dtype=object) if text else pd.Series(values)

    df = pd.DataFrame({k: series(v) for k, v in columns.items()})
    df.columns = pd.Index(list(df.columns), dtype=object)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        pickle.dump(df, fh, protocol=pickle.HIGHEST_PROTOCOL)


def panda_car_world(i: int) -> tuple[np.ndarray, float]:
    """World centre and PandaSet yaw of the car at frame ``i`` (yaw 0 = length side along world +y)."""
    veh = panda_vehicle(i)
    centre = veh[:3, :3] @ PANDA_BOX_VEHICLE + veh[:3, 3]
    heading = 0.4 + 0.02 * i + PANDA_BOX_HEADING  # world yaw of the car's forward axis (from +x)
    return centre, heading - math.pi / 2


def write_pandaset(seq: Path, n: int = 2, w: int = 64, h: int = 40, cuboids: bool = True) -> Path:
    """One sequence: front_camera + left_camera, lidar (world points, Pandar64 + PandarGT), cuboids, meta."""
    seq.mkdir(parents=True, exist_ok=True)
    for cam, (fx, fy, cx, cy) in PANDA_K.items():
        folder = seq / "camera" / cam
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            write_image(folder / f"{i:02d}.jpg", w, h, seed=i)
        (folder / "intrinsics.json").write_text(json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy}))
        (folder / "poses.json").write_text(json.dumps(
            [_panda_pose(panda_vehicle(i) @ PANDA_CAM_IN_VEHICLE[cam]) for i in range(n)]))
        (folder / "timestamps.json").write_text(json.dumps([PANDA_T0 + 0.1 * i for i in range(n)]))
    lidar = seq / "lidar"
    lidar.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        centre, _ = panda_car_world(i)
        veh = panda_vehicle(i)
        ground = veh[:3, :3] @ np.array([6.0, 2.0, 0.0]) + veh[:3, 3]
        gt_point = veh[:3, :3] @ np.array([30.0, 0.0, 0.5]) + veh[:3, 3]
        pts = np.array([centre, ground, gt_point])
        pickle_frame(lidar / f"{i:02d}.pkl.gz", {
            "x": pts[:, 0].tolist(), "y": pts[:, 1].tolist(), "z": pts[:, 2].tolist(), "i": [51.0, 255.0, 10.0],
            "t": [PANDA_T0 + 0.1 * i + 0.05 + k * 1e-4 for k in range(3)], "d": [0, 0, 1]})
    (lidar / "poses.json").write_text(json.dumps([_panda_pose(panda_vehicle(i) @ PANDA_LIDAR_IN_VEHICLE)
                                                  for i in range(n)]))
    (lidar / "timestamps.json").write_text(json.dumps([PANDA_T0 + 0.1 * i + 0.05 for i in range(n)]))
    if cuboids:
        for i in range(n):
            centre, yaw = panda_car_world(i)
            cone = panda_vehicle(0)[:3, :3] @ np.array([8.0, 4.0, 0.3]) + panda_vehicle(0)[:3, 3]
            rows = [  # car, its PandarGT sibling (dropped), a stationary cone
                ("car-uuid", "Car", yaw, False, centre, (1.9, 4.5, 1.6), -1, None, "Moving"),
                ("car-gt-uuid", "Car", yaw, False, centre + 0.2, (1.9, 4.5, 1.6), 1, "car-uuid", "Moving"),
                ("cone-uuid", "Cones", 0.0, True, cone, (0.4, 0.4, 0.6), -1, None, None),
            ]
            pickle_frame(seq / "annotations" / "cuboids" / f"{i:02d}.pkl.gz", {
                "uuid": [r[0] for r in rows], "label": [r[1] for r in rows], "yaw": [r[2] for r in rows],
                "stationary": [r[3] for r in rows], "camera_used": [0, -1, -1],
                "position.x": [r[4][0] for r in rows], "position.y": [r[4][1] for r in rows],
                "position.z": [r[4][2] for r in rows],
                "dimensions.x": [r[5][0] for r in rows], "dimensions.y": [r[5][1] for r in rows],
                "dimensions.z": [r[5][2] for r in rows],
                "attributes.object_motion": [r[8] for r in rows], "cuboids.sibling_id": [r[7] for r in rows],
                "cuboids.sensor_id": [r[6] for r in rows]})
    (seq / "meta").mkdir(exist_ok=True)
    (seq / "meta" / "timestamps.json").write_text(json.dumps([PANDA_T0 + 0.1 * i + 0.05 for i in range(n)]))
    (seq / "meta" / "gps.json").write_text(json.dumps([{"lat": 37.77 + 1e-5 * i, "long": -122.41, "height": 2.0,
                                                         "xvel": 1.0, "yvel": 0.5} for i in range(n)]))
    return seq
