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

from ..config_io import doc, from_dict
from ..data.model import Actor
from ..fields import (ActorField, ActorFieldConfig, BackgroundField, BackgroundFieldConfig, ProposalField,
                      ProposalFieldConfig, SceneBox, SkyField, evaluate_actor_fields)
from ..fields.lidar_heads import LidarHeadInputs, LidarHeadOutput, LidarHeads, LidarHeadsConfig, sample_feature_dim
from .composite import alpha_weights, interlevel_loss
from .exposure import FrameExposure, exposure_mode, legacy_exposure
from .pose_refine import PoseCorrections, PoseRefineConfig
from .track_refine import TrackCorrections, TrackRefineConfig
from .poses import TrackBank, TrackTensor, pose_tensor
from .query import BoxOwners, PointQuery, boxes_holding
from .rays import Rays
from .samplers import box_intervals, pdf_bins, spaced_bins, spacing


@dataclass
class SceneModelConfig:
    background: BackgroundFieldConfig = field(
        default_factory=BackgroundFieldConfig, metadata={"help": "the background field (fields/background.py)"})
    proposal: ProposalFieldConfig = field(
        default_factory=ProposalFieldConfig, metadata={"help": "the proposal field that places the background's "
                                                                "samples (fields/proposal.py)"})
    actor: ActorFieldConfig = field(
        default_factory=ActorFieldConfig, metadata={"help": "each tracked actor's field (fields/actor.py)"})
    proposal_samples: int = doc(64, "samples per ray of the proposal pass", unit="samples")
    samples: int = doc(32, "background samples per ray, placed by the proposal", unit="samples")
    actor_samples: int = doc(16, "samples per ray in each actor box it crosses", unit="samples")
    max_actors_per_ray: int = doc(2, "actor boxes a ray samples at most (the nearest)", unit="actors")
    proposal_uniform: float = doc(0.1, "share of final samples spread evenly over the proposal's range (+0.7 dB held "
                                       "out)", unit="fraction")
    color_samples: int = doc(0, "0: colour at every sample; K: only at the K heaviest (-1.65 dB at equal time)",
                             unit="samples")
    # 0 here so that scenes written before it, whose config lacks the key, load as they were trained.
    sky_texture: int = doc(0, "> 0: the sky also looks up a texture of that many elevation rows (fields/sky.py; the "
                              "presets use 32)", unit="rows")
    far: float = doc(1000.0, "far plane: effectively infinity after contraction", unit="normalised")
    actors: bool = doc(True, "model tracked actors with their own fields", unit="-")
    # Real cameras change exposure between frames. A scene loads with what its weights hold, whatever this says.
    frame_exposure: str = doc("auto", "a gain and offset per channel and training frame on the composited colour "
                                      "(render/exposure.py): auto (on when the frames' brightness jumps, "
                                      "train/exposure_auto.py), on or off", unit="-")
    poses: PoseRefineConfig = field(
        default_factory=PoseRefineConfig, metadata={"help": "camera pose refinement: an SE(3) correction per rig time "
                                                             "learnt with the scene (render/pose_refine.py)"})
    tracks: TrackRefineConfig = field(
        default_factory=TrackRefineConfig, metadata={"help": "actor track refinement: a box-frame translation and yaw "
                                                              "per track keyframe learnt with the scene "
                                                              "(render/track_refine.py)"})
    # Scenes written before the heads lack the key: "auto" builds no head when a scene is opened (only the trainer
    # turns auto into on), so they load as they were trained.
    lidar_heads: LidarHeadsConfig = field(
        default_factory=LidarHeadsConfig, metadata={"help": "learned lidar intensity and ray drop from the fields' "
                                                             "features (fields/lidar_heads.py, docs/lidar.md)"})

    @classmethod
    def from_json(cls, data: dict) -> "SceneModelConfig":
        """The ``model`` section of a scene's recorded configuration (``config_io.from_dict``; a switch-valued
        ``frame_exposure`` of older scenes read as on / off)."""
        return from_dict(cls, legacy_exposure(data), "config.model")


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


