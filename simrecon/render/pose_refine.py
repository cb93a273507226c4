"""Camera pose refinement: a small SE(3) correction per rig time, learnt with the scene.

Real logs pose their cameras from GPS/INS or SLAM, off by centimetres and fractions of a degree; a field fitted
to such poses blurs. Each rig time (the training frames whose timestamps agree to ``RIG_TOLERANCE_S``: the cameras
of one rig at one time) gets a 6-vector correction: a rotation vector (radians, world axes) about the rig's
pivot (the mean logged centre of its cameras) and a translation (world units, metres in a metric log). Corrected
camera-to-world poses are ``M(t) @ c2w`` with ``M = [R, p - R p + t]``: rotation about the pivot rather than
the world origin keeps the two halves of the vector independent. The corrections start at zero (the log's poses)
and training pulls them towards the images, regularised towards zero.

A time that has no correction of its own (held-out frames, a new pose at a logged time) takes the correction
interpolated linearly in time between the nearest corrected times, the nearest one's outside their span: held-out
frames are never fitted to their own images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config_io import doc
from .rays import Rays

RIG_TOLERANCE_S = 1e-3  # frames whose timestamps differ by less than this share one correction
MODES = ("auto", "on", "off")


def check_mode(value: str, where: str) -> None:
    """A refinement switch (``MODES``), refused in one line naming the setting."""
    if value not in MODES:
        raise ValueError(f"{where}.refine: expected auto, on or off, got {value!r}")


@dataclass
class PoseRefineConfig:
    refine: str = doc("auto", "camera pose corrections, one SE(3) per rig time: auto (on unless the log says its "
                              "poses are exact), on or off", unit="-")
    # Adam moves each component about this much per step at the start; it decays with the schedule.
    # 400 fast steps on the street, 10 cm / 0.5 deg off: 5e-4 / 5e-5 left 9.1 cm / 0.35 deg, 2e-3 / 2e-4 7.8 cm /
    # 0.20 deg (+1.6 dB at the exact poses), 3e-3 / 5e-4 8.1 cm / 0.28 deg (benchmarks/pose_refine.py)
    lr: float = doc(2e-3, "learning rate of the translations at the start (decays as schedule.lr does)",
                    unit="world units per step")
    rotation_lr: float = doc(2e-4, "learning rate of the rotations at the start (decays as schedule.lr does)",
                             unit="rad per step")
    start: float = doc(0.2, "share of the budget (steps or time) before the corrections learn: the field first "
                            "needs structure for the images to say where a camera is", unit="fraction")
    reg_weight: float = doc(1e-3, "pull towards the logged poses: this times the sum over rig times of the squared "
                                  "correction (rad^2 + world units^2)", unit="factor")

    def check(self, where: str) -> None:
        check_mode(self.refine, where)
        if not (self.lr > 0 and self.rotation_lr > 0 and self.reg_weight >= 0 and 0 <= self.start < 1):
            raise ValueError(f"{where}: lr and rotation_lr must be > 0, reg_weight >= 0 and start in [0, 1), got "
                             f"{self.lr}, {self.rotation_lr}, {self.reg_weight} and {self.start}")


def so3_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation vectors [N, 3] (radians) -> rotation matrices [N, 3, 3] (Rodrigues; exact gradient at zero)."""
    theta2 = (w * w).sum(-1)[:, None, None]  # [N, 1, 1]
    small = theta2 < 1e-8
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / (theta * theta))
    zero = torch.zeros_like(w[:, 0])
    k = torch.stack([zero, -w[:, 2], w[:, 1], w[:, 2], zero, -w[:, 0], -w[:, 1], w[:, 0], zero], -1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def rig_times(times: torch.Tensor, centres: torch.Tensor,
              tolerance: float = RIG_TOLERANCE_S) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training frames' timestamps [F] (float64) and camera centres [F, 3] -> the rig times [T] (sorted), their
    pivots [T, 3] (mean centre of the frames at that time) and each frame's rig time index [F]."""
    order = torch.argsort(times)
    t = times[order]
    new = torch.ones_like(t, dtype=torch.bool)
    new[1:] = (t[1:] - t[:-1]) >= tolerance
    group_sorted = torch.cumsum(new.long(), 0) - 1
    group = torch.empty_like(group_sorted)
    group[order] = group_sorted
    n = int(group_sorted[-1]) + 1 if len(t) else 0
    counts = torch.bincount(group, minlength=n).double()
    out_t = torch.zeros(n, dtype=torch.float64).index_add(0, group, times.double()) / counts
    pivots = torch.zeros(n, 3, dtype=torch.float64).index_add(0, group, centres.double()) / counts[:, None]
    return out_t, pivots.float(), group


class PoseCorrections(nn.Module):
    """Corrections for T rig times: ``rot`` [T, 3] rotation vectors (radians) and ``trans`` [T, 3] translations
    (world units); two parameters, so that training gives each its own learning rate."""

    def __init__(self, times: torch.Tensor, pivots: torch.Tensor):
        super().__init__()
        if times.ndim != 1 or pivots.shape != (times.shape[0], 3):
            raise ValueError(f"PoseCorrections: times {list(times.shape)} must be [T] and pivots "
                             f"{list(pivots.shape)} [T, 3]")
        self.register_buffer("times", times.double().clone())  # [T] seconds
        self.register_buffer("pivots", pivots.float().clone())  # [T, 3] world
        self.rot = nn.Parameter(torch.zeros(times.shape[0], 3))  # [T, 3] radians
        self.trans = nn.Parameter(torch.zeros(times.shape[0], 3))  # [T, 3] world units

    @property
    def delta(self) -> torch.Tensor:
        """[T, 6]: (rotation vector, translation) of every rig time."""
        return torch.cat([self.rot, self.trans], 1)

    def __len__(self) -> int:
        return self.times.shape[0]

    def _matrices(self, delta: torch.Tensor, pivots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrections [N, 6] about pivots [N, 3] -> world-frame rotation [N, 3, 3] and translation [N, 3]."""
        rot = so3_exp(delta[:, :3])
        trans = pivots - torch.einsum("nij,nj->ni", rot, pivots) + delta[:, 3:]
        return rot, trans

    def correct_rays(self, rays: Rays, index: torch.Tensor) -> Rays:
        """Camera rays [R] of rig times ``index`` [R] with their corrections applied (differentiable)."""
        uniq, inv = torch.unique(index, return_inverse=True)  # a few rig times per batch: one matrix each
        rot, trans = self._matrices(self.delta[uniq], self.pivots[uniq])
        rot, trans = rot[inv], trans[inv]
        origins = torch.einsum("rij,rj->ri", rot, rays.origins) + trans
        dirs = torch.einsum("rij,rj->ri", rot, rays.dirs)
        return Rays(origins, dirs, rays.times, rays.appearance, rays.near, rays.view_cos)

    @torch.no_grad()
    def delta_at(self, time: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(correction [6], pivot [3]) at ``time``: linear in time between the two nearest rig times, the
        nearest one's outside their span."""
        t = self.times
        if len(t) == 1:
            return self.delta[0], self.pivots[0]
        hi = int(torch.searchsorted(t, t.new_tensor([time]))[0].clamp(1, len(t) - 1))
        lo = hi - 1
        span = float(t[hi] - t[lo])
        a = min(max((time - float(t[lo])) / span, 0.0), 1.0) if span > 0 else 0.0
        return torch.lerp(self.delta[lo], self.delta[hi], a), torch.lerp(self.pivots[lo], self.pivots[hi], a)

    @torch.no_grad()
    def matrix_at(self, time: float) -> np.ndarray:
        """The world-frame correction [4, 4] (float64) at ``time``: a logged camera-to-world pose ``c2w`` at that
        time is refined as ``matrix_at(time) @ c2w``."""
        delta, pivot = self.delta_at(time)
        rot, trans = self._matrices(delta[None].float(), pivot[None])
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = rot[0].cpu().double().numpy(), trans[0].cpu().double().numpy()
        return m

    def regulariser(self) -> torch.Tensor:
        """Sum over rig times of the squared correction (radians and world units): the pull towards the log."""
        return (self.rot * self.rot).sum() + (self.trans * self.trans).sum()
