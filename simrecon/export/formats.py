"""Dataset layouts (docs/export.md): what each frame writes and what is assembled at the end.

A format turns one ``ComposedFrame`` into files (bytes, written atomically by the exporter) plus a small
JSON-ready ``extra`` kept in the progress record, and at the end turns all frame records into the
aggregate files (COCO JSON, transforms.json, ...). Frames are never re-read: a resumed export finishes
from the records alone.
"""

from __future__ import annotations

import io
import json
import math

import numpy as np
from PIL import Image

from ..compose.composer import ComposedFrame, composition
from ..compose.labels import SEMANTIC_CLASSES
from ..compose.scenario import Plan, ScenarioError
from . import rle

FORMATS = ("simrecon", "kitti", "coco", "nerfstudio", "mcap")
KITTI_TYPES = {"car": "Car", "truck": "Truck", "bus": "Misc", "pedestrian": "Pedestrian", "cyclist": "Cyclist",
               "other": "Misc"}
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])  # OpenGL camera axes <-> OpenCV camera axes (an involution)


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=False, compress_level=1)
    return buf.getvalue()


def npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode("utf-8")


def stem(frame_or_key) -> str:
    cam, k = (frame_or_key.camera, frame_or_key.index) if hasattr(frame_or_key, "camera") else frame_or_key
    return f"{cam}/{k:06d}"


def _need(plan: Plan, fmt: str, outputs: tuple[str, ...]) -> None:
    missing = [o for o in outputs if o not in plan.outputs]
    if missing:
        raise ScenarioError(plan.file, "outputs", f"the {fmt} format needs {', '.join(missing)} in outputs")


def _semantic_name(sid: int) -> str:
    return next(k for k, v in SEMANTIC_CLASSES.items() if v == sid)


class SimreconFormat:
    """Our own layout: every output per camera and frame plus the frame record (labels) as JSON."""

    name = "simrecon"

    def check(self, plan: Plan) -> None:
        pass

    def frame_files(self, plan: Plan, frame: ComposedFrame, n: int) -> tuple[dict[str, bytes], dict]:
        s = stem(frame)
        files: dict[str, bytes] = {}
        paths = {}
        if frame.rgb is not None and "rgb" in plan.outputs:
            paths["rgb"] = f"rgb/{s}.png"
            files[paths["rgb"]] = png_bytes(frame.rgb)
        if frame.depth is not None and "depth" in plan.outputs:
            paths["depth"] = f"depth/{s}.npy"
            files[paths["depth"]] = npy_bytes(frame.depth)
        if frame.instance is not None and "instance" in plan.outputs:
            paths["instance"] = f"instance/{s}.png"
            files[paths["instance"]] = png_bytes(frame.instance)
        if frame.semantic is not None and "semantic" in plan.outputs:
            paths["semantic"] = f"semantic/{s}.png"
            files[paths["semantic"]] = png_bytes(frame.semantic)
        rec = {**frame.record, "files": paths}
        files[f"frames/{s}.json"] = json_bytes(rec)
        return files, {}

    def final_files(self, plan: Plan, records: list[dict]) -> dict[str, bytes]:
        comp = composition(plan)
        comp["frames"] = [f"frames/{stem(r['key'])}.json" for r in records]
        return {"composition.json": json_bytes(comp)}


