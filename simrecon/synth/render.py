"""Render the synthetic street at a time from any camera: RGB, depth, instance and semantic ids (lidar: lidar.py)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from ..data.model import Intrinsics
from .raycast import GROUND, Boxes, Hits, cast
from .scene import SEMANTIC, Street, SynthActor
from .shading import shade

CHUNK = 1 << 14  # rays per batch: [CHUNK, boxes, 3] temporaries stay around 100 MB at any image size


@dataclass
class World:
    """All boxes present at one time, with per-box material, colour, instance and semantic ids."""

    boxes: Boxes
    material: torch.Tensor  # [B]
    color: torch.Tensor  # [B, 3]
    instance: torch.Tensor  # [B] 0 = background, k = street.actors[k - 1]
    semantic: torch.Tensor  # [B]


def world_with(street: Street, placed: list[tuple[SynthActor, np.ndarray, int]]) -> World:
    """The static street plus each (actor, box-to-world pose, instance id) in ``placed``."""
    centers, rots, halves, mats, cols, inst, sem = [], [], [], [], [], [], []
    for b in street.static:
        c, s = np.cos(b.yaw), np.sin(b.yaw)
        centers.append(b.center)
        rots.append(np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]))
        halves.append(b.half)
        mats.append(b.material)
        cols.append(b.color)
        inst.append(0)
        sem.append(b.semantic)
    for actor, pose, k in placed:
        for part in actor.parts:
            centers.append(pose[:3, :3] @ part.center + pose[:3, 3])
            rots.append(pose[:3, :3])
            halves.append(part.half)
            mats.append(part.material)
            cols.append(part.color)
            inst.append(k)
            sem.append(SEMANTIC[actor.cls])
    f = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    boxes = Boxes(f(centers), f(rots), f(halves))
    return World(boxes, torch.as_tensor(mats), f(cols), torch.as_tensor(inst), torch.as_tensor(sem))


def world_at(street: Street, t: float, exclude: frozenset[str] = frozenset(), slack: float = 0.0) -> World:
    """The street at time ``t`` as logged; instance k is ``street.actors[k - 1]`` (``slack``: see
    ``SynthActor.pose_at``)."""
    placed = []
    for k, actor in enumerate(street.actors, start=1):
        pose = actor.pose_at(t, slack) if actor.id not in exclude else None
        if pose is not None:
            placed.append((actor, pose, k))
    return world_with(street, placed)


def trace(world: World, origins: np.ndarray, dirs: np.ndarray, seed: int) -> tuple[Hits, torch.Tensor, torch.Tensor]:
    """Cast rays (origins [N, 3], unit dirs [N, 3]) in chunks; returns hits, colour [N, 3], albedo [N, 3]."""
    o_all = torch.tensor(np.ascontiguousarray(origins), dtype=torch.float32)
    d_all = torch.tensor(np.ascontiguousarray(dirs), dtype=torch.float32)
    parts = []
    for s in range(0, o_all.shape[0], CHUNK):
        o, d = o_all[s:s + CHUNK], d_all[s:s + CHUNK]
        hits = cast(o, d, world.boxes)
        color, albedo = shade(hits, d, world.material, world.color, world.boxes.half, world.boxes.rotations, seed)
        parts.append((hits, color, albedo))
    hits = Hits(*(torch.cat([getattr(p[0], k) for p in parts]) for k in ("t", "prim", "point", "normal", "local")))
    return hits, torch.cat([p[1] for p in parts]), torch.cat([p[2] for p in parts])


@dataclass
class View:
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32, metres along the view axis; inf where sky
    instance: np.ndarray  # [H, W] uint16, 0 = background, k = street.actors[k - 1]
    semantic: np.ndarray  # [H, W] uint8 (scene.SEMANTIC)


def _subset(world: World, keep: torch.Tensor) -> World:
    b = world.boxes
    return World(Boxes(b.centers[keep], b.rotations[keep], b.half[keep]), world.material[keep],
                 world.color[keep], world.instance[keep], world.semantic[keep])


def _image_bounds(world: World, c2w: np.ndarray, intr: Intrinsics) -> torch.Tensor:
    """Per box, its projection's bounds [B, 4] (u0, u1, v0, v1) in pixels; boxes that reach behind the
    camera get unbounded extents, boxes fully behind it an empty range."""
    b = world.boxes
    signs = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32)
    corners = b.centers[:, None] + torch.einsum("bij,bkj->bki", b.rotations, signs[None] * b.half[:, None])
    w2c = torch.as_tensor(np.linalg.inv(c2w), dtype=torch.float32)
    cam = corners @ w2c[:3, :3].T + w2c[:3, 3]  # [B, 8, 3] OpenGL: visible points have z < 0
    depth = -cam[..., 2]
    safe = depth.clamp(min=1e-6)
    u = intr.fl_x * cam[..., 0] / safe + intr.cx
    v = -intr.fl_y * cam[..., 1] / safe + intr.cy
    bounds = torch.stack([u.amin(1), u.amax(1), v.amin(1), v.amax(1)], dim=1)
    straddle = (depth <= 1e-6).any(1)
    inf = float("inf")
    bounds[straddle] = torch.tensor([-inf, inf, -inf, inf])
    bounds[(depth <= 1e-6).all(1)] = torch.tensor([inf, -inf, inf, -inf])
    return bounds


TILE = 64  # pixels per tile side; each tile casts only against the boxes whose projection overlaps it
EDGE_THRESHOLD = 0.12  # max colour step (0-1, any channel) to a 4-neighbour that marks a pixel for supersampling


def _camera_dirs(intr: Intrinsics, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Unit camera-frame directions [..., 3] (OpenGL axes) through pixel coordinates u, v (pixel corners at
    integers); the synthetic cameras have no distortion."""
    d = np.stack([(u - intr.cx) / intr.fl_x, -(v - intr.cy) / intr.fl_y, -np.ones_like(u)], axis=-1)
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