@dataclass
class TrainingInputs:
    """What only training asks of a render (``SceneModel.forward(..., train=...)``)."""

    stratified: bool = True  # jitter the samples along each ray
    rgb_rows: torch.Tensor | None = None  # [R] bool: the rays that need colour (lidar rays do not); None: all
    frames: torch.Tensor | None = None  # [rows] training frame of each colour row, for per-frame exposure
    # World points [P, 3] whose background and proposal densities are returned too (``RenderResult.points``),
    # for priors on points off the rays. They ride in the rays' field calls: a separate call would add a second
    # hash-grid backward, writing a whole table gradient of its own.
    points: torch.Tensor | None = None


@dataclass
class RaySamples:
    """Every ray's samples, background and actors merged, in order of distance."""

    mids: torch.Tensor  # [R, S] world distance of each interval's middle
    weights: torch.Tensor  # [R, S] compositing weights
    tau: torch.Tensor | None = None  # [R, S] optical thickness of each interval (training)


@dataclass
class ProposalSamples:
    """The proposal pass of a training render, for its losses."""

    mids: torch.Tensor  # [R, Np] world distance
    tau: torch.Tensor  # [R, Np] optical thickness of each proposal interval
    interlevel: torch.Tensor  # scalar: how well the proposal's weights cover the background's


@dataclass
class PointDensities:
    """Densities at ``TrainingInputs.points``."""

    sigma: torch.Tensor  # [P] background field
    sigma_proposal: torch.Tensor  # [P] proposal field


@dataclass
class RenderResult:
    """What a render returns for R rays (camera or lidar rays alike)."""

    depth: torch.Tensor  # [R] expected world distance along the ray
    acc: torch.Tensor  # [R] opacity
    samples: RaySamples
    rgb: torch.Tensor | None = None  # [rows, 3] for the colour rows (all rays when rendering)
    instance: torch.Tensor | None = None  # [R] 0 background, k = layout placement k - 1 (rendering only)
    actor_acc: torch.Tensor | None = None  # [R] opacity held by actors (rendering only)
    proposal: ProposalSamples | None = None  # training only
    points: PointDensities | None = None  # when TrainingInputs.points were given


@dataclass
class _ProposalPass:
    bins: torch.Tensor  # [R, Np + 1] normalised distance
    mid: torch.Tensor  # [R, Np]
    sigma: torch.Tensor  # [R, Np]
    delta: torch.Tensor  # [R, Np] spacing-space widths
    weights: torch.Tensor  # [R, Np]
    point_sigma: torch.Tensor  # [P]


@dataclass
class _BackgroundPass:
    bins: torch.Tensor  # [R, Ns + 1]
    mid: torch.Tensor  # [R, Ns]
    delta: torch.Tensor  # [R, Ns]
    sigma: torch.Tensor  # [R, Ns] (zero inside present actor boxes once the actor pass ran)
    geo: torch.Tensor  # [R * Ns, F] geometry features for the colour network
    point_sigma: torch.Tensor  # [P]


@dataclass
class ActorSlots:
    """The actor boxes each of R rays crosses (K slots, nearest first) and the actor samples in them."""

    tin: torch.Tensor  # [R, K] normalised distance where the ray enters the slot's box (0 for an empty slot)
    tout: torch.Tensor  # [R, K] ... and leaves it
    valid: torch.Tensor  # [R, K] bool: the slot holds a box
    placement: torch.Tensor  # [R, K] long: the layout placement in each slot
    o_loc: torch.Tensor  # [P, R, 3] ray origins in each placement's box frame (world units)
    d_loc: torch.Tensor  # [P, R, 3] ray directions in each placement's box frame
    mid: torch.Tensor  # [R, K, Na] normalised distance of each actor sample
    delta: torch.Tensor  # [R, K, Na] spacing-space widths

    def covers(self, t: torch.Tensor) -> torch.Tensor:
        """[R, S] bool: the normalised distances t [R, S] that lie inside one of the ray's boxes."""
        inside = torch.zeros_like(t, dtype=torch.bool)
        for j in range(self.valid.shape[1]):
            inside |= self.valid[:, j:j + 1] & (t >= self.tin[:, j:j + 1]) & (t <= self.tout[:, j:j + 1])
        return inside