class KittiFormat:
    """KITTI object detection layout: image_2, label_2 (15 fields), calib (P0..P3, R0_rect, Tr_*)."""

    name = "kitti"

    def check(self, plan: Plan) -> None:
        _need(plan, "kitti", ("rgb", "boxes"))

    @staticmethod
    def calib(intr) -> np.ndarray:
        """P2 [3, 4] in KITTI's (OpenCV) pixel convention: the top-left pixel's centre is (0, 0)."""
        return np.array([[intr["fl_x"], 0.0, intr["cx"] - 0.5, 0.0], [0.0, intr["fl_y"], intr["cy"] - 0.5, 0.0],
                         [0.0, 0.0, 1.0, 0.0]])

    @staticmethod
    def label_line(obj: dict) -> str | None:
        if not obj["visible_pixels"]:
            return None
        box_cv = GL_TO_CV @ np.asarray(obj["box_camera"]["pose"])  # box-to-camera, OpenCV axes
        length, width, height = obj["size"]
        center = box_cv[:3, 3]
        fwd, up = box_cv[:3, 0], box_cv[:3, 2]
        bottom = center - up * height / 2.0
        ry = math.atan2(-fwd[2], fwd[0])
        alpha = ry - math.atan2(bottom[0], bottom[2])
        alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
        u0, v0, u1, v1 = obj["box_2d"]
        vis = obj.get("visibility")
        occluded = 3 if vis is None else (0 if vis >= 0.8 else 1 if vis >= 0.4 else 2)
        from ..compose.labels import semantic_class

        kind = KITTI_TYPES[semantic_class(obj["class"])]
        fields = [kind, f"{obj['truncation']:.2f}", str(occluded), f"{alpha:.2f}",
                  f"{float(u0):.2f}", f"{float(v0):.2f}", f"{float(u1 - 1):.2f}", f"{float(v1 - 1):.2f}",
                  f"{height:.2f}", f"{width:.2f}", f"{length:.2f}",
                  f"{bottom[0]:.2f}", f"{bottom[1]:.2f}", f"{bottom[2]:.2f}", f"{ry:.2f}"]
        return " ".join(fields)

    def frame_files(self, plan: Plan, frame: ComposedFrame, n: int) -> tuple[dict[str, bytes], dict]:
        rec = frame.record
        lines = [ln for ln in (self.label_line(o) for o in rec["objects"]) if ln is not None]
        p2 = self.calib(rec["intrinsics"])
        c2v = np.asarray(rec["camera_to_vehicle"]) @ GL_TO_CV  # OpenCV camera -> vehicle
        v2c = np.linalg.inv(c2v)

        def row(m):
            return " ".join(f"{x:.12e}" for x in np.asarray(m).ravel())

        calib = [f"P0: {row(p2)}", f"P1: {row(p2)}", f"P2: {row(p2)}", f"P3: {row(p2)}", f"R0_rect: {row(np.eye(3))}",
                 f"Tr_velo_to_cam: {row(v2c[:3])}", f"Tr_imu_to_velo: {row(np.eye(4)[:3])}"]
        files = {
            f"image_2/{n:06d}.png": png_bytes(frame.rgb),
            f"label_2/{n:06d}.txt": ("\n".join(lines) + ("\n" if lines else "")).encode(),
            f"calib/{n:06d}.txt": ("\n".join(calib) + "\n").encode(),
        }
        return files, {}

    def final_files(self, plan: Plan, records: list[dict]) -> dict[str, bytes]:
        index = [{"index": f"{r['n']:06d}", "camera": r["labels"]["camera"], "timestamp": r["labels"]["timestamp"],
                  "frame": r["labels"]["index"]} for r in records]
        return {"frames.json": json_bytes({"scenario": plan.name, "frames": index})}