def _subpixel_offsets(k: int) -> tuple[np.ndarray, np.ndarray]:
    """k*k sample positions in the unit pixel: the rotated grid for k = 2 (four distinct rows and columns,
    so near-horizontal and near-vertical edges get four steps, not two), the regular grid otherwise."""
    if k == 2:
        return np.array([0.375, 0.875, 0.125, 0.625]), np.array([0.125, 0.375, 0.625, 0.875])
    offs = (np.arange(k) + 0.5) / k
    return tuple(a.ravel() for a in np.meshgrid(offs, offs))


def _edges(rgb: np.ndarray, prim: np.ndarray) -> np.ndarray:
    """[H, W] bool: pixels whose colour or surface differs from a 4-neighbour's (both sides of each step)."""
    mark = np.zeros(prim.shape, bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        step = (np.abs(rgb[tuple(a)] - rgb[tuple(b)]).max(-1) > EDGE_THRESHOLD) | (prim[tuple(a)] != prim[tuple(b)])
        mark[tuple(a)] |= step
        mark[tuple(b)] |= step
    return mark


def render_camera(world: World, c2w: np.ndarray, intr: Intrinsics, seed: int, antialias: int = 1) -> View:
    """Render a pinhole camera (c2w [4, 4], OpenGL axes) with one ray through each pixel centre.

    With ``antialias`` k > 1, pixels on colour or surface edges are re-rendered as the mean of k x k rays
    over the pixel's area, as a camera integrates light over a pixel (edge-adaptive supersampling: smooth
    regions are already their own average). Depth, instance and semantic ids stay the centre ray's. Edges
    are found on an image one pixel larger on every side, so a pixel renders the same in a crop of the
    image as in the whole (the composer renders large frames in strips).
    """
    if antialias <= 1:
        return _render(world, c2w, intr, seed, 1)
    m = 1
    big = dataclasses.replace(intr, w=intr.w + 2 * m, h=intr.h + 2 * m, cx=intr.cx + m, cy=intr.cy + m)
    v = _render(world, c2w, big, seed, antialias)
    crop = (slice(m, m + intr.h), slice(m, m + intr.w))
    return View(v.rgb[crop], v.depth[crop], v.instance[crop], v.semantic[crop])


def _render(world: World, c2w: np.ndarray, intr: Intrinsics, seed: int, antialias: int) -> View:
    h, w = intr.h, intr.w
    dirs_cam = intr.pixel_rays()  # [H, W, 3]
    bounds = _image_bounds(world, c2w, intr)
    color_f = np.zeros((h, w, 3), np.float32)
    prim_img = np.zeros((h, w), np.int64)
    depth = np.zeros((h, w), np.float32)
    instance = np.zeros((h, w), np.uint16)
    semantic = np.zeros((h, w), np.uint8)
    tiles = []
    for v0 in range(0, h, TILE):
        for u0 in range(0, w, TILE):
            v1, u1 = min(v0 + TILE, h), min(u0 + TILE, w)
            keep = (bounds[:, 1] >= u0) & (bounds[:, 0] <= u1) & (bounds[:, 3] >= v0) & (bounds[:, 2] <= v1)
            sub = _subset(world, keep)
            tiles.append((v0, v1, u0, u1, sub))
            d_cam = dirs_cam[v0:v1, u0:u1].reshape(-1, 3)
            dirs = d_cam @ c2w[:3, :3].T
            hits, color, _ = trace(sub, np.broadcast_to(c2w[:3, 3], dirs.shape), dirs, seed)
            tile = (slice(v0, v1), slice(u0, u1))
            # Ray length -> depth along the view axis.
            depth[tile] = (hits.t.numpy() * -d_cam[:, 2]).reshape(v1 - v0, u1 - u0)
            color_f[tile] = color.numpy().reshape(v1 - v0, u1 - u0, 3)
            prim = hits.prim
            prim_img[tile] = prim.numpy().reshape(v1 - v0, u1 - u0)
            on_box = prim >= 0
            inst = torch.zeros_like(prim)
            sem = torch.zeros_like(prim)
            inst[on_box] = sub.instance[prim[on_box]]
            sem[on_box] = sub.semantic[prim[on_box]]
            sem[prim == GROUND] = SEMANTIC["road"]
            instance[tile] = inst.numpy().reshape(v1 - v0, u1 - u0)
            semantic[tile] = sem.numpy().reshape(v1 - v0, u1 - u0)
    if antialias > 1:
        edge = _edges(color_f, prim_img)
        ou, ov = _subpixel_offsets(antialias)  # [k*k] each
        for v0, v1, u0, u1, sub in tiles:
            vv, uu = np.nonzero(edge[v0:v1, u0:u1])
            if len(vv) == 0:
                continue
            vv, uu = vv + v0, uu + u0
            d_cam = _camera_dirs(intr, uu[:, None] + ou, vv[:, None] + ov).reshape(-1, 3)  # [M * k*k, 3]
            dirs = d_cam @ c2w[:3, :3].T
            _, color, _ = trace(sub, np.broadcast_to(c2w[:3, 3], dirs.shape), dirs, seed)
            color_f[vv, uu] = color.numpy().reshape(len(vv), -1, 3).mean(1)
    rgb = (color_f * 255.0 + 0.5).astype(np.uint8)
    return View(rgb, depth, instance, semantic)
