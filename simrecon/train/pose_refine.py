"""When training refines the cameras' poses, and the rig times it refines (render/pose_refine.py does the maths).

Real logs' poses are off by centimetres and fractions of a degree; the synthetic street's are exact unless it
was generated with ``--pose-noise``. The drive log says which: ``"poses_exact": true`` at the top of its
transforms.json (written by ``simrecon synth`` without pose noise) means exact. A synthetic log from before that
key (``"source": "simrecon synth"`` without it) had exact poses too. Every other log is taken as real.
"""

from __future__ import annotations

import torch

from ..data.model import DriveLog
from ..render.pose_refine import PoseRefineConfig, rig_times
from ..render.track_refine import TrackRefineConfig


def poses_exact(log: DriveLog) -> bool:
    """True when the log declares its poses exact (``poses_exact``), or is a synthetic log from before the key."""
    flag = log.extra.get("poses_exact")
    if isinstance(flag, bool):
        return flag
    return log.extra.get("source") == "simrecon synth"


def refine_decision(cfg: PoseRefineConfig, log: DriveLog) -> tuple[bool, str]:
    """(refine or not, why) for a fresh run."""
    if cfg.refine != "auto":
        return cfg.refine == "on", f"model.poses.refine={cfg.refine}"
    if poses_exact(log):
        return False, "auto: the log says its poses are exact"
    return True, "auto: a log without exact poses"


def tracks_exact(log: DriveLog) -> bool:
    """True when the log declares its actor tracks exact (``tracks_exact``), or is a synthetic log without
    ``--track-noise`` (from before the key too)."""
    flag = log.extra.get("tracks_exact")
    if isinstance(flag, bool):
        return flag
    synth = log.extra.get("synth_config")
    if log.extra.get("source") == "simrecon synth" and isinstance(synth, dict):
        return not synth.get("track_noise_m") and not synth.get("track_noise_deg")
    return False


def track_refine_decision(cfg: TrackRefineConfig, log: DriveLog, actors: bool) -> tuple[bool, str]:
    """(refine the actors' tracks or not, why) for a fresh run; ``actors``: the model has actor fields."""
    if cfg.refine != "auto":
        return cfg.refine == "on" and actors and bool(log.actors), f"model.tracks.refine={cfg.refine}"
    if not actors or not log.actors:
        return False, "auto: no tracked actors"
    if tracks_exact(log):
        return False, "auto: the log says its tracks are exact"
    return True, "auto: a log without exact tracks"


def training_rig(times: torch.Tensor, c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training frames' timestamps [F] and camera-to-world poses [F, 4, 4] -> rig times [T], pivots [T, 3] and
    each frame's rig time index [F]."""
    return rig_times(times, c2w[:, :3, 3])
