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


def logged_placements(log: DriveLog, time: float) -> dict[str, ActorPlacement]:
    """Every actor of ``log`` present at ``time``, at its logged pose (the unedited scene)."""
    out = {}
    for actor in log.actors:
        pose = actor.pose_at(time)
        if pose is not None:
            out[actor.id] = ActorPlacement(actor.id, pose)
    return out
