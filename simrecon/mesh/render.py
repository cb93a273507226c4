"""Mesh assets inside any RenderableScene: ray cast the meshes, composite with the base render by depth.

``SceneWithAssets(base, assets)`` is itself a RenderableScene. Placements whose ``source`` is
``asset:NAME`` are drawn from ``assets[NAME]`` (posed box-to-world like any actor); all others go to
``base``. Per pixel the nearest surface wins: the base scene's depth (along the view axis; inf where sky)
against each mesh's ray-cast depth, so a mesh car behind a reconstructed car is hidden by it and one in
front hides it. Instance ids follow the placements' order, whichever scene drew them.

Meshes are drawn with their baked vertex colours, unlit (the colours of an extracted mesh already hold the
scene's lighting), interpolated over each triangle.

Lidar (``render_lidar``, when the base scene renders lidar): each ray's nearest surface wins the same way, by
range. A mesh hit within the sensor's range limits returns a point of its placement; one nearer than the minimum
range occludes what is behind it and returns nothing. Assets carry no lidar material, so a mesh return's
intensity is its baked colour's mean (0..1) times the cosine of the incidence angle (a diffuse surface), and
only when the base scene models intensity at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..data.lidar_model import LidarSensor
from ..data.model import DriveLog, Intrinsics
from ..data.scene_api import OUTPUTS, ActorPlacement, LidarOutput, LidarScene, RenderOutput
from .assets import Asset

ASSET_PREFIX = "asset:"


def is_asset_source(source: str) -> bool:
    return isinstance(source, str) and source.startswith(ASSET_PREFIX)


def asset_name(source: str) -> str:
    return source[len(ASSET_PREFIX):]


def _camera_dirs(intr: Intrinsics) -> np.ndarray:
    """Unit ray directions [H*W, 3] in OpenGL camera axes through pixel centres (distortion removed,
    exactly as the neural renderer casts them)."""
    from ..render.rays import camera_directions

    return camera_directions(intr).reshape(-1, 3).numpy().astype(np.float64)


class SceneWithAssets:
    """A RenderableScene: ``base`` plus mesh ``assets`` (name -> Asset) for ``asset:NAME`` placements."""

    def __init__(self, base, assets: Mapping[str, Asset], raycast_backend: str = "auto"):
        self.base = base
        self.assets = dict(assets)
        self.raycast_backend = raycast_backend

    @property
    def log(self) -> DriveLog:
        return self.base.log

    def __getattr__(self, name):  # everything else (scene_dir, info, ...) is the base scene's
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def asset_for(self, source: str) -> Asset:
        name = asset_name(source)
        if name not in self.assets:
            known = ", ".join(sorted(self.assets)) or "none"
            raise KeyError(f"no asset {name!r} (assets: {known})")
        return self.assets[name]

    def render(self, c2w: np.ndarray, intrinsics: Intrinsics, time: float,
               placements: Mapping[str, ActorPlacement], outputs: Sequence[str] = OUTPUTS) -> RenderOutput:
        names = list(placements)
        mesh_keys = [k for k in names if is_asset_source(placements[k].source)]
        for k in mesh_keys:
            self.asset_for(placements[k].source)  # unknown asset: fail before rendering anything
        base_keys = [k for k in names if k not in mesh_keys]
        base_pl = {k: placements[k] for k in base_keys}
        want = tuple(outputs)
        if not mesh_keys:
            return self.base.render(c2w, intrinsics, time, base_pl, want)
        base_out = self.base.render(c2w, intrinsics, time, base_pl,
                                    tuple(o for o in OUTPUTS if o in want or o == "depth"))
        h, w = intrinsics.h, intrinsics.w
        depth = np.asarray(base_out.depth, np.float32).reshape(h, w).copy()
        rgb = np.asarray(base_out.rgb, np.float32).copy() if "rgb" in want else None
        inst = None
        if "instance" in want:
            # Base instance k refers to its own placements (base_out.instance_names): map to ours.
            lut = np.zeros(len(base_out.instance_names) + 1, np.int32)
            lut[1:] = [names.index(n) + 1 for n in base_out.instance_names]
            inst = lut[np.asarray(base_out.instance, np.int64)]
        c2w = np.asarray(c2w, dtype=np.float64)
        d_cam = _camera_dirs(intrinsics)  # [N, 3]
        view_cos = -d_cam[:, 2]
        d_world = d_cam @ c2w[:3, :3].T
        origin = c2w[:3, 3]
        flat_depth = depth.reshape(-1)
        for k in mesh_keys:
            asset = self.asset_for(placements[k].source)
            pose = np.asarray(placements[k].pose, dtype=np.float64)
            rot, trans = pose[:3, :3], pose[:3, 3]
            # Rays into the asset's box frame (rigid pose: distances are unchanged).
            o_l = np.broadcast_to((origin - trans) @ rot, d_world.shape)
            d_l = d_world @ rot
            hits = asset.raycaster(self.raycast_backend).cast(o_l, d_l)
            z = hits.t.astype(np.float64) * view_cos
            win = np.isfinite(z) & (z > 0) & (z < flat_depth)
            if not win.any():
                continue
            idx = np.nonzero(win)[0]
            flat_depth[idx] = z[idx]
            if rgb is not None:
                f = asset.faces[hits.face[idx]]  # [M, 3]
                u, v = hits.uv[idx, 0:1], hits.uv[idx, 1:2]
                c = asset.colors.astype(np.float32) / 255.0
                col = (1 - u - v) * c[f[:, 0]] + u * c[f[:, 1]] + v * c[f[:, 2]]
                rgb.reshape(-1, 3)[idx] = col
            if inst is not None:
                inst.reshape(-1)[idx] = names.index(k) + 1
        return RenderOutput(
            rgb=rgb if "rgb" in want else None,
            depth=depth if "depth" in want else None,
            instance=inst.astype(np.int32) if inst is not None else None,
            instance_names=names,
        )

    def render_lidar(self, sensor: LidarSensor, s2w: np.ndarray, time: float,
                     placements: Mapping[str, ActorPlacement]) -> LidarOutput:
        """The base scene's sweep with the mesh placements ray cast into it (nearest range wins)."""
        if not isinstance(self.base, LidarScene):
            raise TypeError(f"the scene {type(self.base).__name__} does not render lidar")
        names = list(placements)
        mesh_keys = [k for k in names if is_asset_source(placements[k].source)]
        for k in mesh_keys:
            self.asset_for(placements[k].source)  # unknown asset: fail before rendering anything
        base_pl = {k: v for k, v in placements.items() if k not in mesh_keys}
        out = self.base.render_lidar(sensor, s2w, time, base_pl)
        lut = np.zeros(len(out.instance_names) + 1, np.int32)
        lut[1:] = [names.index(n) + 1 for n in out.instance_names]
        rng, returned = out.range_m.astype(np.float32).copy(), out.returned.copy()
        inst = lut[out.instance]
        inten = out.intensity.copy() if out.intensity is not None else None
        origins, dirs = _sweep_rays(sensor, s2w)
        for k in mesh_keys:
            hit = _cast_placement(self.asset_for(placements[k].source), placements[k].pose, origins, dirs,
                                  self.raycast_backend)
            near = np.isfinite(hit.t) & (hit.t < rng)  # nearer than whatever the base scene put on the ray
            rng[near] = hit.t[near]
            returned[near] = (hit.t[near] >= sensor.min_range_m) & (hit.t[near] <= sensor.max_range_m)
            inst[near] = names.index(k) + 1
            if inten is not None:
                inten[near] = np.where(returned[near], hit.intensity[near], 0.0)
        return LidarOutput(sensor, rng, returned, inten, inst, names)


