"""Labels that are right by construction: semantic classes, 2D boxes from instance masks, 3D box geometry.

Pixel convention (docs/drive-log.md): pixel (u, v) covers [u, u+1) x [v, v+1); a 2D box
``[u0, v0, u1, v1]`` is in these continuous coordinates, so a mask box spans whole pixels.
"""

from __future__ import annotations

import numpy as np

from ..data.model import Intrinsics

# The composer's semantic classes. Background (everything that is not an actor) is 0: a reconstructed
# scene knows actors but has no semantic labels for the static world.
SEMANTIC_CLASSES = {"background": 0, "car": 1, "truck": 2, "bus": 3, "pedestrian": 4, "cyclist": 5, "other": 6}
_ALIASES = {"vehicle": "car", "van": "car", "person": "pedestrian", "bicycle": "cyclist", "motorcycle": "cyclist",
            "trailer": "truck"}
NEAR = 1e-3  # metres: box parts closer than this to the camera plane are clipped away before projecting

_SIGNS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]


def semantic_class(cls: str) -> str:
    """The composer's class name for an actor class (unknown classes are ``other``)."""
    c = cls.lower()
    c = _ALIASES.get(c, c)
    return c if c in SEMANTIC_CLASSES and c != "background" else "other"


def semantic_id(cls: str) -> int:
    return SEMANTIC_CLASSES[semantic_class(cls)]


def box_corners(pose: np.ndarray, size: np.ndarray) -> np.ndarray:
    """The 8 corners [8, 3] of a box (pose box-to-frame, size length/width/height) in that frame.

    Corner order: index bits (x, y, z) from most to least significant, - before +.
    """
    local = _SIGNS * (np.asarray(size, dtype=float) / 2.0)
    return local @ pose[:3, :3].T + pose[:3, 3]


def clipped_points(corners_cam: np.ndarray) -> np.ndarray:
    """The box's corners in front of the camera plus the points where its edges cross the near plane
    (OpenGL camera axes: in front = z < -NEAR). Their projections bound the box's image."""
    depth = -corners_cam[:, 2]
    pts = [corners_cam[depth > NEAR]]
    for a, b in _EDGES:
        da, db = depth[a] - NEAR, depth[b] - NEAR
        if (da > 0) != (db > 0) and da != db:
            s = da / (da - db)
            pts.append((corners_cam[a] + s * (corners_cam[b] - corners_cam[a]))[None])
    return np.concatenate(pts, axis=0) if pts else np.zeros((0, 3))


def projected_hull(corners_cam: np.ndarray, intr: Intrinsics) -> np.ndarray | None:
    """Convex hull [K, 2] (pixels) of a box's projection, or None when the box is behind the camera."""
    pts = clipped_points(corners_cam)
    if len(pts) == 0:
        return None
    uv, _ = intr.project(pts)
    return convex_hull(uv)


def projected_box(corners_cam: np.ndarray, intr: Intrinsics) -> np.ndarray | None:
    """Unclipped image bounds [u0, v0, u1, v1] of a box's projection, or None when it is behind the camera."""
    hull = projected_hull(corners_cam, intr)
    if hull is None:
        return None
    return np.array([hull[:, 0].min(), hull[:, 1].min(), hull[:, 0].max(), hull[:, 1].max()])


def polygon_area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_polygon(poly: np.ndarray, w: int, h: int) -> np.ndarray:
    """Convex polygon [K, 2] clipped to the image rectangle [0, w] x [0, h] (Sutherland-Hodgman)."""
    out = [tuple(p) for p in poly]
    for axis, bound, keep_less in ((0, 0.0, False), (0, float(w), True), (1, 0.0, False), (1, float(h), True)):
        if not out:
            break
        src, out = out, []
        for i, cur in enumerate(src):
            prev = src[i - 1]
            inside_c = cur[axis] <= bound if keep_less else cur[axis] >= bound
            inside_p = prev[axis] <= bound if keep_less else prev[axis] >= bound
            if inside_c != inside_p:
                s = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + s * (cur[0] - prev[0]), prev[1] + s * (cur[1] - prev[1])))
            if inside_c:
                out.append(cur)
    return np.array(out, dtype=float).reshape(-1, 2)


