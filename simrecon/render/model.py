"""The scene model: background + proposal + sky + one field per actor, rendered by volume compositing.

Distances along rays are sampled in normalised units (world / ``scale``, the scene box's mean half
extent), so densities, near planes and the initial transparency mean the same in metres or in the
arbitrary units of a hand-held capture.

Actors: a ray that crosses an actor's box (posed by its track at the ray's time, or by an explicit
placement) gets ``actor_samples`` samples inside the box from that actor's field; background density
inside present actor boxes is forced to zero, so moving cars cannot smear into the background. All
samples are merged by distance and composited together, then the sky fills what is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..config_io import from_dict
from ..data.model import Actor
from ..fields import (ActorField, ActorFieldConfig, BackgroundField, BackgroundFieldConfig, ProposalField,
                      ProposalFieldConfig, SceneBox, SkyField, evaluate_actor_fields)
from .composite import alpha_weights, interlevel_loss
from .exposure import FrameExposure
from .poses import TrackBank, TrackTensor, pose_tensor
from .rays import Rays
from .samplers import box_intervals, pdf_bins, spaced_bins, spacing


@dataclass
class SceneModelConfig:
    background: BackgroundFieldConfig = field(default_factory=BackgroundFieldConfig)
    proposal: ProposalFieldConfig = field(default_factory=ProposalFieldConfig)
    actor: ActorFieldConfig = field(default_factory=ActorFieldConfig)
    proposal_samples: int = 64
    samples: int = 32
    actor_samples: int = 16
    max_actors_per_ray: int = 2
    proposal_uniform: float = 0.1  # share of final samples spread evenly over the proposal's range (+0.7 dB held out)
    color_samples: int = 0  # 0: colour at every sample; K: only at the K heaviest (-1.65 dB at equal time)
    # > 0: the sky also looks up a texture of that many elevation rows (fields/sky.py; the presets use 32). 0 here
    # so that scenes written before it, whose config lacks the key, load as they were trained.
    sky_texture: int = 0
    far: float = 1000.0  # normalised distance: effectively infinity after contraction
    actors: bool = True  # model tracked actors with their own fields
    # Per training frame, a gain and offset per channel on the composited colour (render/exposure.py): real cameras
    # change exposure between frames. False here so that scenes written before it load as they were trained.
    frame_exposure: bool = False

    @classmethod
    def from_json(cls, data: dict) -> "SceneModelConfig":
        """The ``model`` section of a scene's recorded configuration (``config_io.from_dict``)."""
        return from_dict(cls, data, "config.model")


@dataclass
class Layout:
    """Where actors are for a batch of R rays: P placements, each a field, a pose per ray (or one for all rays)
    and presence."""

    field_index: list[int]  # [P] index into SceneModel.actor_fields
    rot: torch.Tensor  # [P, R|1, 3, 3] box-to-world rotation
    trans: torch.Tensor  # [P, R|1, 3]
    present: torch.Tensor  # [P, R] bool

    @staticmethod
    def empty(num_rays: int, device) -> "Layout":
        return Layout([], torch.zeros(0, 1, 3, 3, device=device), torch.zeros(0, 1, 3, device=device),
                      torch.zeros(0, num_rays, dtype=torch.bool, device=device))


