"""The synthetic street seen by rolling-shutter cameras: every image line rendered at its own exposure time.

Exact ground truth for ``data.shutter``: line v of a frame taken at ``t`` is exposed at ``t + offsets[v]`` (the
frame's timestamp is the middle of the readout), so it is rendered with the ego and every actor where they were
then. The street's ego and actors move at constant velocity, so poses before the first or after the last
timestamp continue that motion exactly.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..data.model import Intrinsics
from ..data.shutter import RollingShutter
from .render import View, render_camera, world_at
from .scene import Street


def ego_pose_at(street: Street, t: float) -> np.ndarray:
    """The ego's vehicle-to-world pose [4, 4] at any time ``t`` (linear in time: the end segments extrapolate)."""
    times, poses = street.ego_times, street.ego_poses
    i = int(np.clip(np.searchsorted(times, t, side="right"), 1, len(times) - 1))
    a = (t - times[i - 1]) / (times[i] - times[i - 1])
    pose = poses[i - 1].copy()
    pose[:3, 3] = (1 - a) * poses[i - 1][:3, 3] + a * poses[i][:3, 3]
    return pose


def render_rolling(street: Street, cam_to_vehicle: np.ndarray, intr: Intrinsics, t: float, shutter: RollingShutter,
                   seed: int, antialias: int) -> View:
    """The camera mounted at ``cam_to_vehicle`` [4, 4] on the ego, frame timestamp ``t``: each line (or column, for
    a sideways readout) rendered at its own exposure time."""
    offsets = shutter.offsets(intr.w, intr.h)
    vertical = shutter.direction in ("top_to_bottom", "bottom_to_top")
    lines = []
    for k in range(intr.h if vertical else intr.w):
        dt = float(offsets[k, 0] if vertical else offsets[0, k])
        world = world_at(street, t + dt, slack=shutter.readout_s)
        c2w = ego_pose_at(street, t + dt) @ cam_to_vehicle
        strip = dataclasses.replace(intr, h=1, cy=intr.cy - k) if vertical else \
            dataclasses.replace(intr, w=1, cx=intr.cx - k)
        lines.append(render_camera(world, c2w, strip, seed, antialias))
    axis = 0 if vertical else 1
    return View(*(np.concatenate([getattr(v, f.name) for v in lines], axis=axis) for f in dataclasses.fields(View)))
