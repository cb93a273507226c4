"""The inference renderer: the reference renderer's samples, evaluated only where they can matter.

``SceneModel.forward`` (the reference, and the training path) evaluates every sample of every ray: 48 proposal
samples, 24 background samples, the actors' samples and the colour network at all of them. A trained scene
does not need that. This renderer places exactly the same samples (the proposal's even bins, the background's
resampled bins, the actors' box samples), so its images match the reference's, but evaluates a sample's density
only when

- its occupancy grid cell has density (``occupancy.py``: open air, empty box corners; a grid that marks most of
  its cells occupied is not looked up, ``FastConfig.max_occupied``), and
- light still reaches it: samples are evaluated front to back in ``stages`` groups, and a ray whose
  transmittance fell below ``stop_transmittance`` stops (the proposal on its own transmittance, the background
  on its own, which an actor in front can only lower, so stopping on it is safe);

and the colour network only at samples whose compositing weight exceeds ``color_weight``. Background samples
inside a placed actor's box are never evaluated (the reference zeroes them). Skipped samples count as empty:
the bound on what that changes is the grids' threshold times the ray's length plus the stop transmittance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..fields import evaluate_actor_fields
from .composite import alpha_weights
from .model import Layout, RaySamples, RenderResult, SceneModel
from .occupancy import Grid, OccupancyConfig, OccupancyGrids
from .rays import Rays
from .samplers import pdf_bins, spaced_bins, spacing


@dataclass
class FastConfig:
    occupancy: OccupancyConfig = field(default_factory=OccupancyConfig)  # the grids (built once per weights)
    stop_transmittance: float = 1e-4  # a ray stops once less than this share of light gets through
    color_weight: float = 1e-4  # the colour network runs at samples with a compositing weight above this
    stages: int = 4  # groups of samples evaluated front to back (more: earlier stops, more overhead)
    skip_empty: bool = True  # look samples up in the occupancy grids (False: only the early stop skips)
    # a grid with more than this share of its cells occupied is not looked up: its lookups would cost more than the
    # few evaluations they save (a proposal field trained to cover the background's mass is dense nearly everywhere)
    max_occupied: float = 0.75
    chunk: int = 32768  # rays per batch (memory: ~1 KB per ray)


def _front_to_back(delta: torch.Tensor, stages: int, stop: float,
                   density: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Densities [R, S] of samples with widths delta [R, S] (spacing units), nearest first in ``stages`` groups:
    ``density(rows, cols) -> [M]`` is asked only for the samples of rays whose transmittance is still above
    ``stop`` (and may itself skip some, answering 0); zero elsewhere."""
    r, s = delta.shape
    sigma = delta.new_zeros(r, s)
    optical = delta.new_zeros(r)
    limit = -math.log(stop)
    edges = [round(s * i / stages) for i in range(stages + 1)]
    for a, b in zip(edges[:-1], edges[1:]):
        alive = (optical < limit).nonzero()[:, 0]
        if a == b or not len(alive):
            continue
        rows = alive.repeat_interleave(b - a)
        cols = torch.arange(a, b, device=delta.device).repeat(len(alive))
        sigma[rows, cols] = density(rows, cols)
        optical += (sigma[:, a:b] * delta[:, a:b]).sum(1)
    return sigma


@dataclass
class _Background:
    mid: torch.Tensor  # [R, Ns] normalised distance
    delta: torch.Tensor  # [R, Ns]
    sigma: torch.Tensor  # [R, Ns]
    geo: torch.Tensor  # [R, Ns, G] geometry features (zero where not evaluated)


@dataclass
class _Actors:
    mid: torch.Tensor  # [R, K * Na]
    delta: torch.Tensor
    sigma: torch.Tensor
    rgb: torch.Tensor  # [R, K * Na, 3]
    placement: torch.Tensor  # [R, K]


