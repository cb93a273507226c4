"""Lidar sweeps of a reconstructed scene: the sensor's rays through the scene's renderer (docs/lidar.md).

Each ray of the sweep is rendered like a camera ray (``SceneModel.forward``, or the fast renderer over it:
whichever the scene renders with); its expected distance is the range, its opacity says whether anything is
there. A ray returns when its opacity reaches ``min_opacity`` and its range lies in the sensor's
[min_range_m, max_range_m]; the rest are dropped. Intensity is not modelled yet (no learned intensity head):
the output's ``intensity`` is None, never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from ..data.lidar_model import LidarSensor
from ..data.scene_api import ActorPlacement, LidarOutput
from ..render.rays import Rays


@dataclass(frozen=True)
class NeuralLidarConfig:
    """How a neural scene turns rendered rays into returns."""

    min_opacity: float = 0.5  # opacity (0..1) a ray needs to return a point; below it the ray is dropped
    chunk: int = 0  # rays per batch; 0: the renderer's own batch size


def sensor_rays(sensor: LidarSensor, s2w: np.ndarray, time: float, near: float) -> Rays:
    """The sweep's rays (``LidarSensor.directions`` order) from one pose [4, 4] or one pose per ray [R, 4, 4]."""
    d = torch.as_tensor(sensor.directions(), dtype=torch.float32)
    pose = torch.as_tensor(np.asarray(s2w, dtype=np.float64), dtype=torch.float32)
    if pose.ndim == 2:
        pose = pose[None]
    elif pose.shape != (len(d), 4, 4):
        raise ValueError(f"per-ray sensor poses must be [{len(d)}, 4, 4], got {list(pose.shape)}")
    dirs = torch.einsum("rij,rj->ri", pose[:, :3, :3].expand(len(d), 3, 3), d)
    origins = pose[:, :3, 3].expand(len(d), 3).contiguous()
    r = len(d)
    return Rays(origins, dirs, torch.full((r,), float(time), dtype=torch.float64), torch.zeros(r, dtype=torch.long),
                torch.full((r,), float(near)), torch.ones(r))


@torch.no_grad()
def render_sweep(scene, sensor: LidarSensor, s2w: np.ndarray, time: float,
                 placements: Mapping[str, ActorPlacement], cfg: NeuralLidarConfig = NeuralLidarConfig()) -> LidarOutput:
    """Render ``sensor``'s sweep of the neural scene ``scene`` (a ``NeuralScene``) at ``s2w`` and ``time`` with
    exactly the actors in ``placements``."""
    model = scene.model
    renderer, default_chunk = scene.ray_renderer()
    chunk = cfg.chunk or default_chunk
    placed = [(scene.field_index(p.source), np.asarray(p.pose, dtype=float)) for p in placements.values()]
    rays = sensor_rays(sensor, s2w, time, scene.info.near)
    device = scene.device
    n = len(rays)
    rng = np.zeros(n, np.float32)
    acc = np.zeros(n, np.float32)
    inst = np.zeros(n, np.int32)
    was_training = model.training
    model.eval()
    for s in range(0, n, chunk):
        batch = rays[s:s + chunk].to(device)
        out = renderer(batch, model.fixed_layout(placed, len(batch), device))
        rng[s:s + len(batch)] = out.depth.cpu().numpy()
        acc[s:s + len(batch)] = out.acc.cpu().numpy()
        inst[s:s + len(batch)] = out.instance.cpu().numpy()
    model.train(was_training)
    hit = acc >= cfg.min_opacity
    returned = hit & (rng >= sensor.min_range_m) & (rng <= sensor.max_range_m)
    range_m = np.where(hit, rng, np.inf).astype(np.float32)
    return LidarOutput(sensor, range_m, returned, None, np.where(hit, inst, 0).astype(np.int32), list(placements))
