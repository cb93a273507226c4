"""Actor track refinement: a small correction of every tracked box pose, learnt with the scene.

Real logs' boxes come from a detector and tracker, off by decimetres and degrees from where the actor was; an
actor field fitted to such boxes smears the actor along its path. Each track keyframe (every ``timestamp`` of an
actor's track; a static actor's one pose) gets a correction in the box's own frame: a translation (world units
along the box's length, width and height) and a yaw (radians about the box's up axis). A logged box-to-world pose
``P`` becomes ``P @ [Rz(yaw), t]``. Between keyframes the correction is interpolated linearly in time, as the
poses are; beyond a track's ends it holds. The corrections start at zero (the log), learn with their own Adam
groups and are pulled towards zero and towards a smooth path in time (a box moves smoothly; a detector's errors
jump).

A placement of an actor elsewhere (the composer, the closed loop: a moved, inserted or retimed copy) is corrected
by its source actor's correction at the render time: the correction says how the field's box sits on the actor,
which travels with the actor wherever it is placed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..config_io import doc
from .pose_refine import check_mode
from .poses import TrackTensor


@dataclass
class TrackRefineConfig:
    refine: str = doc("auto", "actor track corrections, a box-frame translation and yaw per track keyframe: auto (on "
                              "unless the log says its tracks are exact), on or off", unit="-")
    lr: float = doc(2e-3, "learning rate of the translations at the start (decays as schedule.lr does; they learn "
                          "from model.poses.start on, with the camera corrections)", unit="world units per step")
    yaw_lr: float = doc(2e-3, "learning rate of the yaws at the start (decays as schedule.lr does)",
                        unit="rad per step")
    reg_weight: float = doc(1e-3, "pull towards the logged boxes: this times the mean over keyframes of the squared "
                                  "correction (world units^2 + rad^2)", unit="factor")
    smooth_weight: float = doc(1e-3, "pull towards a smooth path: this times the mean over keyframes of the squared "
                                     "second difference of the corrections", unit="factor")

    def check(self, where: str) -> None:
        check_mode(self.refine, where)
        if not (self.lr > 0 and self.yaw_lr > 0 and self.reg_weight >= 0 and self.smooth_weight >= 0):
            raise ValueError(f"{where}: lr and yaw_lr must be > 0, reg_weight and smooth_weight >= 0, got {self.lr}, "
                             f"{self.yaw_lr}, {self.reg_weight} and {self.smooth_weight}")


def yaw_matrix(yaw: torch.Tensor) -> torch.Tensor:
    """Rotations [..., 3, 3] about z by ``yaw`` [...] radians."""
    c, s = torch.cos(yaw), torch.sin(yaw)
    z, o = torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([c, -s, z, s, c, z, z, z, o], -1).reshape(yaw.shape + (3, 3))


class TrackCorrections(nn.Module):
    """Corrections of A tracks, padded to the longest (T keyframes): ``trans`` [A, T, 3] and ``yaw`` [A, T]."""

    def __init__(self, tracks: list[TrackTensor]):
        super().__init__()
        n = max(2, max(t.times.shape[0] for t in tracks))  # interpolation reads entry i0 + 1 (a one-frame log)
        pad = lambda x: torch.cat([x, x[-1:].expand(n - len(x))]) if len(x) < n else x  # noqa: E731
        self.register_buffer("times", torch.stack([pad(t.times) for t in tracks]))  # [A, T] float64
        self.register_buffer("length", torch.tensor([t.times.shape[0] for t in tracks]))  # [A]
        self.trans = nn.Parameter(torch.zeros(len(tracks), n, 3))
        self.yaw = nn.Parameter(torch.zeros(len(tracks), n))

    def at(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Corrections at query times [U] (float64): translations [A, U, 3] (box frame) and yaws [A, U]."""
        a_n, u_n = self.times.shape[0], t.shape[0]
        first = self.times[:, :1]
        last = self.times.gather(1, (self.length - 1)[:, None])
        tq = torch.minimum(torch.maximum(t[None].expand(a_n, u_n), first), last).contiguous()
        top = (self.length - 1).clamp(min=1)[:, None]
        i1 = torch.minimum(torch.searchsorted(self.times, tq, right=True).clamp(min=1), top)
        i0 = i1 - 1
        t0, t1 = self.times.gather(1, i0), self.times.gather(1, i1)
        single = (self.length == 1)[:, None]
        w = torch.where(single | (t1 <= t0), torch.zeros_like(tq), (tq - t0) / (t1 - t0).clamp(min=1e-12)).float()
        i1 = torch.where(single, i0, i1)
        rows = torch.arange(a_n, device=t.device)[:, None]
        trans = (1 - w)[..., None] * self.trans[rows, i0] + w[..., None] * self.trans[rows, i1]
        yaw = (1 - w) * self.yaw[rows, i0] + w * self.yaw[rows, i1]
        return trans, yaw

    def apply(self, rot: torch.Tensor, trans: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logged box-to-world rotations [A, U, 3, 3] and translations [A, U, 3] at times [U] -> corrected ones."""
        d_trans, d_yaw = self.at(t)
        return rot @ yaw_matrix(d_yaw), trans + (rot @ d_trans[..., None])[..., 0]

    def regulariser(self, reg_weight: float, smooth_weight: float) -> torch.Tensor:
        """``reg_weight`` x mean squared correction + ``smooth_weight`` x mean squared second difference in time
        (over the keyframes each track has; padding excluded)."""
        c = torch.cat([self.trans, self.yaw[..., None]], -1)  # [A, T, 4]
        k = torch.arange(c.shape[1], device=c.device)[None]
        valid = (k < self.length[:, None]).float()  # [A, T]
        loss = reg_weight * ((c ** 2).sum(-1) * valid).sum() / valid.sum().clamp(min=1)
        if c.shape[1] >= 3 and smooth_weight > 0:
            second = c[:, 2:] - 2 * c[:, 1:-1] + c[:, :-2]
            inner = (k[:, 2:] < self.length[:, None]).float()
            loss = loss + smooth_weight * ((second ** 2).sum(-1) * inner).sum() / inner.sum().clamp(min=1)
        return loss

    @torch.no_grad()
    def matrix_at(self, actor: int, time: float) -> np.ndarray:
        """Actor ``actor``'s correction [4, 4] (float64) at ``time``: its logged pose ``P`` is refined as
        ``P @ matrix_at(actor, time)``."""
        trans, yaw = self.at(torch.tensor([float(time)], dtype=torch.float64, device=self.times.device))
        m = np.eye(4)
        m[:3, :3] = yaw_matrix(yaw[actor, 0].double().cpu()).numpy()
        m[:3, 3] = trans[actor, 0].double().cpu().numpy()
        return m