class CocoFormat:
    """COCO instances JSON: boxes and RLE masks (compressed string counts) for every visible actor."""

    name = "coco"

    def check(self, plan: Plan) -> None:
        _need(plan, "coco", ("rgb", "boxes"))

    def frame_files(self, plan: Plan, frame: ComposedFrame, n: int) -> tuple[dict[str, bytes], dict]:
        anns = []
        for o in frame.record["objects"]:
            if not o["visible_pixels"]:
                continue
            u0, v0, u1, v1 = o["box_2d"]
            anns.append({
                "category_id": o["semantic_id"], "bbox": [float(u0), float(v0), float(u1 - u0), float(v1 - v0)],
                "area": int(o["visible_pixels"]), "iscrowd": 0,
                "segmentation": rle.encode(frame.instance == o["instance_id"]),
                "track_id": o["instance_id"], "actor_id": o["id"], "visibility": o["visibility"],
            })
        rec = frame.record
        image = {"file_name": f"images/{stem(frame)}.png", "width": rec["intrinsics"]["w"],
                 "height": rec["intrinsics"]["h"], "camera": rec["camera"], "timestamp": rec["timestamp"],
                 "frame_index": rec["index"]}
        return {image["file_name"]: png_bytes(frame.rgb)}, {"image": image, "annotations": anns}

    def final_files(self, plan: Plan, records: list[dict]) -> dict[str, bytes]:
        images, anns = [], []
        for r in records:
            image_id = r["n"] + 1
            images.append({"id": image_id, **r["extra"]["image"]})
            for a in r["extra"]["annotations"]:
                anns.append({"id": len(anns) + 1, "image_id": image_id, **a})
        cats = [{"id": v, "name": k, "supercategory": "actor"} for k, v in SEMANTIC_CLASSES.items() if v]
        doc = {"info": {"description": f"simrecon scenario {plan.name}", "version": "1.0",
                        "mask_encoding": "RLE, compressed string counts (pycocotools mask.encode)"},
               "licenses": [], "images": images, "annotations": anns, "categories": cats}
        return {"annotations.json": json_bytes(doc)}


class NerfstudioFormat:
    """A drive log / nerfstudio transforms.json of the renders (so they can retrain a NeRF)."""

    name = "nerfstudio"

    def check(self, plan: Plan) -> None:
        _need(plan, "nerfstudio", ("rgb",))

    def frame_files(self, plan: Plan, frame: ComposedFrame, n: int) -> tuple[dict[str, bytes], dict]:
        s = stem(frame)
        files = {f"images/{s}.png": png_bytes(frame.rgb)}
        if frame.depth is not None and "depth" in plan.outputs:
            mm = np.where(np.isfinite(frame.depth), np.round(frame.depth.astype(np.float64) * 1000.0), 0.0)
            mm = np.where(mm > 65535, 0, mm).astype(np.uint16)
            files[f"depth/{s}.png"] = png_bytes(mm)
        return files, {}

    def final_files(self, plan: Plan, records: list[dict]) -> dict[str, bytes]:
        frames = []
        for r in records:
            lab = r["labels"]
            s = stem(r["key"])
            fr = {"file_path": f"images/{s}.png", "transform_matrix": lab["camera_to_world"],
                  "camera": lab["camera"], "timestamp": lab["timestamp"]}
            fr.update({k: lab["intrinsics"][k] for k in ("fl_x", "fl_y", "cx", "cy", "w", "h")})
            if f"depth/{s}.png" in r["files"]:
                fr["depth_file_path"] = f"depth/{s}.png"
            frames.append(fr)
        times = [float(t) for t in plan.times]
        ego = [{"timestamp": t, "transform_matrix": plan.ego_fn(t).tolist()} for t in times]
        actors = []
        for a in plan.actors:
            track = [(t, a.pose_at(t)) for t in times]
            track = [(t, p) for t, p in track if p is not None]
            if not track:
                continue
            static = len(track) == len(times) and all(np.array_equal(track[0][1], p) for _, p in track)
            if static:
                track = track[:1]
            actors.append({"id": a.id, "class": a.cls, "size": [float(x) for x in a.size], "static": static,
                           "track": [{"timestamp": t, "transform_matrix": p.tolist()} for t, p in track]})
        doc = {"simrecon_version": 1, "camera_model": "PINHOLE", "world_up": [0.0, 0.0, 1.0],
               "depth_unit_scale_factor": 0.001, "source": f"simrecon export of scenario {plan.name}",
               "frames": frames, "ego": ego, "actors": actors}
        return {"transforms.json": json_bytes(doc)}


def get_format(name: str):
    table = {"simrecon": SimreconFormat, "kitti": KittiFormat, "coco": CocoFormat, "nerfstudio": NerfstudioFormat}
    if name == "mcap":  # imported here: it builds on this module
        from .mcap_format import McapFormat

        return McapFormat()
    if name not in table:
        raise ValueError(f"unknown export format {name!r} (formats: {', '.join(FORMATS)})")
    return table[name]()
