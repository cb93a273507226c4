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
from .scenario import Plan, PlannedActor, PlannedCamera

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


@dataclass
class _View:
    """One camera at one time, as the labelling steps of ``render_frame`` need it."""

    scene: RenderableScene
    c2w: np.ndarray
    intr: Intrinsics
    t: float
    tile: int


def _instance_maps(plan: Plan, inst_local: np.ndarray | None,
                   names: list[str]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(instance ids [H, W] uint16 of the plan's actors, semantic ids [H, W] uint8) from the scene's local ids."""
    if inst_local is None:
        return None, None
    ids = {a.id: a.instance_id for a in plan.actors}
    lut = np.zeros(len(names) + 1, np.uint16)
    lut[1:] = [ids[name] for name in names]
    if inst_local.size and (inst_local.min() < 0 or inst_local.max() > len(names)):
        raise RuntimeError(f"the scene returned instance ids outside 0..{len(names)}")
    instance = lut[inst_local]
    sem_lut = np.zeros(len(plan.actors) + 1, np.uint8)
    sem_lut[1:] = [semantic_id(a.cls) for a in plan.actors]
    return instance, sem_lut[instance]


def _unoccluded(method: str, view: _View, a: PlannedActor, placement: ActorPlacement, clipped, visible: int,
                corners_cam: np.ndarray) -> tuple[int | None, int]:
    """(pixels the actor would cover with nothing in front of it, or None where unknown; render calls made)."""
    if method == "render" and visible > 0 and clipped is not None:
        intr = view.intr
        u0 = max(0, int(np.floor(clipped[0])) - ALONE_MARGIN)
        v0 = max(0, int(np.floor(clipped[1])) - ALONE_MARGIN)
        u1 = min(intr.w, int(np.ceil(clipped[2])) + ALONE_MARGIN)
        v1 = min(intr.h, int(np.ceil(clipped[3])) + ALONE_MARGIN)
        _, _, ai, _, calls = render_tiled(view.scene, view.c2w, crop_intrinsics(intr, u0, v0, u1, v1), view.t,
                                          {a.id: placement}, ["instance"], view.tile)
        return int((ai == 1).sum()), calls
    if method == "box":
        return hull_pixel_count(corners_cam, view.intr), 0
    if method == "render":
        return (0 if visible == 0 else None), 0
    return None, 0


def _visibility(method: str, visible: int, unoccluded: int | None) -> float | None:
    if method == "none":
        return None
    if unoccluded is None or (unoccluded == 0 and visible == 0):
        return 0.0 if visible == 0 else None
    return float(min(1.0, visible / max(unoccluded, visible)))


def _box_records(plan: Plan, view: _View, placed: list[tuple[PlannedActor, np.ndarray]],
                 placements: dict[str, ActorPlacement], instance: np.ndarray) -> tuple[list[dict], int]:
    """The label record of every actor in view or in the image (sorted by instance id), and render calls made."""
    counts, mboxes = mask_boxes(instance, len(plan.actors))
    method = plan.spec.visibility
    w2c = invert_pose(view.c2w)
    objects, calls = [], 0
    for a, pose in placed:
        corners_cam = box_corners(w2c @ pose, a.size)
        clipped, truncation = image_box(projected_hull(corners_cam, view.intr), view.intr.w, view.intr.h)
        visible = int(counts[a.instance_id])
        if clipped is None and visible == 0:
            continue
        box_cam = w2c @ pose
        unoccluded, c = _unoccluded(method, view, a, placements[a.id], clipped, visible, corners_cam)
        calls += c
        objects.append({
            "id": a.id, "instance_id": a.instance_id, "source": a.source, "class": a.cls,
            "semantic_id": semantic_id(a.cls), "size": [float(x) for x in a.size],
            "box_world": {"pose": _pose_list(pose), "center": [float(x) for x in pose[:3, 3]]},
            "box_camera": {"pose": _pose_list(box_cam), "center": [float(x) for x in box_cam[:3, 3]],
                           "depth": float(-box_cam[2, 3])},
            "box_2d": [int(x) for x in mboxes[a.instance_id]] if visible else None,
            "projected_box_2d": None if clipped is None else [float(x) for x in clipped],
            "truncation": truncation,
            "visible_pixels": visible,
            "unoccluded_pixels": unoccluded,
            "visibility": _visibility(method, visible, unoccluded),
        })
    objects.sort(key=lambda r: r["instance_id"])
    return objects, calls


def render_frame(plan: Plan, camera: str, k: int, scene: RenderableScene | None = None) -> ComposedFrame:
    """Render camera ``camera`` at ``plan.times[k]`` with labels."""
    cam: PlannedCamera = plan.camera(camera)
    t = float(plan.times[k])
    ego = plan.ego_fn(t)
    view = _View(scene or plan.scene, ego @ cam.cam_to_vehicle, cam.intrinsics, t, plan.spec.tile_pixels)
    placed = [(a, pose) for a in plan.actors for pose in [a.pose_at(t)] if pose is not None]
    placements = {a.id: ActorPlacement(a.source, pose) for a, pose in placed}
    want = set(plan.outputs)
    need_inst = bool(want & {"instance", "semantic", "boxes"})
    render_outputs = [o for o in ("rgb", "depth") if o in want] + (["instance"] if need_inst else [])
    rgb_f, depth, inst_local, names, calls = render_tiled(view.scene, view.c2w, view.intr, t, placements,
                                                          render_outputs, view.tile)
    instance, semantic = _instance_maps(plan, inst_local, names)
    objects = []
    if "boxes" in want:
        objects, more = _box_records(plan, view, placed, placements, instance)
        calls += more
    record = {
        "scenario": plan.name, "camera": camera, "index": k, "timestamp": t,
        "intrinsics": {**view.intr.to_json(), "camera_model": "PINHOLE"},
        "camera_to_world": _pose_list(view.c2w), "ego_to_world": _pose_list(ego),
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
