"""The composer: render a scenario's frames through the RenderableScene contract, with labels.

Per camera and timestamp: RGB (uint8), depth (float32 metres along the view axis, inf = sky), instance ids
(uint16, scenario-wide: k = plan.actors[k - 1]), semantic ids (uint8, ``labels.SEMANTIC_CLASSES``) and a
record with the camera, ego and every actor's 3D box (world and camera frames), its 2D box from the
instance mask and its visibility.

Memory: a frame is rendered in horizontal strips of at most ``tile_pixels`` pixels (a strip is the same
camera with ``cy`` shifted, so pixels are exactly those of the full frame); only uint8/uint16/float32
full-frame arrays are kept (about 17 bytes per pixel: 35 MB at 1920x1080).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..data.geometry import invert_pose
from ..data.model import Intrinsics
from ..data.scene_api import ActorPlacement, RenderableScene
from .labels import SEMANTIC_CLASSES, box_corners, hull_pixel_count, image_box, mask_boxes, projected_hull, semantic_id
from .scenario import Plan, PlannedCamera

ALONE_MARGIN = 2  # pixels added around the projected box when rendering an actor alone


@dataclass
class ComposedFrame:
    camera: str
    index: int  # time index into plan.times
    time: float
    rgb: np.ndarray | None  # [H, W, 3] uint8
    depth: np.ndarray | None  # [H, W] float32
    instance: np.ndarray | None  # [H, W] uint16
    semantic: np.ndarray | None  # [H, W] uint8
    record: dict  # JSON-ready labels (docs/export.md "frame record")
    renders: int = 0  # scene.render calls made for this frame


def crop_intrinsics(intr: Intrinsics, u0: int, v0: int, u1: int, v1: int) -> Intrinsics:
    """The sub-window [u0, u1) x [v0, v1) of ``intr`` as a camera of its own (same pixels, same rays)."""
    return Intrinsics(intr.fl_x, intr.fl_y, intr.cx - u0, intr.cy - v0, u1 - u0, v1 - v0, model="PINHOLE")


def render_tiled(scene: RenderableScene, c2w: np.ndarray, intr: Intrinsics, time: float,
                 placements: Mapping[str, ActorPlacement], outputs: Sequence[str], tile_pixels: int):
    """Render in horizontal strips of at most ``tile_pixels``; returns (rgb, depth, instance, names, calls)."""
    h, w = intr.h, intr.w
    rows = max(1, tile_pixels // max(w, 1))
    rgb = np.zeros((h, w, 3), np.float32) if "rgb" in outputs else None
    depth = np.zeros((h, w), np.float32) if "depth" in outputs else None
    inst = np.zeros((h, w), np.int32) if "instance" in outputs else None
    names: list[str] = list(placements)
    calls = 0
    for v0 in range(0, h, rows):
        v1 = min(h, v0 + rows)
        sub = intr if (v0 == 0 and v1 == h) else crop_intrinsics(intr, 0, v0, w, v1)
        out = scene.render(c2w, sub, time, placements, tuple(outputs))
        calls += 1
        names = list(out.instance_names)
        if rgb is not None:
            rgb[v0:v1] = out.rgb
        if depth is not None:
            depth[v0:v1] = out.depth
        if inst is not None:
            inst[v0:v1] = out.instance
    return rgb, depth, inst, names, calls


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _pose_list(m: np.ndarray) -> list[list[float]]:
    return [[float(x) for x in row] for row in m]


def render_frame(plan: Plan, camera: str, k: int, scene: RenderableScene | None = None) -> ComposedFrame:
    """Render camera ``camera`` at ``plan.times[k]`` with labels."""
    scene = scene or plan.scene
    cam: PlannedCamera = plan.camera(camera)
    intr = cam.intrinsics
    t = float(plan.times[k])
    ego = plan.ego_fn(t)
    c2w = ego @ cam.cam_to_vehicle
    w2c = invert_pose(c2w)
    placed = []
    for a in plan.actors:
        pose = a.pose_at(t)
        if pose is not None:
            placed.append((a, pose))
    placements = {a.id: ActorPlacement(a.source, pose) for a, pose in placed}
    want = set(plan.outputs)
    need_inst = bool(want & {"instance", "semantic", "boxes"})
    render_outputs = [o for o in ("rgb", "depth") if o in want] + (["instance"] if need_inst else [])
    tile = plan.spec.tile_pixels
    rgb_f, depth, inst_local, names, calls = render_tiled(scene, c2w, intr, t, placements, render_outputs, tile)

    n = len(plan.actors)
    instance = semantic = None
    if inst_local is not None:
        ids = {a.id: a.instance_id for a in plan.actors}
        lut = np.zeros(len(names) + 1, np.uint16)
        lut[1:] = [ids[name] for name in names]
        if inst_local.size and (inst_local.min() < 0 or inst_local.max() > len(names)):
            raise RuntimeError(f"the scene returned instance ids outside 0..{len(names)}")
        instance = lut[inst_local]
        sem_lut = np.zeros(n + 1, np.uint8)
        sem_lut[1:] = [semantic_id(a.cls) for a in plan.actors]
        semantic = sem_lut[instance]

    objects = []
    if "boxes" in want:
        counts, mboxes = mask_boxes(instance, n)
        method = plan.spec.visibility
        for a, pose in placed:
            corners_cam = box_corners(w2c @ pose, a.size)
            clipped, truncation = image_box(projected_hull(corners_cam, intr), intr.w, intr.h)
            visible = int(counts[a.instance_id])
            if clipped is None and visible == 0:
                continue
            box_cam = w2c @ pose
            rec = {
                "id": a.id, "instance_id": a.instance_id, "source": a.source, "class": a.cls,
                "semantic_id": semantic_id(a.cls), "size": [float(x) for x in a.size],
                "box_world": {"pose": _pose_list(pose), "center": [float(x) for x in pose[:3, 3]]},
                "box_camera": {"pose": _pose_list(box_cam), "center": [float(x) for x in box_cam[:3, 3]],
                               "depth": float(-box_cam[2, 3])},
                "box_2d": [int(x) for x in mboxes[a.instance_id]] if visible else None,
                "projected_box_2d": None if clipped is None else [float(x) for x in clipped],
                "truncation": truncation,
                "visible_pixels": visible,
            }
            unoccluded = None
            if method == "render" and visible > 0 and clipped is not None:
                u0 = max(0, int(np.floor(clipped[0])) - ALONE_MARGIN)
                v0 = max(0, int(np.floor(clipped[1])) - ALONE_MARGIN)
                u1 = min(intr.w, int(np.ceil(clipped[2])) + ALONE_MARGIN)
                v1 = min(intr.h, int(np.ceil(clipped[3])) + ALONE_MARGIN)
                alone = {a.id: placements[a.id]}
                _, _, ai, _, c = render_tiled(scene, c2w, crop_intrinsics(intr, u0, v0, u1, v1), t, alone,
                                              ["instance"], tile)
                calls += c
                unoccluded = int((ai == 1).sum())
            elif method == "box":
                unoccluded = hull_pixel_count(corners_cam, intr)
            elif method == "render":
                unoccluded = 0 if visible == 0 else None
            rec["unoccluded_pixels"] = unoccluded
            if method == "none":
                rec["visibility"] = None
            elif unoccluded is None or (unoccluded == 0 and visible == 0):
                rec["visibility"] = 0.0 if visible == 0 else None
            else:
                rec["visibility"] = float(min(1.0, visible / max(unoccluded, visible)))
            objects.append(rec)
        objects.sort(key=lambda r: r["instance_id"])

    record = {
        "scenario": plan.name, "camera": camera, "index": k, "timestamp": t,
        "intrinsics": {**intr.to_json(), "camera_model": "PINHOLE"},
        "camera_to_world": _pose_list(c2w), "ego_to_world": _pose_list(ego),
        "camera_to_vehicle": _pose_list(cam.cam_to_vehicle),
        "objects": objects,
    }
    rgb = to_uint8(rgb_f) if rgb_f is not None else None
    return ComposedFrame(camera, k, t, rgb, depth, instance if "instance" in want or need_inst else None,
                         semantic, record, calls)


def composition(plan: Plan) -> dict:
    """What the composed scene holds (written as composition.json): actors, ids, cameras, times."""
    return {
        "scenario": plan.name,
        "description": plan.spec.description,
        "scene": str(plan.scene_path),
        "times": [float(t) for t in plan.times],
        "cameras": [{"name": c.name, "intrinsics": {**c.intrinsics.to_json(), "camera_model": "PINHOLE"},
                     "camera_to_vehicle": _pose_list(c.cam_to_vehicle), "logged": c.logged} for c in plan.cameras],
        "semantic_classes": SEMANTIC_CLASSES,
        "actors": [{"id": a.id, "instance_id": a.instance_id, "source": a.source, "class": a.cls,
                    "semantic_id": semantic_id(a.cls), "size": [float(x) for x in a.size],
                    "inserted": a.inserted, "edits": a.edits} for a in plan.actors],
        "removed": plan.removed,
        "conventions": {
            "camera_axes": "OpenGL: x right, y up, looking along -z (as in the drive log)",
            "box_frame": "origin at the box centre, x forward, y left, z up; size = length, width, height",
            "pixels": "pixel (u, v) covers [u, u+1) x [v, v+1); box_2d = [u0, v0, u1, v1] in whole pixels",
            "depth": "float32 metres along the view axis, inf where nothing is hit (sky)",
            "instance": "uint16: 0 background, k = actors[instance_id == k]",
            "semantic": "uint8: semantic_classes; background (anything that is not an actor) is 0",
        },
    }
