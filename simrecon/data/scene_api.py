"""What every renderable scene offers: the contract between scenes and their users.

Implemented by the reconstructed neural scene (``simrecon.scene``) and by the synthetic street's exact
ground-truth renderer (``simrecon.synth.GroundTruthScene``), and used by the scenario composer, the
exporter, the regression runner and the viewer. Living in the data layer keeps every user independent
of how a scene is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from .lidar_model import LidarSensor, SweepLayout
from .model import DriveLog, Intrinsics

OUTPUTS = ("rgb", "depth", "instance")


@dataclass(frozen=True)
class ActorPlacement:
    """Draw the actor ``source`` (an actor id of the scene) with box-to-world ``pose`` [4, 4]."""

    source: str
    pose: np.ndarray


@dataclass
class RenderOutput:
    """One rendered camera. Arrays are None for outputs that were not asked for."""

    rgb: np.ndarray | None  # [H, W, 3] float32 in [0, 1]
    depth: np.ndarray | None  # [H, W] float32, metres along the view axis; inf where nothing is hit (sky)
    instance: np.ndarray | None  # [H, W] int32: 0 background, k = instance_names[k - 1]
    instance_names: list[str]  # the keys of the placements, in call order


@runtime_checkable
class RenderableScene(Protocol):
    """A scene that renders any pinhole camera at any time with any actor layout."""

    @property
    def log(self) -> DriveLog:
        """The drive log the scene was made from: cameras, ego poses, actors and their tracks."""
        ...

    def render(self, c2w: np.ndarray, intrinsics: Intrinsics, time: float,
               placements: Mapping[str, ActorPlacement], outputs: Sequence[str] = OUTPUTS) -> RenderOutput:
        """Render camera ``c2w`` [4, 4] (OpenGL axes) at ``time`` with exactly the actors in
        ``placements`` (keyed by the instance name written into ``instance``); logged actors that
        are not placed are not drawn."""
        ...


@dataclass
class LidarOutput:
    """One rendered lidar sweep: per ray (R = beams * columns, in ``LidarSensor.directions`` order)."""

    sensor: LidarSensor
    range_m: np.ndarray  # [R] float32 metres along the ray to the surface; inf where nothing is hit
    returned: np.ndarray  # [R] bool: the ray gives a point (False: dropped: sky, out of range, absorbed)
    intensity: np.ndarray | None  # [R] float32 in [0, 1]; None where the scene cannot say (no intensity model)
    instance: np.ndarray  # [R] int32: 0 background, k = instance_names[k - 1]
    instance_names: list[str]  # the keys of the placements, in call order

    def points(self) -> np.ndarray:
        """The returned rays' points [N, 3] float64 in the sensor frame (the pose of each ray's own sensor)."""
        keep = self.returned
        return self.sensor.directions()[keep] * self.range_m[keep, None].astype(np.float64)

    def layout(self) -> SweepLayout:
        """Beam and column [N] of each returned ray (``points`` order)."""
        beam, column = self.sensor.grid()
        return SweepLayout(beam[self.returned], column[self.returned])


@runtime_checkable
class LidarScene(Protocol):
    """A scene that also renders lidar sweeps (the exact synthetic street, neural scenes). Separate from
    ``RenderableScene`` so that camera-only scenes (and test doubles) stay renderable scenes."""

    def render_lidar(self, sensor: LidarSensor, s2w: np.ndarray, time: float,
                     placements: Mapping[str, ActorPlacement]) -> LidarOutput:
        """Every ray of ``sensor`` from sensor-to-world ``s2w`` ([4, 4], or [R, 4, 4]: one pose per ray, a rolling
        sweep) at ``time``, with exactly the actors in ``placements`` (as ``RenderableScene.render``)."""
        ...


def logged_placements(log: DriveLog, time: float) -> dict[str, ActorPlacement]:
    """Every actor of ``log`` present at ``time``, at its logged pose (the unedited scene)."""
    out = {}
    for actor in log.actors:
        pose = actor.pose_at(time)
        if pose is not None:
            out[actor.id] = ActorPlacement(actor.id, pose)
    return out
