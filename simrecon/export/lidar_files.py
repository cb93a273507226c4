"""What a composed lidar sweep writes in each dataset layout (docs/lidar.md, docs/export.md).

- ``simrecon`` (``simrecon compose``): the drive-log lidar format: ``lidar/<k>.npy`` (float32 [N, 3|4], sensor
  frame), ``lidar/<k>.index.npy`` (int32 [N, 2] beam, column), ``lidar/<k>.instance.npy`` (uint16 [N]),
  ``lidar/<k>.ply`` (the same points with beam, column, instance and semantic ids) and ``lidar/<k>.json`` (the
  sweep's record); at the end ``lidar.json``: ``lidar_sensors`` and ``lidar`` entries as in transforms.json.
- ``kitti``: ``velodyne/<n>.bin`` (float32 x, y, z, reflectance; KITTI's layout) beside each ``image_2/<n>.png``,
  in the vehicle frame, which is the frame ``calib/<n>.txt``'s ``Tr_velo_to_cam`` maps into the camera; and
  ``velodyne_labels/<n>.label`` (uint32 per point, SemanticKITTI's packing: semantic id in the low 16 bits, our
  semantic ids; instance id in the high 16).
"""

from __future__ import annotations

import base64

import numpy as np

from ..compose.lidar import ComposedSweep, LidarPlan
from ..compose.scenario import LIDAR_OUTPUT, Plan, ScenarioError
from .formats import json_bytes, npy_bytes

LIDAR_FORMATS = ("simrecon", "kitti", "mcap")


def check_lidar_format(plan: Plan, fmt: str) -> None:
    if LIDAR_OUTPUT in plan.outputs and fmt not in LIDAR_FORMATS:
        raise ScenarioError(plan.file, "outputs", f"the {fmt} format has no lidar layout (lidar is written by "
                                                  f"{' and '.join(LIDAR_FORMATS)})")


def ply_bytes(sweep: ComposedSweep) -> bytes:
    """Binary little-endian PLY of the sweep's points with intensity (where known), beam, column and ids."""
    n = len(sweep.points)
    cols = [("x", "f4", "float"), ("y", "f4", "float"), ("z", "f4", "float")]
    if sweep.points.shape[1] == 4:
        cols.append(("intensity", "f4", "float"))
    cols += [("beam", "u2", "ushort"), ("column", "u2", "ushort"), ("instance", "u2", "ushort"),
             ("semantic", "u1", "uchar")]
    data = np.zeros(n, dtype=np.dtype([(name, "<" + t) for name, t, _ in cols]))
    for i, axis in enumerate("xyz" + ("i" if sweep.points.shape[1] == 4 else "")):
        data["intensity" if axis == "i" else axis] = sweep.points[:, i]
    data["beam"], data["column"] = sweep.layout.beam, sweep.layout.column
    data["instance"], data["semantic"] = sweep.instance, sweep.semantic
    head = ["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
    head += [f"property {ply} {name}" for name, _, ply in cols] + ["end_header"]
    return ("\n".join(head) + "\n").encode("ascii") + data.tobytes()


def simrecon_files(sweep: ComposedSweep) -> dict[str, bytes]:
    s = f"lidar/{sweep.index:06d}"
    index = np.stack([sweep.layout.beam, sweep.layout.column], axis=1).astype(np.int32)
    return {f"{s}.npy": npy_bytes(sweep.points), f"{s}.index.npy": npy_bytes(index),
            f"{s}.instance.npy": npy_bytes(sweep.instance.astype(np.uint16)), f"{s}.ply": ply_bytes(sweep),
            f"{s}.json": json_bytes({**sweep.record, "files": {"points": f"{s}.npy", "index": f"{s}.index.npy",
                                                                "instance": f"{s}.instance.npy", "ply": f"{s}.ply"}})}


def kitti_files(plan: Plan, lp: LidarPlan, sweep: ComposedSweep) -> dict[str, bytes]:
    """``velodyne/<n>.bin`` and ``velodyne_labels/<n>.label`` for every camera frame n at the sweep's time."""
    xyz = sweep.points[:, :3].astype(np.float64) @ lp.sensor_to_vehicle[:3, :3].T + lp.sensor_to_vehicle[:3, 3]
    refl = sweep.points[:, 3] if sweep.points.shape[1] == 4 else np.zeros(len(xyz), np.float32)
    bin_data = np.concatenate([xyz, refl[:, None]], axis=1).astype("<f4").tobytes()
    labels = (sweep.semantic.astype(np.uint32) | (sweep.instance.astype(np.uint32) << 16)).astype("<u4").tobytes()
    files = {}
    for n, (_cam, k) in enumerate(plan.frame_keys()):
        if k == sweep.index:
            files[f"velodyne/{n:06d}.bin"] = bin_data
            files[f"velodyne_labels/{n:06d}.label"] = labels
    return files


def sweep_files(fmt: str, plan: Plan, lp: LidarPlan, sweep: ComposedSweep) -> tuple[dict[str, bytes], dict]:
    """The sweep's files, and what its progress record keeps for the format's final files (mcap: the points)."""
    if fmt == "mcap":
        pts = np.ascontiguousarray(sweep.points, dtype="<f4")
        return {}, {"points": base64.b64encode(pts.tobytes()).decode("ascii"), "columns": int(pts.shape[1]),
                    "instance": base64.b64encode(sweep.instance.astype("<u2").tobytes()).decode("ascii")}
    return (simrecon_files(sweep) if fmt == "simrecon" else kitti_files(plan, lp, sweep)), {}


def sweep_points(rec: dict) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(points [N, 3], intensity [N] or None, instance [N]) kept in an mcap sweep record."""
    ex = rec["extra"]
    pts = np.frombuffer(base64.b64decode(ex["points"]), "<f4").reshape(-1, ex["columns"])
    inst = np.frombuffer(base64.b64decode(ex["instance"]), "<u2")
    return pts[:, :3], (pts[:, 3] if ex["columns"] == 4 else None), inst


def final_files(fmt: str, lp: LidarPlan, records: list[dict]) -> dict[str, bytes]:
    """``lidar.json`` (simrecon): the sweeps as drive-log ``lidar`` entries with their sensor; nothing for kitti."""
    if fmt != "simrecon":
        return {}
    entries = []
    for r in records:
        s = f"lidar/{r['key'][1]:06d}"
        entries.append({"file_path": f"{s}.npy", "index_path": f"{s}.index.npy", "sensor": lp.name,
                        "timestamp": r["labels"]["timestamp"], "transform_matrix": r["labels"]["sensor_to_world"],
                        "instance_path": f"{s}.instance.npy", "ply_path": f"{s}.ply"})
    doc = {"simrecon_version": 1.1, "lidar_sensors": {lp.name: lp.sensor.to_json()}, "lidar": entries,
           "conventions": {"points": "float32 [N, 3|4] x, y, z in the sensor frame (x forward, y left, z up), "
                                     "intensity in 0..1 when the scene models it",
                           "index": "int32 [N, 2] beam, column; rays of the sensor without a point returned nothing",
                           "instance": "uint16 [N]: 0 background, k = composition.json actors[instance_id == k]"}}
    return {"lidar.json": json_bytes(doc)}
