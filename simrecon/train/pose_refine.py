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


def training_rig(times: torch.Tensor, c2w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training frames' timestamps [F] and camera-to-world poses [F, 4, 4] -> rig times [T], pivots [T, 3] and
    each frame's rig time index [F]."""
    return rig_times(times, c2w[:, :3, 3])
