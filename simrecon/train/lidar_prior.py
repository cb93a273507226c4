"""A head start from lidar before photometric training: point queries, no rendering.

A cold field spends its first few hundred steps finding the surfaces through the photometric and lidar ray
losses (each step renders ~70 samples per ray). The lidar already says where they are, and asking that of
the density at single points is far cheaper than a rendered ray:

- geometry: the background and the proposal are made dense just behind each return and empty on the way to
  it (a cross-entropy on the opacity of a short interval at each point);
- colour: each return seen by a training camera at the same time takes that pixel's colour, and the colour
  head learns it at the return, from that camera's direction (and appearance code).

The trainer's expected-range L1 on lidar rays undid such a start within 25 steps (21.6 dB held out at 2
minutes instead of 27.3), because the few per cent of weight that some rays leak to the far plane make their
expected range hundreds of metres: with the prior on, the lidar losses are on the weights alone
(``TrainConfig.lidar_loss_weights``).

Points inside a present actor's box teach that actor's field instead, density and colour (the background's
density is zeroed there in rendering, and the proposal only places background samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..config_io import doc
from ..data.model import Frame
from ..render.model import SceneModel
from .data import TrainData
from .optim import adam


@dataclass
class LidarPriorConfig:
    # -1 (auto): ``auto_steps`` when the time budget is at most ``auto_minutes``, else none. On the synthetic
    # street, 2 CPU cores (benchmarks/RESULTS.md): +1.7 dB held out and +2.3 dB on actors and at +2 m at 2
    # minutes, +1.2 dB at 3.5, +0.2 (and +0.8 at +2 m) at 5; even held out at 10 but -0.5 on actors, -0.2 at
    # +2 m and a lidar error of 3.7 cm instead of 1.2. Logs without lidar skip it.
    steps: int = doc(-1, "prior steps before photometric training (0: off; -1: auto_steps for budgets of at most "
                         "auto_minutes, else none)", unit="steps")
    auto_minutes: float = doc(5.0, "auto (steps -1): the longest time budget that still gets the prior", unit="min")
    auto_steps: int = doc(60, "auto (steps -1): the prior's steps (50 and 100 measured alike at 2 minutes)",
                          unit="steps")
    points: int = doc(8192, "lidar returns per step (three points each) and as many coloured returns",
                      unit="points")
    lr: float = doc(1e-2, "Adam learning rate of the prior", unit="step size")
    sync_s: float = doc(0.05, "a camera frame colours the returns of sweeps within this time of it", unit="s")
    beyond_weight: float = doc(0.005, "with the prior on, for the whole run: weight past the return, in place of "
                                      "the trainer's expected-range L1 (0.02: -0.9 dB)", unit="factor")

    def check(self, where: str = "config.priors.lidar_prior") -> None:
        if (self.steps < -1 or self.auto_steps < 0 or self.points < 1 or self.lr <= 0 or self.sync_s < 0
                or self.beyond_weight < 0):
            raise ValueError(f"{where}: needs steps >= -1 (-1: auto), auto_steps >= 0, points >= 1, "
                             f"lr > 0, sync_s >= 0 and beyond_weight >= 0, got {self.steps}, {self.auto_steps}, "
                             f"{self.points}, {self.lr}, {self.sync_s} and {self.beyond_weight}")

    def steps_for(self, minutes: float) -> int:
        """The prior's steps for a run with a time budget of ``minutes``: ``steps``, or with -1 (auto)
        ``auto_steps`` for budgets of at most ``auto_minutes`` and none for longer ones."""
        if self.steps >= 0:
            return self.steps
        return self.auto_steps if minutes <= self.auto_minutes else 0


@dataclass
class ColouredReturns:
    """Lidar returns as training cameras saw them: K (return, camera) pairs."""

    index: torch.Tensor  # [K] long: the return (row of the returns)
    rgb: torch.Tensor  # [K, 3] float in [0, 1]: the pixel it projects to
    eye: torch.Tensor  # [K, 3] the camera's centre
    appearance: torch.Tensor  # [K] long: the camera's appearance code

    def __len__(self) -> int:
        return self.index.shape[0]


def colour_returns(points: np.ndarray, times: np.ndarray, frames: list[Frame], images: list[np.ndarray],
                   appearance: list[int], near: float, sync_s: float, cell: int = 2) -> ColouredReturns:
    """The colour of each lidar return (points [M, 3] world, times [M]) in each camera frame taken within
    ``sync_s`` of its sweep: frames with their images [H, W, 3] uint8 and appearance codes.

    The lidar sits apart from the cameras, so a return can be hidden from a camera by something nearer: per
    cell of ``cell`` x ``cell`` pixels, only returns within 5 % (plus 0.1 world unit) of the nearest one are
    kept."""
    if points.ndim != 2 or points.shape[1] != 3 or times.shape != points.shape[:1]:
        raise ValueError(f"colour_returns: points {list(points.shape)} and times {list(times.shape)} must be [M, 3] "
                         f"and [M]")
    if not len(frames) == len(images) == len(appearance):
        raise ValueError(f"colour_returns: {len(frames)} frames, {len(images)} images and {len(appearance)} "
                         f"appearance codes")
    idx, rgb, eye, app = [], [], [], []
    for f, img, a in zip(frames, images, appearance):
        sel = np.nonzero(np.abs(times - f.timestamp) <= sync_s)[0]
        if not len(sel):
            continue
        uv, depth = f.project(points[sel])
        intr = f.intrinsics
        ok = (depth > near) & (uv[:, 0] >= 0) & (uv[:, 0] < intr.w) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.h)
        sel, px, depth = sel[ok], uv[ok].astype(np.int64), depth[ok]
        if not len(sel):
            continue
        cells = (px[:, 1] // cell) * (intr.w // cell + 1) + px[:, 0] // cell
        nearest = np.full(int(cells.max()) + 1, np.inf)
        np.minimum.at(nearest, cells, depth)
        seen = depth <= nearest[cells] * 1.05 + 0.1
        idx.append(sel[seen])
        rgb.append(img[px[seen, 1], px[seen, 0]])
        eye.append(np.broadcast_to(f.c2w[:3, 3], (int(seen.sum()), 3)))
        app.append(np.full(int(seen.sum()), a))
    if not idx:
        return ColouredReturns(torch.zeros(0, dtype=torch.long), torch.zeros(0, 3), torch.zeros(0, 3),
                               torch.zeros(0, dtype=torch.long))
    return ColouredReturns(torch.as_tensor(np.concatenate(idx)),
                           torch.as_tensor(np.concatenate(rgb), dtype=torch.float32) / 255.0,
                           torch.as_tensor(np.concatenate(eye), dtype=torch.float32),
                           torch.as_tensor(np.concatenate(app)))


def _occupied_loss(sigma: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """-log(opacity) of intervals delta [N] (normalised units) at densities sigma [N]: small once opaque."""
    if sigma.numel() == 0:
        return sigma.sum()
    return -torch.log((-torch.expm1(-sigma * delta)).clamp(min=1e-6)).mean()


def _empty_loss(sigma: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """-log(transparency) = optical thickness: linear in the density, never saturates."""
    if sigma.numel() == 0:
        return sigma.sum()
    return (sigma * delta).mean()


def lidar_prior_step(model: SceneModel, origins: torch.Tensor, points: torch.Tensor, times: torch.Tensor,
                     near: float, near_frac: float, colour: tuple[torch.Tensor, ...] | None = None,
                     gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Losses of one prior step on N lidar returns: sensor origins [N, 3], returns [N, 3], times [N]; and
    ``colour``: C coloured returns as (points [C, 3], times [C], RGB [C, 3], camera centres [C, 3],
    appearance codes [C]), or None.

    Each return gives three points: one up to a margin behind it (occupied), one uniformly between the near
    plane and the margin before it (empty) and one within four margins before that (empty: a sharp surface).
    The margin is 2 % of the range plus a tenth of the near plane (the lidar losses' default
    ``losses.lidar_margin``; the prior keeps 2 % whatever that setting says)."""
    if points.ndim != 2 or points.shape[1] != 3 or origins.shape != points.shape or times.shape != points.shape[:1]:
        raise ValueError(f"lidar_prior_step: origins {list(origins.shape)}, points {list(points.shape)} and times "
                         f"{list(times.shape)} must be [N, 3], [N, 3] and [N]")
    s = model.scale
    n = points.shape[0]
    v = points - origins
    rng = v.norm(dim=-1).clamp(min=1e-6)  # [N] world units
    d = v / rng[:, None]
    margin = 0.02 * rng + 0.1 * s * near_frac  # [N]
    u = torch.rand(3, n, generator=gen).to(points.device)
    before = (rng - margin - near).clamp(min=0.0)  # [N] length of the empty stretch
    t = torch.stack([rng + u[0] * margin, near + u[1] * before,
                     rng - margin - u[2] * torch.minimum(4 * margin, before)])  # [3, N]
    x = (origins[None] + d[None] * t[..., None]).reshape(3 * n, 3)  # [3N, 3]: occupied | empty | empty
    occupied = torch.arange(3 * n, device=x.device) < n  # [3N]
    delta = (margin / s).repeat(3)  # [3N] normalised: the interval each point stands for
    tx, dirs, app = times.repeat(3), torch.zeros_like(x), torch.zeros(3 * n, dtype=torch.long, device=x.device)
    wants_colour = torch.zeros(3 * n, dtype=torch.bool, device=x.device)
    if colour is not None:  # coloured returns ride in the same query, seen from their camera
        xc, tc, rgb, eye, app_c = colour
        x, tx, app = torch.cat([x, xc]), torch.cat([tx, tc]), torch.cat([app, app_c])
        dirs = torch.cat([dirs, torch.nn.functional.normalize(xc - eye, dim=-1)])
        wants_colour = torch.cat([wants_colour, torch.ones(len(xc), dtype=torch.bool, device=x.device)])
    lidar = ~wants_colour  # the 3N geometry points
    q = model.query(x, tx, dirs=dirs, appearance=app, color_rows=wants_colour, proposal_rows=lidar)
    bg, occ = q.owner < 0, torch.cat([occupied, torch.zeros(len(x) - 3 * n, dtype=torch.bool, device=x.device)])
    delta = torch.cat([delta, delta.new_zeros(len(x) - 3 * n)])

    def term(sigma: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:  # occupied behind the return, empty before
        return _occupied_loss(sigma[rows & occ], delta[rows & occ]) + _empty_loss(sigma[rows & ~occ], delta[rows & ~occ])

    losses = {"prior_background": term(q.sigma, lidar & bg), "prior_proposal": term(q.sigma_proposal, lidar & bg)}
    if (lidar & ~bg).any():
        losses["prior_actors"] = term(q.sigma, lidar & ~bg)
    if colour is not None and len(rgb):
        losses["prior_colour"] = ((q.rgb[wants_colour] - rgb) ** 2).mean()
    return losses


def run_lidar_prior(model: SceneModel, origins: torch.Tensor, points: torch.Tensor, times: torch.Tensor,
                    coloured: ColouredReturns | None, cfg: LidarPriorConfig, near: float, near_frac: float,
                    gen: torch.Generator, on_step: Callable[[int], None] | None = None) -> dict[str, float]:
    """``cfg.steps`` prior steps on random lidar returns (origins, points [M, 3], times [M], on the CPU) and
    random coloured returns; the model is updated in place by its own Adam (the photometric training starts
    its own). Returns the last step's losses."""
    device = next(model.parameters()).device
    opt = adam(prior_parameters(model), cfg.lr)
    losses: dict[str, torch.Tensor] = {}
    for i in range(cfg.steps):
        idx = torch.randint(0, points.shape[0], (cfg.points,), generator=gen)
        colour = None
        if coloured is not None and len(coloured):
            c = torch.randint(0, len(coloured), (cfg.points,), generator=gen)
            r = coloured.index[c]
            colour = tuple(t.to(device) for t in (points[r], times[r], coloured.rgb[c], coloured.eye[c],
                                                  coloured.appearance[c]))
        losses = lidar_prior_step(model, origins[idx].to(device), points[idx].to(device), times[idx].to(device),
                                  near, near_frac, colour, gen)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()
        if on_step:
            on_step(i + 1)
    return {k: round(v.item(), 6) for k, v in losses.items()}


def train_lidar_prior(model: SceneModel, data: TrainData, cfg: LidarPriorConfig, near_frac: float, seed: int,
                      on_step: Callable[[int], None] | None = None) -> dict[str, float]:
    """The prior on a log's training data (its lidar returns and training frames: held-out frames never colour
    a return). Returns the last step's losses and, under "coloured", how many (return, camera) pairs had a
    colour."""
    images = [data.images[a:b].view(f.intrinsics.h, f.intrinsics.w, 3).numpy()
              for f, a, b in zip(data.train_frames, data.offsets[:-1].tolist(), data.offsets[1:].tolist())]
    coloured = colour_returns(data.lidar_points.numpy(), data.lidar_times.numpy(), data.train_frames, images,
                              [data.appearance_id(f) for f in data.train_frames], data.near, cfg.sync_s)
    losses = run_lidar_prior(model, data.lidar_origins, data.lidar_points, data.lidar_times, coloured, cfg,
                             data.near, near_frac, torch.Generator().manual_seed(seed), on_step)
    return {**losses, "coloured": len(coloured)}


def prior_parameters(model: SceneModel) -> list[torch.nn.Parameter]:
    """What the prior trains: the background (density, colour, appearance codes), the proposal and the actors."""
    return [p for m in (model.background, model.proposal, *model.actor_fields) for p in m.parameters()]