@dataclass
class _ActorPass:
    sigma: torch.Tensor  # [R, K * Na]
    delta: torch.Tensor  # [R, K * Na]
    mid: torch.Tensor  # [R, K * Na]
    rgb: torch.Tensor  # [R, K * Na, 3]
    slot_owner: torch.Tensor  # [R, K] placement of each ray's actor slots


class SceneModel(nn.Module):
    def __init__(self, cfg: SceneModelConfig, box: SceneBox, actors: list[Actor], num_appearance: int,
                 frames: tuple[torch.Tensor, torch.Tensor] | None = None,
                 rig: tuple[torch.Tensor, torch.Tensor] | None = None, refine_tracks: bool = False):
        """``frames``: the training frames' appearance (camera) indices [K] and times [K], for ``frame_exposure``
        (without them there is no exposure model). ``rig``: rig times [T] and pivots [T, 3] of camera pose
        corrections (render/pose_refine.py; None: the logged poses are used as they are). ``refine_tracks``: learn
        corrections of the actors' tracks (render/track_refine.py)."""
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
        on = exposure_mode(cfg.frame_exposure) == "on"  # auto: training decides before it builds the model
        self.exposure = FrameExposure(*frames) if on and frames is not None else None
        self.poses = PoseCorrections(*rig) if rig is not None else None
        self.track_fix = TrackCorrections(list(self.tracks)) if refine_tracks and len(self.tracks) else None
        self.lidar_heads = LidarHeads(cfg.lidar_heads, sample_feature_dim(cfg.background.geo_features)) \
            if cfg.lidar_heads.any_on else None

    # -- actor layouts ----------------------------------------------------------------------------------
    def logged_layout(self, times: torch.Tensor) -> Layout:
        """Every actor at its logged pose at each ray's time (training and replay). All tracks are posed at
        once, at the batch's distinct times (a few frames), then spread to the rays."""
        if not len(self.tracks):
            return Layout.empty(times.shape[0], times.device)
        bank = self._track_bank(times.device)
        uniq, inv = torch.unique(times, return_inverse=True)  # [U], [R]
        rot, trans, present = bank.at(uniq)  # [A, U, 3, 3], [A, U, 3], [A, U]
        if self.track_fix is not None:
            rot, trans = self.track_fix.apply(rot, trans, uniq)
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

    # -- point queries -----------------------------------------------------------------------------------
    @property
    def num_actor_fields(self) -> int:
        """Actor fields in the model: the first this many of the scene's actors have one."""
        return len(self.actor_fields)

    def owners(self, points: torch.Tensor, times: torch.Tensor | None = None, layout: Layout | None = None,
               dirs: torch.Tensor | None = None) -> tuple[BoxOwners, list[int]]:
        """Which placed actor box holds each world point [N, 3]: actors as logged at each point's time ``times``
        [N], or placed by a ``layout`` shared by all points (``fixed_layout``, ``Layout.empty``). Returns the
        owners (slot: the placement) and the placements' actor field indices."""
        if (times is None) == (layout is None):
            raise ValueError("owners: give the points' times or a layout, not both")
        if layout is None:
            uniq, which = torch.unique(times, return_inverse=True)
            layout = self.logged_layout(uniq)  # every box posed once per distinct time
            present = layout.present
        elif layout.rot.shape[1] != 1:
            raise ValueError("owners: a layout with a pose per ray; give the points' times instead")
        else:
            which = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
            present = layout.present.any(1, keepdim=True)
        half = torch.stack([self.actor_fields[i].half_size for i in layout.field_index]) if layout.field_index \
            else points.new_zeros(0, 3)
        return boxes_holding(points, layout.rot, layout.trans, half, present, which, dirs), layout.field_index

    def query(self, points: torch.Tensor, times: torch.Tensor | None = None, layout: Layout | None = None,
              dirs: torch.Tensor | None = None, appearance: torch.Tensor | None = None,
              color_rows: torch.Tensor | None = None, proposal_rows: torch.Tensor | None = None) -> PointQuery:
        """The fields at world points [N, 3] (actors placed as in ``owners``): each point's density from the actor
        whose box holds it, else from the background. Colour at ``color_rows`` [N] bool (seen along ``dirs`` [N, 3]
        with ``appearance`` [N] codes); the proposal's density at the background points among ``proposal_rows``.
        The background's points go through one field call, the actors' through one pass over all actor fields."""
        n = points.shape[0]
        own, field_index = self.owners(points, times, layout, dirs)
        bg = (own.slot < 0).nonzero()[:, 0]
        owner = torch.full((n,), -1, dtype=torch.long, device=points.device)
        sigma_b, geo = self.background.density(points[bg])
        sigma = points.new_zeros(n).index_put((bg,), sigma_b)
        out = PointQuery(sigma=sigma, owner=owner)
        if color_rows is not None:
            out.rgb = points.new_zeros(n, 3)
            cb = color_rows[bg].nonzero()[:, 0]
            if len(cb):
                rows = bg[cb]
                out.rgb = out.rgb.index_put((rows,), self.background.color(geo[cb], dirs[rows], appearance[rows]))
        if proposal_rows is not None:
            pb = bg[proposal_rows[bg]]
            out.sigma_proposal = points.new_zeros(n).index_put((pb,), self.proposal(points[pb]))
        act, sig_a, rgb_a = self._owned_by_actors(own, field_index)
        if len(act):
            out.sigma = out.sigma.index_put((act,), sig_a)
            out.owner[act] = torch.tensor(field_index, dtype=torch.long, device=points.device)[own.slot[act]]
            if out.rgb is not None:
                ca = color_rows[act]
                out.rgb = out.rgb.index_put((act[ca],), rgb_a[ca])
        return out

    def _owned_by_actors(self, own: BoxOwners, field_index: list[int]) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                                 torch.Tensor | None]:
        """The points an actor box holds (indices [M], grouped by placement) and their density [M] and colour
        [M, 3] from the placed actors' fields, in one pass over those fields; (empty, None, None) when none."""
        act = (own.slot >= 0).nonzero()[:, 0]
        if not len(act):
            return act, None, None
        act = act[own.slot[act].argsort(stable=True)]
        counts = torch.bincount(own.slot[act], minlength=len(field_index)).tolist()
        sig, rgb = evaluate_actor_fields([self.actor_fields[i] for i in field_index], own.local[act],
                                         own.local_dirs[act], counts)
        return act, sig, rgb

    def actor_view(self, k: int) -> "ActorView":
        """Actor field ``k`` in its box frame, as mesh extraction reads a field."""
        if not 0 <= k < self.num_actor_fields:
            raise IndexError(f"actor field {k}: the model has {self.num_actor_fields}")
        return ActorView(self, k)

    def background_view(self, appearance: int) -> "BackgroundView":
        """The background in world coordinates (actors removed), coloured with one appearance code."""
        return BackgroundView(self, appearance)

    # -- learned lidar heads -------------------------------------------------------------------------------
    def lidar_head_outputs(self, rays: Rays, out: RenderResult, layout: Layout | None = None) -> LidarHeadOutput | None:
        """Intensity and drop logits of rendered lidar ``rays`` (``out``: their render, by this model or the fast
        renderer) from the heads (fields/lidar_heads.py); None when the model has none."""
        if self.lidar_heads is None:
            return None
        return self.lidar_heads(self.lidar_head_inputs(rays, out, layout))

    @torch.no_grad()
    def lidar_head_inputs(self, rays: Rays, out: RenderResult, layout: Layout | None = None) -> LidarHeadInputs:
        """What the lidar heads read of rendered ``rays``, taken without gradient: the features of each ray's
        ``lidar_heads.samples`` heaviest samples. Actors as in ``owners``: logged at each ray's time (``layout``
        None) or placed by a layout shared by all rays."""
        r = len(rays)
        k = min(self.cfg.lidar_heads.samples, out.samples.weights.shape[1])
        w, idx = out.samples.weights.detach().topk(k, dim=1)  # [R, K]
        t = out.samples.mids.detach().gather(1, idx)  # [R, K] world distance
        x = (rays.origins[:, None] + rays.dirs[:, None] * t[..., None]).reshape(-1, 3)
        feats = self._head_features(x, rays, torch.arange(r, device=x.device).repeat_interleave(k), layout)
        return LidarHeadInputs(feats.view(r, k, -1), w, t / self.scale, rays.dirs, out.acc.detach(),
                               out.depth.detach() / self.scale)

    def _head_features(self, x: torch.Tensor, rays: Rays, ray_of: torch.Tensor, layout: Layout | None) -> torch.Tensor:
        """Per point x [N, 3] on rays ``ray_of`` [N]: RGB seen along the ray, the background's geometry features
        (zeros where an actor owns the point) and the actor flag; [N, ``sample_feature_dim``]."""
        dirs = rays.dirs[ray_of]
        own, field_index = self.owners(x, rays.times[ray_of] if layout is None else None, layout, dirs)
        g = self.cfg.background.geo_features
        feats = x.new_zeros(x.shape[0], sample_feature_dim(g))
        bg = (own.slot < 0).nonzero()[:, 0]
        if len(bg):
            _, geo = self.background.density(x[bg])
            feats[bg, 3:3 + g] = geo.float()
            feats[bg, :3] = self.background.color(geo, dirs[bg], rays.appearance[ray_of[bg]]).float()
        act, _, rgb = self._owned_by_actors(own, field_index)
        if len(act):
            feats[act, :3] = rgb.float()
            feats[act, -1] = 1.0
        return feats

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

    def forward(self, rays: Rays, layout: Layout | None = None, train: TrainingInputs | None = None) -> RenderResult:
        """Render ``rays`` with the actors placed by ``layout`` (None: as logged at each ray's time). ``train``
        (the trainer's, None when rendering) adds what only training needs: stratified samples, colour for some
        rows only, per-frame exposure and the extra density query; the result then carries the loss terms'
        inputs. Without ``train``, outside training, it carries instance ids too."""
        train = train or TrainingInputs(stratified=False)
        if train.points is not None and (train.points.ndim != 2 or train.points.shape[1] != 3):
            raise ValueError(f"query points must be [P, 3], got {list(train.points.shape)}")
        if layout is None:
            layout = self.logged_layout(rays.times)
        prop = self._proposal_pass(rays, train)
        bins = pdf_bins(prop.bins, prop.weights, self.cfg.samples, train.stratified, self.cfg.proposal_uniform)
        bg = self._background_pass(rays, bins, train.points)
        act = self._actor_pass(rays, layout, bg, train.stratified)
        return self._composite(rays, train, prop, bg, act)

    def _proposal_pass(self, rays: Rays, train: TrainingInputs) -> _ProposalPass:
        """Where is the background's mass? The proposal field along evenly spaced bins (plus the query points)."""
        cfg, s, r = self.cfg, self.scale, len(rays)
        pbins = spaced_bins(rays.near / s, cfg.far, cfg.proposal_samples, train.stratified)  # [R, Np + 1]
        pmid = (pbins[:, 1:] + pbins[:, :-1]) / 2
        px = rays.origins[:, None] + rays.dirs[:, None] * (pmid * s)[..., None]
        psigma = self.proposal(_with_points(px.reshape(-1, 3), train.points))
        psigma, point_sigma = psigma[:r * cfg.proposal_samples].view(r, -1), psigma[r * cfg.proposal_samples:]
        pg = spacing(pbins)
        pdelta = pg[:, 1:] - pg[:, :-1]
        return _ProposalPass(pbins, pmid, psigma, pdelta, alpha_weights(psigma, pdelta), point_sigma)

    def _background_pass(self, rays: Rays, bins: torch.Tensor, points: torch.Tensor | None) -> _BackgroundPass:
        """The background field at the final samples (plus the query points)."""
        s, r = self.scale, len(rays)
        mid = (bins[:, 1:] + bins[:, :-1]) / 2
        g = spacing(bins)
        x = rays.origins[:, None] + rays.dirs[:, None] * (mid * s)[..., None]
        sigma, geo = self.background.density(_with_points(x.reshape(-1, 3), points))
        n = r * self.cfg.samples
        return _BackgroundPass(bins, mid, g[:, 1:] - g[:, :-1], sigma[:n].view(r, -1), geo[:n], sigma[n:])

    def _actor_slots(self, rays: Rays, layout: Layout, stratified: bool) -> ActorSlots | None:
        """The nearest ``max_actors_per_ray`` present boxes each ray crosses, and the actor samples in them. None
        when no actor is placed."""
        cfg, s, r = self.cfg, self.scale, len(rays)
        placements = len(layout.field_index)
        if not placements:
            return None
        o, d, na = rays.origins, rays.dirs, cfg.actor_samples
        half = torch.stack([self.actor_fields[i].half_size for i in layout.field_index])[:, None]  # [P, 1, 3]
        t_in, t_out, hit, o_loc, d_loc = box_intervals(o, d, layout.rot, layout.trans, half)  # [P, R], [P, R, 3]
        hit = hit & layout.present
        t_in_all = torch.where(hit, t_in / s, torch.full_like(t_in, float("inf"))).T  # [R, P]
        k = min(cfg.max_actors_per_ray, placements)
        slot_tin, slot_p = torch.topk(t_in_all, k, dim=1, largest=False)  # [R, K]
        valid = torch.isfinite(slot_tin)
        slot_tout = torch.where(valid, (t_out / s).T.gather(1, slot_p), torch.zeros_like(slot_tin))
        slot_tin = torch.where(valid, slot_tin, torch.zeros_like(slot_tin))
        u = torch.linspace(0, 1, na + 1, device=o.device)
        if stratified:
            u = (u + (torch.rand(r, k, na + 1, device=o.device) - 0.5) / na).clamp(0, 1).sort(-1).values
        edges = slot_tin[..., None] + (slot_tout - slot_tin)[..., None] * u  # [R, K, Na + 1]
        ag = spacing(edges)
        return ActorSlots(slot_tin, slot_tout, valid, slot_p, o_loc, d_loc, (edges[..., 1:] + edges[..., :-1]) / 2,
                          ag[..., 1:] - ag[..., :-1])

    def _actor_pass(self, rays: Rays, layout: Layout, bg: _BackgroundPass, stratified: bool) -> _ActorPass | None:
        """Samples in the nearest ``max_actors_per_ray`` boxes each ray crosses, from those actors' fields, and
        the background emptied inside them (``bg.sigma`` is replaced). None when no actor is placed."""
        sl = self._actor_slots(rays, layout, stratified)
        if sl is None:
            return None
        bg.sigma = bg.sigma * ~sl.covers(bg.mid)  # the background is empty where a present actor's box is
        s, r, na = self.scale, len(rays), self.cfg.actor_samples
        k = sl.valid.shape[1]
        # Every (ray, slot) an actor owns, grouped by actor: one gather for the box-frame points, one pass over
        # all the actor fields (evaluate_actor_fields), one scatter back.
        vr, vs = sl.valid.nonzero(as_tuple=True)  # [M] valid (ray, slot) pairs
        by_p = sl.placement[vr, vs].argsort(stable=True)
        vr, vs = vr[by_p], vs[by_p]
        vp = sl.placement[vr, vs]  # [M] placement of each
        counts = torch.bincount(vp, minlength=len(layout.field_index)).tolist()
        o_l, d_l = sl.o_loc[vp, vr], sl.d_loc[vp, vr]  # [M, 3]
        xl = o_l[:, None] + d_l[:, None] * (sl.mid[vr, vs] * s)[..., None]  # [M, Na, 3]
        dl = d_l[:, None].expand(-1, na, 3)
        fields = [self.actor_fields[i] for i in layout.field_index]
        sig, col = evaluate_actor_fields(fields, xl.reshape(-1, 3), dl.reshape(-1, 3), [c * na for c in counts])
        dev = rays.origins.device
        asigma = torch.zeros(r, k, na, device=dev).index_put((vr, vs), sig.view(-1, na)) * sl.valid[..., None]
        argb = torch.zeros(r, k, na, 3, device=dev).index_put((vr, vs), col.view(-1, na, 3))
        return _ActorPass(asigma.reshape(r, -1), sl.delta.reshape(r, -1), sl.mid.reshape(r, -1),
                          argb.reshape(r, -1, 3), sl.placement)

    def _composite(self, rays: Rays, train: TrainingInputs, prop: _ProposalPass, bg: _BackgroundPass,
                   act: _ActorPass | None) -> RenderResult:
        """All samples merged by distance and composited; colour where asked; the sky behind."""
        s = self.scale
        parts = [(bg.sigma, bg.delta, bg.mid)] + ([(act.sigma, act.delta, act.mid)] if act is not None else [])
        all_mid = torch.cat([p[2] for p in parts], 1)
        order = all_mid.argsort(dim=1)
        mid_s = all_mid.gather(1, order)
        sig_s = torch.cat([p[0] for p in parts], 1).gather(1, order)
        del_s = torch.cat([p[1] for p in parts], 1).gather(1, order)
        w = alpha_weights(sig_s, del_s)  # [R, S]
        acc = w.sum(-1)
        out = RenderResult(depth=(w * mid_s).sum(-1) / acc.clamp(min=1e-6) * s, acc=acc,
                           samples=RaySamples(mids=mid_s * s, weights=w))
        if not self.training:  # rendering outputs that no loss uses
            out.instance, out.actor_acc = self._instances(all_mid, order, w, acc,
                                                          act.slot_owner if act is not None else None)
        rows = torch.arange(len(rays), device=w.device) if train.rgb_rows is None else train.rgb_rows.nonzero()[:, 0]
        if len(rows):
            out.rgb = self._color(rays, rows, w, order, bg.geo, [act.rgb] if act is not None else [], acc)
            if self.exposure is not None and train.frames is not None:
                out.rgb = self.exposure(out.rgb, train.frames)
        if self.training:
            out.samples.tau = sig_s * del_s
            out.proposal = ProposalSamples(mids=prop.mid * s, tau=prop.sigma * prop.delta,
                                           interlevel=interlevel_loss(bg.bins, alpha_weights(bg.sigma, bg.delta),
                                                                      prop.bins, prop.weights))
        if train.points is not None and train.points.shape[0]:
            out.points = PointDensities(sigma=bg.point_sigma, sigma_proposal=prop.point_sigma)
        return out


