"""Render whole images from a SceneModel in memory-bounded chunks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..data.model import Intrinsics
from .model import Layout, RenderResult, SceneModel
from .rays import Rays, ShutterMotion, camera_directions, camera_rays, shutter_rays

# What renders a batch of rays: the model itself (the reference) or a fast.FastRenderer over it.
RayRenderer = Callable[[Rays, Layout | None], RenderResult]


@dataclass
class ImageOutput:
    rgb: np.ndarray  # [H, W, 3] float32 in [0, 1]
    depth: np.ndarray  # [H, W] float32 along the view axis; inf where the ray ends in the sky
    acc: np.ndarray  # [H, W] opacity
    instance: np.ndarray  # [H, W] int32: 0 background, k = placement k - 1


@torch.no_grad()
def render_image(model: SceneModel, c2w: np.ndarray, intr: Intrinsics, time: float, appearance: int,
                 near: float, placements: list[tuple[int, np.ndarray]] | None = None,
                 chunk: int = 8192, sky_acc: float = 0.5,
                 exposure: tuple[torch.Tensor, torch.Tensor] | None = None,
                 renderer: RayRenderer | None = None, shutter: ShutterMotion | None = None) -> ImageOutput:
    """Render camera ``c2w`` [4, 4] (OpenGL axes) at ``time``; ``exposure`` (gain [3], offset [3]) corrects
    the colour as the camera's exposure at that time (``FrameExposure.at``).

    ``placements`` (field index, box-to-world pose) overrides the logged actor layout; None uses
    the actors' tracks at ``time``. Peak memory is set by ``chunk`` rays, whatever the image size.
    ``renderer`` renders the rays (default: the model, the reference renderer). ``shutter``: a rolling-shutter
    frame, each pixel rendered from where the camera was at its own exposure (``c2w`` is the pose at ``time``).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    dirs = camera_directions(intr).reshape(-1, 3)
    n = dirs.shape[0]
    c2w_t = torch.as_tensor(np.asarray(c2w), dtype=torch.float32)[None]
    rgb = np.zeros((n, 3), np.float32)
    depth = np.zeros(n, np.float32)
    acc = np.zeros(n, np.float32)
    inst = np.zeros(n, np.int32)
    for s in range(0, n, chunk):
        d = dirs[s:s + chunk]
        m = d.shape[0]
        times = torch.full((m,), time, dtype=torch.float64)
        app = torch.full((m,), appearance, dtype=torch.long)
        if shutter is None:
            rays = camera_rays(c2w_t, d, times, app, near).to(device)
        else:
            rays = shutter_rays(c2w_t, d, times, app, near, shutter.motion.float()[None].expand(m, 6),
                                shutter.offsets[s:s + m]).to(device)
        layout: Layout | None = None
        if placements is not None:
            layout = model.fixed_layout(placements, m, device)
        out = (renderer or model)(rays, layout)
        a = out.acc.cpu().numpy()
        c = out.rgb if exposure is None else out.rgb * exposure[0].to(device) + exposure[1].to(device)
        rgb[s:s + m] = c.clamp(0, 1).cpu().numpy()
        z = (out.depth * rays.view_cos).cpu().numpy()
        depth[s:s + m] = np.where(a > sky_acc, z, np.inf)
        acc[s:s + m] = a
        inst[s:s + m] = out.instance.cpu().numpy()
    model.train(was_training)
    h, w = intr.h, intr.w
    return ImageOutput(rgb.reshape(h, w, 3), depth.reshape(h, w), acc.reshape(h, w), inst.reshape(h, w))