def image_box(hull: np.ndarray | None, w: int, h: int) -> tuple[np.ndarray | None, float]:
    """(bounds [u0, v0, u1, v1] of the part of ``hull`` inside the image or None, truncation): truncation is
    the fraction of the hull's area outside the image (1 when none of it is inside)."""
    if hull is None or len(hull) < 3:
        return None, 1.0
    inside = clip_polygon(hull, w, h)
    area = polygon_area(hull)
    if len(inside) < 3 or polygon_area(inside) <= 0:
        return None, 1.0
    box = np.array([inside[:, 0].min(), inside[:, 1].min(), inside[:, 0].max(), inside[:, 1].max()])
    return box, float(np.clip(1.0 - polygon_area(inside) / area, 0.0, 1.0)) if area > 0 else 0.0


def clip_box(box: np.ndarray, w: int, h: int) -> np.ndarray | None:
    """``box`` clipped to the image, or None when nothing of it is inside."""
    c = np.array([max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(w)), min(box[3], float(h))])
    return c if c[2] > c[0] and c[3] > c[1] else None


def mask_boxes(instance: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per instance id 1..n: pixel count [n+1] and box [n+1, 4] (u0, v0, u1, v1), -1 where absent.

    One pass over the image (O(H W)), independent of the number of instances.
    """
    counts = np.bincount(instance.ravel(), minlength=n + 1)[: n + 1]
    boxes = np.full((n + 1, 4), -1, dtype=np.int64)
    h, w = instance.shape
    for axis, (lo, hi) in ((0, (0, 2)), (1, (1, 3))):  # axis 0: columns -> u; axis 1: rows -> v
        # any-of-id per column (or row): [n+1, W] via bincount on (id, coord) pairs
        coord = np.broadcast_to(np.arange(w)[None, :], (h, w)) if axis == 0 else np.broadcast_to(
            np.arange(h)[:, None], (h, w))
        size = w if axis == 0 else h
        flat = instance.ravel().astype(np.int64) * size + coord.ravel()
        present = np.bincount(flat, minlength=(n + 1) * size)[: (n + 1) * size].reshape(n + 1, size) > 0
        has = present.any(axis=1)
        first = np.argmax(present, axis=1)
        last = size - 1 - np.argmax(present[:, ::-1], axis=1)
        boxes[has, lo] = first[has]
        boxes[has, hi] = last[has] + 1
    boxes[counts == 0] = -1
    return counts, boxes


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Counter-clockwise hull [K, 2] of 2D points (Andrew's monotone chain)."""
    pts = sorted(map(tuple, np.round(points, 9)))
    if len(pts) <= 2:
        return np.array(pts)

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def hull_pixel_count(corners_cam: np.ndarray, intr: Intrinsics) -> int:
    """Pixels of the image whose centres fall inside the projection of the box (its convex hull)."""
    pts = clipped_points(corners_cam)
    if len(pts) < 3:
        return 0
    uv, _ = intr.project(pts)
    hull = convex_hull(uv)
    if len(hull) < 3:
        return 0
    box = clip_box(np.array([hull[:, 0].min(), hull[:, 1].min(), hull[:, 0].max(), hull[:, 1].max()]),
                   intr.w, intr.h)
    if box is None:
        return 0
    u0, v0 = int(np.floor(box[0])), int(np.floor(box[1]))
    u1, v1 = int(np.ceil(box[2])), int(np.ceil(box[3]))
    uu, vv = np.meshgrid(np.arange(u0, u1) + 0.5, np.arange(v0, v1) + 0.5)
    inside = np.ones(uu.shape, bool)
    for i in range(len(hull)):
        a, b = hull[i], hull[(i + 1) % len(hull)]
        inside &= (b[0] - a[0]) * (vv - a[1]) - (b[1] - a[1]) * (uu - a[0]) >= 0
    return int(inside.sum())