def _sweep_rays(sensor: LidarSensor, s2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World origins [R, 3] and unit directions [R, 3] of the sweep's rays (one pose, or one per ray)."""
    pose = np.asarray(s2w, dtype=np.float64)
    d = sensor.directions()
    if pose.ndim == 2:
        return np.broadcast_to(pose[:3, 3], d.shape), d @ pose[:3, :3].T
    return pose[:, :3, 3], np.einsum("rij,rj->ri", pose[:, :3, :3], d)


@dataclass
class _MeshHits:
    t: np.ndarray  # [R] metres along each ray (inf: no hit)
    intensity: np.ndarray  # [R] 0..1 (0 where no hit)


def _cast_placement(asset: Asset, pose: np.ndarray, origins: np.ndarray, dirs: np.ndarray,
                    backend: str) -> _MeshHits:
    """Range and diffuse intensity of each ray against ``asset`` placed box-to-world at ``pose``."""
    pose = np.asarray(pose, dtype=np.float64)
    rot, trans = pose[:3, :3], pose[:3, 3]
    d_l = dirs @ rot  # rigid pose: ranges are unchanged in the box frame
    hits = asset.raycaster(backend).cast((origins - trans) @ rot, d_l)
    t = np.where(np.isfinite(hits.t) & (hits.t > 0), hits.t, np.inf).astype(np.float32)
    inten = np.zeros(len(t), np.float32)
    idx = np.nonzero(np.isfinite(t))[0]
    if len(idx):
        f = asset.faces[hits.face[idx]]
        v = asset.vertices.astype(np.float64)
        normal = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(min=1e-12)
        cos = np.abs((normal * d_l[idx]).sum(1))
        u, w = hits.uv[idx, 0:1], hits.uv[idx, 1:2]
        c = asset.colors.astype(np.float64) / 255.0
        albedo = ((1 - u - w) * c[f[:, 0]] + u * c[f[:, 1]] + w * c[f[:, 2]]).mean(1)
        inten[idx] = (albedo * cos).astype(np.float32)
    return _MeshHits(t, inten)