class SceneModel(nn.Module):
    def __init__(self, cfg: SceneModelConfig, box: SceneBox, actors: list[Actor], num_appearance: int,
                 frames: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``frames``: the training frames' appearance (camera) indices [K] and times [K], for ``frame_exposure``
        (without them there is no exposure model)."""
        super().__init__()
        self.cfg = cfg
        self.box = box
        self.scale = float(np.mean(box.half))
        self.background = BackgroundField(cfg.background, box, num_appearance)
        self.proposal = ProposalField(cfg.proposal, box)
        self.sky = SkyField(appearance_dim=cfg.background.appearance_dim, num_appearance=num_appearance,
                            texture=cfg.sky_texture)
        actors = actors if cfg.actors else []
        self.actor_ids = [a.id for a in actors]
        self.actor_fields = nn.ModuleList([ActorField(cfg.actor, a.size) for a in actors])
        self.tracks = nn.ModuleList([TrackTensor(a.track, a.static) for a in actors])
        self.exposure = FrameExposure(*frames) if cfg.frame_exposure and frames is not None else None

    # -- actor layouts ----------------------------------------------------------------------------------
    def logged_layout(self, times: torch.Tensor) -> Layout:
        """Every actor at its logged pose at each ray's time (training and replay). All tracks are posed at
        once, at the batch's distinct times (a few frames), then spread to the rays."""
        if not len(self.tracks):
            return Layout.empty(times.shape[0], times.device)
        bank = self._track_bank(times.device)
        uniq, inv = torch.unique(times, return_inverse=True)  # [U], [R]
        rot, trans, present = bank.at(uniq)  # [A, U, 3, 3], [A, U, 3], [A, U]
        keep = present.any(1).nonzero()[:, 0]  # actors present at some time of this batch
        return Layout(keep.tolist(), rot[keep][:, inv], trans[keep][:, inv], present[keep][:, inv])

    def _track_bank(self, device) -> TrackBank:
        bank = getattr(self, "_bank", None)
        if bank is None or bank.device != torch.device(device):
            bank = TrackBank(list(self.tracks))
            self._bank = bank
        return bank

    def fixed_layout(self, placements: list[tuple[int, np.ndarray]], num_rays: int, device) -> Layout:
        """Explicit (field index, box-to-world pose [4, 4]) placements, the same for all rays."""
        if not placements:
            return Layout.empty(num_rays, device)
        poses = [pose_tensor(pose, device) for _, pose in placements]
        return Layout([idx for idx, _ in placements], torch.stack([r for r, _ in poses]),
                      torch.stack([t for _, t in poses]),
                      torch.ones(len(placements), num_rays, dtype=torch.bool, device=device))

    # -- rendering ----------------------------------------------------------------------------------------
    def _color(self, rays: Rays, rows: torch.Tensor, w: torch.Tensor, order: torch.Tensor, geo: torch.Tensor,
               actor_rgb: list[torch.Tensor], acc: torch.Tensor) -> torch.Tensor:
        """RGB [len(rows), 3]. With ``color_samples`` K, colour is evaluated only at each ray's K heaviest
        samples; their weighted mean colour times the opacity is the foreground (exact when the rest
        of the weight is negligible, as it is on surfaces), and every density still gets gradient."""
        ns = self.cfg.samples
        nr = len(rows)
        g = geo.view(len(rays), ns, -1)
        wr = w[rows]
        k = self.cfg.color_samples if 0 < self.cfg.color_samples < wr.shape[1] else wr.shape[1]
        sky = self.sky(rays.dirs[rows], rays.appearance[rows])
        a = acc[rows][:, None]
        if k == wr.shape[1]:  # every sample: colour all of them in one pass, then in the merged order
            col = self.background.color_along_rays(g[rows], rays.dirs[rows], rays.appearance[rows])  # [nr, Ns, 3]
            if actor_rgb:
                col = torch.cat([col, actor_rgb[0][rows]], 1)  # [nr, S, 3] in the order [background | actors]
            col = col.gather(1, order[rows][..., None].expand(-1, -1, 3))
            fg = (wr[..., None] * col).sum(1) / wr.sum(1, keepdim=True).clamp(min=1e-8)
            return a * fg + (1 - a) * sky
        top_i = wr.detach().topk(k, dim=1).indices  # K < S here: all samples took the branch above
        src = order[rows].gather(1, top_i)  # [nr, K] index into [background samples | actor samples]
        w_sel = wr.gather(1, top_i)
        c_sel = torch.zeros(nr, k, 3, device=w.device)
        is_bg = src < ns
        if bool(is_bg.any()):
            ri, ki = is_bg.nonzero(as_tuple=True)
            rr = rows[ri]
            c_sel[ri, ki] = self.background.color(g[rr, src[ri, ki]], rays.dirs[rr], rays.appearance[rr])
        if actor_rgb and bool((~is_bg).any()):
            ri, ki = (~is_bg).nonzero(as_tuple=True)
            c_sel[ri, ki] = actor_rgb[0][rows[ri], src[ri, ki] - ns]
        fg = (w_sel[..., None] * c_sel).sum(1) / w_sel.sum(1, keepdim=True).clamp(min=1e-8)
        return a * fg + (1 - a) * sky

    def _instances(self, all_mid: torch.Tensor, order: torch.Tensor, w: torch.Tensor, acc: torch.Tensor,
                   slot_owner: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Which actor each ray shows: instance [R] (0 background, k = layout placement k - 1: the actor holding
        more than half the ray's opacity) and actor_acc [R], the opacity all actors hold. ``all_mid`` [R, S] in
        the order [background | actor slots], ``order`` [R, S] its sort, ``w`` [R, S] the weights in that sort,
        ``slot_owner`` [R, K] the placement of each ray's actor slots (None without actors)."""
        r = all_mid.shape[0]
        owner = torch.zeros_like(all_mid, dtype=torch.long)  # 0 background, j + 1 slot j
        if slot_owner is not None:
            owner[:, self.cfg.samples:] = (torch.arange(slot_owner.shape[1], device=w.device) + 1).repeat_interleave(
                self.cfg.actor_samples)
        owner_w = torch.zeros(r, 1 + (slot_owner.shape[1] if slot_owner is not None else 0), device=w.device)
        owner_w = owner_w.scatter_add(1, owner.gather(1, order), w.detach())
        best = owner_w.argmax(1)
        instance = torch.zeros(r, dtype=torch.long, device=w.device)
        if slot_owner is not None:
            is_actor = (best > 0) & (owner_w.gather(1, best[:, None])[:, 0] > 0.5 * acc.detach().clamp(min=1e-6))
            instance = torch.where(is_actor, slot_owner.gather(1, (best - 1).clamp(min=0)[:, None])[:, 0] + 1,
                                   instance)
        return instance, owner_w[:, 1:].sum(-1)

    def forward(self, rays: Rays, layout: Layout | None = None, stratified: bool = False,
                rgb_rows: torch.Tensor | None = None, probe: torch.Tensor | None = None,
                frames: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Render rays. Returns depth [R] (world distance along the ray), acc [R], rgb for the rows ``rgb_rows``
        [R] (bool; None: all), outside training instance [R] and actor_acc [R] (see ``_instances``), and loss terms
        when training. Colour is the costly part: lidar rays skip it.

        ``probe``: world points [P, 3] whose background and proposal densities are returned too ("probe_sigma",
        "probe_sigma_proposal" [P]), for losses on points off the rays. They ride in the rays' field calls: a
        separate call would add a second hash-grid backward, writing a whole table gradient of its own.

        ``frames``: the training frame of each rgb row, whose exposure correction (``frame_exposure``) is applied
        to its colour; here rather than by the caller so that DDP sees the correction's parameters used."""
        cfg = self.cfg
        r = len(rays)
        s = self.scale
        o, d = rays.origins, rays.dirs
        if probe is not None and (probe.ndim != 2 or probe.shape[1] != 3):
            raise ValueError(f"probe points must be [P, 3], got {list(probe.shape)}")
        n_probe = 0 if probe is None else probe.shape[0]
        if layout is None:
            layout = self.logged_layout(rays.times)
        near = rays.near / s
        # Proposal pass: where is the background's mass?
        pbins = spaced_bins(near, cfg.far, cfg.proposal_samples, stratified)  # [R, Np + 1]
        pmid = (pbins[:, 1:] + pbins[:, :-1]) / 2
        px = o[:, None] + d[:, None] * (pmid * s)[..., None]
        psigma = self.proposal(_with_probe(px.reshape(-1, 3), probe))
        psigma, probe_sigma_p = psigma[:r * cfg.proposal_samples].view(r, -1), psigma[r * cfg.proposal_samples:]
        pg = spacing(pbins)
        pdelta = pg[:, 1:] - pg[:, :-1]
        pw = alpha_weights(psigma, pdelta)
        bins = pdf_bins(pbins, pw, cfg.samples, stratified, cfg.proposal_uniform)  # [R, Ns + 1]
        mid = (bins[:, 1:] + bins[:, :-1]) / 2
        g = spacing(bins)
        delta = g[:, 1:] - g[:, :-1]
        x = o[:, None] + d[:, None] * (mid * s)[..., None]
        sigma_bg, geo = self.background.density(_with_probe(x.reshape(-1, 3), probe))
        n_bg = r * cfg.samples
        probe_sigma, sigma_bg, geo = sigma_bg[n_bg:], sigma_bg[:n_bg].view(r, -1), geo[:n_bg]

        # Actors: nearest K boxes each ray crosses.
        k_max = cfg.max_actors_per_ray
        na = cfg.actor_samples
        placements = len(layout.field_index)
        sigma_parts, delta_parts, mid_parts, rgb_parts = [sigma_bg], [delta], [mid], []
        slot_owner = None
        if placements:
            half = torch.stack([self.actor_fields[i].half_size for i in layout.field_index])[:, None]  # [P, 1, 3]
            t_in, t_out, hit, o_loc, d_loc = box_intervals(o, d, layout.rot, layout.trans, half)  # [P, R], [P, R, 3]
            hit = hit & layout.present
            t_in_all = torch.where(hit, t_in / s, torch.full_like(t_in, float("inf"))).T  # [R, P]
            t_out_all = (t_out / s).T
            k = min(k_max, placements)
            slot_tin, slot_p = torch.topk(t_in_all, k, dim=1, largest=False)  # [R, K]
            slot_valid = torch.isfinite(slot_tin)
            slot_tout = t_out_all.gather(1, slot_p)
            slot_tin = torch.where(slot_valid, slot_tin, torch.zeros_like(slot_tin))
            slot_tout = torch.where(slot_valid, slot_tout, torch.zeros_like(slot_tout))
            # The background is empty where a present actor's box is.
            for j in range(k):
                inside = slot_valid[:, j:j + 1] & (mid >= slot_tin[:, j:j + 1]) & (mid <= slot_tout[:, j:j + 1])
                sigma_bg = sigma_bg * ~inside
            sigma_parts[0] = sigma_bg
            u = torch.linspace(0, 1, na + 1, device=o.device)
            if stratified:
                u = (u + (torch.rand(r, k, na + 1, device=o.device) - 0.5) / na).clamp(0, 1).sort(-1).values
            edges = slot_tin[..., None] + (slot_tout - slot_tin)[..., None] * u  # [R, K, Na + 1]
            amid = (edges[..., 1:] + edges[..., :-1]) / 2  # [R, K, Na]
            ag = spacing(edges)
            adelta = ag[..., 1:] - ag[..., :-1]
            # Every (ray, slot) an actor owns, grouped by actor: one gather for the box-frame points, one pass over
            # all the actor fields (evaluate_actor_fields), one scatter back.
            vr, vs = slot_valid.nonzero(as_tuple=True)  # [M] valid (ray, slot) pairs
            vp = slot_p[vr, vs]  # [M] placement of each
            by_p = vp.argsort(stable=True)
            vr, vs, vp = vr[by_p], vs[by_p], vp[by_p]
            counts = torch.bincount(vp, minlength=placements).tolist()
            o_l, d_l = o_loc[vp, vr], d_loc[vp, vr]  # [M, 3]
            xl = o_l[:, None] + d_l[:, None] * (amid[vr, vs] * s)[..., None]  # [M, Na, 3]
            dl = d_l[:, None].expand(-1, na, 3)
            fields = [self.actor_fields[i] for i in layout.field_index]
            sig, col = evaluate_actor_fields(fields, xl.reshape(-1, 3), dl.reshape(-1, 3), [c * na for c in counts])
            asigma = torch.zeros(r, k, na, device=o.device).index_put((vr, vs), sig.view(-1, na))
            argb = torch.zeros(r, k, na, 3, device=o.device).index_put((vr, vs), col.view(-1, na, 3))
            asigma = asigma * slot_valid[..., None]
            sigma_parts.append(asigma.reshape(r, -1))
            delta_parts.append(adelta.reshape(r, -1))
            mid_parts.append(amid.reshape(r, -1))
            rgb_parts.append(argb.reshape(r, -1, 3))
            slot_owner = slot_p

        all_mid = torch.cat(mid_parts, 1)
        order = all_mid.argsort(dim=1)
        mid_s = all_mid.gather(1, order)
        sig_s = torch.cat(sigma_parts, 1).gather(1, order)
        del_s = torch.cat(delta_parts, 1).gather(1, order)
        w = alpha_weights(sig_s, del_s)  # [R, S]
        acc = w.sum(-1)
        out: dict[str, torch.Tensor] = {
            "acc": acc,
            "depth": (w * mid_s).sum(-1) / acc.clamp(min=1e-6) * s,
            "weights": w,
            "mids": mid_s * s,
        }
        if not self.training:  # rendering outputs that no loss uses
            out["instance"], out["actor_acc"] = self._instances(all_mid, order, w, acc, slot_owner)
        rows = torch.arange(r, device=o.device) if rgb_rows is None else rgb_rows.nonzero()[:, 0]
        if len(rows):
            out["rgb"] = self._color(rays, rows, w, order, geo, rgb_parts, acc)
            if self.exposure is not None and frames is not None:
                out["rgb"] = self.exposure(out["rgb"], frames)
        if self.training:
            w_bg = alpha_weights(sigma_bg, delta)
            out["interlevel"] = interlevel_loss(bins, w_bg, pbins, pw)
            out["tau"] = sig_s * del_s  # [R, S] optical thickness of each interval, in the order of "mids"
            out["proposal_tau"] = psigma * pdelta  # [R, Np] optical thickness of each proposal interval
            out["proposal_mids"] = pmid * s  # [R, Np] world distance
        if n_probe:
            out["probe_sigma"], out["probe_sigma_proposal"] = probe_sigma, probe_sigma_p
        return out


def _with_probe(x: torch.Tensor, probe: torch.Tensor | None) -> torch.Tensor:
    """Sample points [M, 3] with the probe points [P, 3] after them (one field call for both)."""
    return x if probe is None or probe.shape[0] == 0 else torch.cat([x, probe.to(x.dtype)])