class ActorView:
    """One actor's field in its box frame (x forward, y left, z up, metres): ``(x_local [N, 3], dirs [N, 3]) ->
    (density [N], RGB [N, 3])`` and its box's ``half_size`` [3]."""

    def __init__(self, model: SceneModel, k: int):
        self._field = model.actor_fields[k]
        self.half_size = self._field.half_size

    def __call__(self, x_local: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._field(x_local, dirs)


class BackgroundView:
    """The background in world coordinates with no actor placed: ``(x [N, 3], dirs [N, 3]) -> (density [N],
    RGB [N, 3])`` through ``SceneModel.query``."""

    def __init__(self, model: SceneModel, appearance: int):
        self.model = model
        self.appearance = appearance

    def __call__(self, x: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0]
        q = self.model.query(x, layout=Layout.empty(n, x.device), dirs=dirs,
                             appearance=torch.full((n,), self.appearance, dtype=torch.long, device=x.device),
                             color_rows=torch.ones(n, dtype=torch.bool, device=x.device))
        return q.sigma, q.rgb


def _with_points(x: torch.Tensor, points: torch.Tensor | None) -> torch.Tensor:
    """Sample points [M, 3] with the query points [P, 3] after them (one field call for both)."""
    return x if points is None or points.shape[0] == 0 else torch.cat([x, points.to(x.dtype)])