class FastRenderer:
    """Renders rays of a trained ``SceneModel`` with its ``OccupancyGrids`` (same outputs as the reference,
    without the training-only ones)."""

    def __init__(self, model: SceneModel, grids: OccupancyGrids, cfg: FastConfig | None = None):
        if len(grids.actors) != model.num_actor_fields:
            raise ValueError(f"occupancy grids for {len(grids.actors)} actor fields, the model has "
                             f"{model.num_actor_fields}")
        self.model = model
        self.grids = grids
        self.cfg = cfg or FastConfig()

    @torch.no_grad()
    def __call__(self, rays: Rays, layout: Layout | None = None) -> RenderResult:
        if layout is None:
            layout = self.model.logged_layout(rays.times)
        bins = self._proposal(rays)
        slots = self.model._actor_slots(rays, layout, stratified=False)
        bg = self._background(rays, bins, slots)
        act = self._actors(rays, layout, slots) if slots is not None else None
        return self._composite(rays, bg, act)

    def _points(self, rays: Rays, rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """World points [M, 3] at normalised distances t [M] along rays ``rows`` [M]."""
        return rays.origins[rows] + rays.dirs[rows] * (t * self.model.scale)[:, None]

    def _useful(self, grid: Grid) -> Grid | None:
        """``grid``, or None when it marks so much as occupied that its lookups would cost more than they save."""
        return grid if self.cfg.skip_empty and grid.share() <= self.cfg.max_occupied else None

    def _proposal(self, rays: Rays) -> torch.Tensor:
        """The background's bins [R, Ns + 1]: the reference's, from the proposal's weights along its even bins."""
        m, cfg = self.model, self.cfg
        pbins = spaced_bins(rays.near / m.scale, m.cfg.far, m.cfg.proposal_samples, False)
        pg = spacing(pbins)
        pdelta = pg[:, 1:] - pg[:, :-1]
        mid = (pbins[:, 1:] + pbins[:, :-1]) / 2
        grid = self._useful(self.grids.proposal)

        def density(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            x = self._points(rays, r, mid[r, c])
            keep = grid.lookup(m.box.contract(x)).nonzero()[:, 0] if grid is not None else None
            if keep is None:
                return m.proposal(x)
            return x.new_zeros(len(x)).index_put((keep,), m.proposal(x[keep]))

        sigma = _front_to_back(pdelta, cfg.stages, cfg.stop_transmittance, density)
        return pdf_bins(pbins, alpha_weights(sigma, pdelta), m.cfg.samples, False, m.cfg.proposal_uniform)

    def _background(self, rays: Rays, bins: torch.Tensor, slots) -> _Background:
        m, cfg = self.model, self.cfg
        mid = (bins[:, 1:] + bins[:, :-1]) / 2
        g = spacing(bins)
        delta = g[:, 1:] - g[:, :-1]
        inside = slots.covers(mid) if slots is not None else None  # the background is empty in placed boxes
        grid = self._useful(self.grids.background)
        geo = mid.new_zeros(*mid.shape, m.cfg.background.geo_features)

        def density(r: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            x = self._points(rays, r, mid[r, c])
            keep = torch.ones(len(r), dtype=torch.bool, device=x.device)
            if grid is not None:
                keep &= grid.lookup(m.box.contract(x))
            if inside is not None:
                keep &= ~inside[r, c]
            k = keep.nonzero()[:, 0]
            sigma, feats = m.background.density(x[k])
            geo[r[k], c[k]] = feats.to(geo.dtype)
            return x.new_zeros(len(x)).index_put((k,), sigma)

        sigma = _front_to_back(delta, cfg.stages, cfg.stop_transmittance, density)
        return _Background(mid, delta, sigma, geo)

    def _actors(self, rays: Rays, layout: Layout, sl) -> _Actors:
        """The actor samples in occupied cells of their fields' grids (all slots' samples, in one pass)."""
        m = self.model
        r, k, na = sl.mid.shape
        vr, vs = sl.valid.nonzero(as_tuple=True)
        vp = sl.placement[vr, vs]
        xl = sl.o_loc[vp, vr][:, None] + sl.d_loc[vp, vr][:, None] * (sl.mid[vr, vs] * m.scale)[..., None]  # [M, Na, 3]
        half = torch.stack([m.actor_fields[i].half_size for i in layout.field_index])  # [P, 3]
        occupied = torch.zeros(len(vr), na, dtype=torch.bool, device=xl.device)
        for p, fi in enumerate(layout.field_index):
            mine = (vp == p).nonzero()[:, 0]
            grid = self._useful(self.grids.actors[fi])
            if len(mine):
                occupied[mine] = grid.lookup(xl[mine] / (2 * half[p]) + 0.5) if grid is not None else True
        pair, j = occupied.nonzero(as_tuple=True)  # evaluated samples: (valid pair, sample)
        order = vp[pair].argsort(stable=True)
        pair, j = pair[order], j[order]
        counts = torch.bincount(vp[pair], minlength=len(layout.field_index)).tolist()
        dirs = sl.d_loc[vp[pair], vr[pair]]
        sig, col = evaluate_actor_fields([m.actor_fields[i] for i in layout.field_index], xl[pair, j], dirs, counts)
        sigma = sl.mid.new_zeros(r, k, na)
        rgb = sl.mid.new_zeros(r, k, na, 3)
        sigma[vr[pair], vs[pair], j] = sig
        rgb[vr[pair], vs[pair], j] = col
        return _Actors(sl.mid.reshape(r, -1), sl.delta.reshape(r, -1), sigma.reshape(r, -1), rgb.reshape(r, -1, 3),
                       sl.placement)

    def _composite(self, rays: Rays, bg: _Background, act: _Actors | None) -> RenderResult:
        """The reference's compositing; colour only at samples that carry weight."""
        m, s = self.model, self.model.scale
        mids = [bg.mid] + ([act.mid] if act is not None else [])
        all_mid = torch.cat(mids, 1)
        order = all_mid.argsort(dim=1)
        sig = torch.cat([bg.sigma] + ([act.sigma] if act is not None else []), 1).gather(1, order)
        dlt = torch.cat([bg.delta] + ([act.delta] if act is not None else []), 1).gather(1, order)
        w = alpha_weights(sig, dlt)
        acc = w.sum(-1)
        mid_s = all_mid.gather(1, order)
        out = RenderResult(depth=(w * mid_s).sum(-1) / acc.clamp(min=1e-6) * s, acc=acc,
                           samples=RaySamples(mids=mid_s * s, weights=w))
        out.instance, out.actor_acc = m._instances(all_mid, order, w, acc, act.placement if act is not None else None)
        out.rgb = self._color(rays, bg, act, w, order, acc)
        return out

    def _color(self, rays: Rays, bg: _Background, act: _Actors | None, w: torch.Tensor, order: torch.Tensor,
               acc: torch.Tensor) -> torch.Tensor:
        m = self.model
        ns = bg.mid.shape[1]
        rows, j = (w > self.cfg.color_weight).nonzero(as_tuple=True)
        src = order[rows, j]
        col = w.new_zeros(len(rows), 3)
        is_bg = src < ns
        rb, sb = rows[is_bg], src[is_bg]
        if len(rb):
            col[is_bg] = m.background.color_of_samples(bg.geo[rb, sb], rb, rays.dirs, rays.appearance)
        if act is not None and bool((~is_bg).any()):
            col[~is_bg] = act.rgb[rows[~is_bg], src[~is_bg] - ns]
        wj = w[rows, j]
        num = w.new_zeros(len(rays), 3).index_add_(0, rows, wj[:, None] * col)
        den = w.new_zeros(len(rays)).index_add_(0, rows, wj)
        fg = num / den.clamp(min=1e-8)[:, None]
        a = acc[:, None]
        return a * fg + (1 - a) * m.sky(rays.dirs, rays.appearance)
