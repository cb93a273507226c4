"""Mesh assets inside any RenderableScene: ray cast the meshes, composite with the base render by depth.

``SceneWithAssets(base, assets)`` is itself a RenderableScene. Placements whose ``source`` is
``asset:NAME`` are drawn from ``assets[NAME]`` (posed box-to-world like any actor); all others go to
``base``. Per pixel the nearest surface wins: the base scene's depth (along the view axis; inf where sky)
against each mesh's ray-cast depth, so a mesh car behind a reconstructed car is hidden by it and one in
front hides it. Instance ids follow the placements' order, whichever scene drew them.

Meshes are drawn with their baked vertex colours, unlit (the colours of an extracted mesh already hold the
scene's lighting), interpolated over each triangle.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..data.model import DriveLog, Intrinsics
from ..data.scene_api import OUTPUTS, ActorPlacement, RenderOutput
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
