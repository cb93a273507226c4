"""Tracks as tensors: box-to-world poses at arbitrary (per-ray) times, lerp + slerp as in the drive log."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.geometry import matrix_to_quat
from ..data.model import Track

# A track is present this many seconds beyond its first and last timestamps (held at its end poses): the first and
# last lines of a rolling-shutter frame are exposed up to half a readout (~15-30 ms) before and after the frame's
# timestamp, which is where tracks keyed on frames begin and end.
PRESENCE_SLACK_S = 0.05

def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Unit (w, x, y, z) quaternions [..., 4] -> rotation matrices [..., 3, 3]."""
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(q.shape[:-1] + (3, 3))


def slerp(q0: torch.Tensor, q1: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Shortest-arc slerp of unit quaternions [N, 4] with weights a [N]."""
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    theta = torch.acos(dot)
    s = torch.sin(theta)
    near = s < 1e-6
    a = a[:, None]
    w0 = torch.where(near, 1 - a, torch.sin((1 - a) * theta) / torch.where(near, torch.ones_like(s), s))
    w1 = torch.where(near, a, torch.sin(a * theta) / torch.where(near, torch.ones_like(s), s))
    q = w0 * q0 + w1 * q1
    return q / q.norm(dim=-1, keepdim=True)


class TrackTensor(nn.Module):
    """A track's timestamps [T], translations [T, 3] and quaternions [T, 4] as buffers."""

    def __init__(self, track: Track, static: bool):
        super().__init__()
        self.static = static
        self.register_buffer("times", torch.as_tensor(track.timestamps, dtype=torch.float64))
        self.register_buffer("trans", torch.as_tensor(track.poses[:, :3, 3], dtype=torch.float32))
        self.register_buffer("quats", torch.as_tensor(matrix_to_quat(track.poses[:, :3, :3]), dtype=torch.float32))

    def at(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per query time [N] (float64): rotation [N, 3, 3], translation [N, 3], present [N] (bool)."""
        n = t.shape[0]
        if self.times.shape[0] == 1:
            present = torch.ones(n, dtype=torch.bool, device=t.device) if self.static else \
                (t - self.times[0]).abs() <= PRESENCE_SLACK_S
            return (quat_to_rotmat(self.quats[:1]).expand(n, 3, 3), self.trans[:1].expand(n, 3), present)
        eps = PRESENCE_SLACK_S
        present = (t >= self.times[0] - eps) & (t <= self.times[-1] + eps)
        if self.static:
            present = torch.ones_like(present)
        tq = t.clamp(self.times[0], self.times[-1])
        i1 = torch.searchsorted(self.times, tq, right=True).clamp(1, self.times.shape[0] - 1)
        i0 = i1 - 1
        a = ((tq - self.times[i0]) / (self.times[i1] - self.times[i0])).float()
        trans = (1 - a)[:, None] * self.trans[i0] + a[:, None] * self.trans[i1]
        rot = quat_to_rotmat(slerp(self.quats[i0], self.quats[i1], a))
        return rot, trans, present


class TrackBank:
    """Every track of a scene padded into one tensor, so that all actors are posed at once: [A, T] times (each
    row padded with its last entry), [A, T, 3] translations, [A, T, 4] quaternions, [A] lengths and static
    flags. Same semantics as ``TrackTensor.at``; built from the tracks, not saved (checkpoints keep those)."""

    def __init__(self, tracks: list[TrackTensor]):
        lengths = [t.times.shape[0] for t in tracks]
        n = max(2, max(lengths))  # two columns at least: interpolation reads entry i0 + 1 (a one-frame log)

        def pad(x: torch.Tensor) -> torch.Tensor:  # repeat the last entry: searchsorted stays well defined
            return torch.cat([x, x[-1:].expand(n - x.shape[0], *x.shape[1:])]) if x.shape[0] < n else x

        self.times = torch.stack([pad(t.times) for t in tracks])  # [A, T] float64
        self.trans = torch.stack([pad(t.trans) for t in tracks])  # [A, T, 3]
        self.quats = torch.stack([pad(t.quats) for t in tracks])  # [A, T, 4]
        dev = self.times.device
        self.length = torch.tensor(lengths, device=dev)  # [A]
        self.static = torch.tensor([t.static for t in tracks], device=dev)  # [A]
        self.device = dev

    def at(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query times [U] (float64) -> rotations [A, U, 3, 3], translations [A, U, 3], present [A, U]."""
        a_n, u_n = self.times.shape[0], t.shape[0]
        first = self.times[:, :1]  # [A, 1]
        last = self.times.gather(1, (self.length - 1)[:, None])  # [A, 1]
        eps = PRESENCE_SLACK_S
        single = (self.length == 1)[:, None]  # [A, 1]
        tq = t[None].expand(a_n, u_n)
        present = torch.where(single, (tq - first).abs() <= eps, (tq >= first - eps) & (tq <= last + eps))
        present = present | self.static[:, None]
        tq = torch.minimum(torch.maximum(tq, first), last).contiguous()
        i1 = torch.searchsorted(self.times, tq, right=True)
        i1 = torch.minimum(i1.clamp(min=1), (self.length - 1).clamp(min=1)[:, None])
        i0 = i1 - 1
        t0, t1 = self.times.gather(1, i0), self.times.gather(1, i1)
        a = torch.where(single, torch.zeros_like(tq), (tq - t0) / torch.where(t1 > t0, t1 - t0, torch.ones_like(t0)))
        a = a.float()
        i0 = torch.where(single, torch.zeros_like(i0), i0)
        i1 = torch.where(single, torch.zeros_like(i1), i1)
        rows = torch.arange(a_n, device=t.device)[:, None]
        trans = (1 - a)[..., None] * self.trans[rows, i0] + a[..., None] * self.trans[rows, i1]  # [A, U, 3]
        q = slerp(self.quats[rows, i0].reshape(-1, 4), self.quats[rows, i1].reshape(-1, 4), a.reshape(-1))
        return quat_to_rotmat(q).view(a_n, u_n, 3, 3), trans, present


def pose_tensor(pose: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed box-to-world pose [4, 4] -> rotation [1, 3, 3], translation [1, 3]."""
    p = torch.as_tensor(np.asarray(pose), dtype=torch.float32, device=device)
    return p[None, :3, :3], p[None, :3, 3]
