"""Training the learned lidar heads (fields/lidar_heads.py) from the log's sweeps, alongside the lidar losses.

The heads learn from every ray of the training sweeps: a sweep with a beam/column layout (drive-log v1.1) and a
described sensor gives all its rays, returned or dropped (``SweepLayout.returned_mask``), so the drop head learns
which rays return nothing; a sweep without a layout gives its returns only (intensity, no drop labels). Each step
draws ``sampling.lidar_head_rays`` of them (from ``SWEEPS_PER_STEP`` sweeps), renders them without gradient (as the
scene renders a sweep) and fits the heads on the render's features, those of the last ``REPLAY_STEPS`` steps' rays:

- intensity: squared error against the recorded intensity on returned rays, in the log's units divided by
  ``intensity_scale`` (1 when the log's intensities lie in 0..1, 255 for 8-bit ones, else their maximum);
- drop: binary cross-entropy of the drop logit against "returned nothing", on rays of sweeps with a layout.

Rays carry their sweep's pose and timestamp, as the other lidar losses do (a sweep's per-column times are not used).
When a run completes, ``final_head_fit`` fits the heads once more on rays rendered with the final fields
(train/head_fit.py).
``auto`` settings become ``on`` when the training sweeps carry what a head learns from (any nonzero intensity; a
layout), ``off`` otherwise. Under torchrun every rank draws its own head rays and the heads' gradients are averaged
over the ranks (``share_heads``, ``average_head_grads``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from ..data.model import DriveLog
from ..fields.lidar_heads import LidarHeadInputs, LidarHeadsConfig
from ..logs import get_logger
from ..render import SceneModel, TrainingInputs
from ..render.rays import Rays
from ..scene.folder import training_sweeps
from .config import TrainConfig
from .head_fit import HeadTargets, fit_heads, head_loss_terms

log = get_logger(__name__)
MAX_POINTS = 32768  # returns kept per sweep without a layout (evenly strided): enough rays for the intensity head
SWEEPS_PER_STEP = 2  # sweeps a step's head rays come from
REPLAY_STEPS = 16  # the heads learn from the rays of this many steps (the last one's rendered afresh)
FINAL_SWEEPS = 8  # sweeps each rendered piece of the last fit's rays comes from


@dataclass
class HeadBatch:
    """``n`` rays drawn from the training sweeps and what the log says about them."""

    rays: Rays
    returned: torch.Tensor  # [n] bool
    intensity: torch.Tensor  # [n] float32 recorded intensity / intensity_scale; NaN where unknown
    drop_known: torch.Tensor  # [n] bool: the ray's sweep has a layout (a missing point there is a drop)


@dataclass
class HeadRays:
    """Every ray the heads learn from, M in all: sweep poses (S), one table of sensor-frame directions (T) and per
    ray its sweep (through ``offsets``), direction row, return and intensity."""

    rot: torch.Tensor  # [S, 3, 3] sensor-to-world rotation of each sweep
    origin: torch.Tensor  # [S, 3]
    time: torch.Tensor  # [S] float64 seconds
    layout: torch.Tensor  # [S] bool: the sweep's drops are known
    table: torch.Tensor  # [T, 3] float32 unit directions in the sensor frame
    offsets: torch.Tensor  # [S + 1] long: sweep s owns rays offsets[s]:offsets[s + 1]
    row: torch.Tensor  # [M] int32 row of ``table``
    returned: torch.Tensor  # [M] bool
    intensity: torch.Tensor  # [M] float16 in the log's units / intensity_scale; NaN where unknown
    intensity_scale: float
    replay: list = field(default_factory=list)  # the last REPLAY_STEPS steps' rendered rays (``head_losses``)

    @property
    def has_intensity(self) -> bool:
        return bool(torch.isfinite(self.intensity).any())

    @property
    def has_drops(self) -> bool:
        return bool(self.layout.any())

    def sample(self, n: int, gen: torch.Generator, near: float, sweeps: int = SWEEPS_PER_STEP) -> HeadBatch:
        """``n`` rays drawn uniformly from ``sweeps`` sweeps, themselves drawn by their number of rays (a render
        poses the actors once per distinct time: a few sweeps a step cost much less than one ray from each)."""
        counts = (self.offsets[1:] - self.offsets[:-1]).double()
        pick = torch.multinomial(counts, min(sweeps, len(counts)), replacement=True, generator=gen)
        s = pick[torch.randint(0, len(pick), (n,), generator=gen)]
        idx = self.offsets[s] + (torch.rand(n, generator=gen, dtype=torch.float64) * counts[s]).long()
        dirs = torch.einsum("nij,nj->ni", self.rot[s], self.table[self.row[idx].long()])
        rays = Rays(self.origin[s], dirs, self.time[s], torch.zeros(n, dtype=torch.long), torch.full((n,), near),
                    torch.ones(n))
        return HeadBatch(rays, self.returned[idx], self.intensity[idx].float(), self.layout[s])


def _scale(values: list[np.ndarray]) -> float:
    top = max((float(v.max()) for v in values if len(v)), default=1.0)
    return 1.0 if top <= 1.0 else 255.0 if top <= 255.0 else top


def head_rays(drive: DriveLog, holdout: set[str]) -> HeadRays | None:
    """The rays of ``drive``'s training sweeps (those ``training_sweeps`` keeps) that say something to a head;
    None when none does."""
    tables: list[np.ndarray] = []
    sensor_rows: dict[str, int] = {}
    n_rows = 0
    poses, times, layouts, rows, returned, intensity = [], [], [], [], [], []
    for sweep in training_sweeps(drive, holdout):
        pts = sweep.load(drive.root)
        known = bool(np.any(pts[:, 3] != 0))
        sensor = drive.lidar_sensors.get(sweep.sensor)
        lay = sweep.load_layout(drive.root) if sensor is not None else None
        if lay is not None and lay.problem(sensor) is None:
            if sweep.sensor not in sensor_rows:
                sensor_rows[sweep.sensor] = n_rows
                tables.append(sensor.directions().astype(np.float32))
                n_rows += sensor.rays
            flat = lay.beam.astype(np.int64) * sensor.columns + lay.column
            ret = np.zeros(sensor.rays, bool)
            ret[flat] = True
            inten = np.full(sensor.rays, np.nan, np.float32)
            if known:
                inten[flat] = pts[:, 3]
            r = sensor_rows[sweep.sensor] + np.arange(sensor.rays)
        else:
            rng = np.linalg.norm(pts[:, :3], axis=1)
            keep = np.nonzero(rng > 1e-6)[0]
            keep = keep[::max(1, len(keep) // MAX_POINTS)]
            if not known or not len(keep):
                continue
            tables.append((pts[keep, :3] / rng[keep, None]).astype(np.float32))
            r = n_rows + np.arange(len(keep))
            n_rows += len(keep)
            ret, inten = np.ones(len(keep), bool), pts[keep, 3].astype(np.float32)
        poses.append(sweep.s2w)
        times.append(sweep.timestamp)
        layouts.append(lay is not None and lay.problem(sensor) is None)
        rows.append(r.astype(np.int32))
        returned.append(ret)
        intensity.append(inten)
    if not rows:
        return None
    scale = _scale([v[np.isfinite(v)] for v in intensity])
    s2w = torch.as_tensor(np.stack(poses), dtype=torch.float32)
    counts = torch.tensor([0] + [len(r) for r in rows])
    return HeadRays(s2w[:, :3, :3].contiguous(), s2w[:, :3, 3].contiguous(), torch.tensor(times, dtype=torch.float64),
                    torch.tensor(layouts), torch.as_tensor(np.concatenate(tables)), counts.cumsum(0),
                    torch.as_tensor(np.concatenate(rows)), torch.as_tensor(np.concatenate(returned)),
                    torch.as_tensor(np.concatenate(intensity) / scale).half(), scale)


def _decide(mode: str, available: bool, name: str, needs: str) -> str:
    """``on`` or ``off`` for one head's setting ``mode`` (auto, on or off)."""
    if mode == "on" and not available:
        raise ValueError(f"config.model.lidar_heads.{name}: on, but {needs}")
    return "on" if mode == "on" or (mode == "auto" and available) else "off"


def share_heads(model) -> None:
    """Under torchrun: give every rank rank 0's heads and keep DDP off them. The head losses run outside the
    wrapped model's forward (on their own rays), which DDP cannot follow; ``average_head_grads`` averages their
    gradients instead."""
    if model.lidar_heads is None:
        return
    names = [f"lidar_heads.{n}" for n, _ in model.lidar_heads.named_parameters()]
    names += [f"lidar_heads.{n}" for n, _ in model.lidar_heads.named_buffers()]
    torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, names)
    for t in list(model.lidar_heads.parameters()) + list(model.lidar_heads.buffers()):
        dist.broadcast(t.data, src=0)


def average_head_grads(model) -> None:
    """Under torchrun, after backward: each head parameter's gradient averaged over the ranks (their own rays)."""
    if model.lidar_heads is None:
        return
    world = dist.get_world_size()
    for p in model.lidar_heads.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def setup_lidar_heads(heads: LidarHeadsConfig, drive: DriveLog, holdout: set[str], resume: bool) -> HeadRays | None:
    """A fresh run turns ``heads``' auto settings into on or off (in place: scene.json records them) from what
    ``drive``'s training sweeps carry; a resumed run keeps its scene's. Returns the rays to train the heads on,
    or None when no head is on."""
    data = head_rays(drive, holdout) if heads.any_on or not resume else None
    if not resume:
        heads.intensity = _decide(heads.intensity, data is not None and data.has_intensity, "intensity",
                                  "no training sweep of the log carries intensity")
        heads.drop = _decide(heads.drop, data is not None and data.has_drops, "drop",
                             "no training sweep has a beam/column layout of a described sensor (drive-log v1.1)")
    if not heads.any_on:
        return None
    log.info("learned lidar heads: intensity %s, drop %s (%d rays of training sweeps)", heads.intensity, heads.drop,
             len(data.row))
    return data


@dataclass
class _Rendered:
    """One step's head rays as the heads read them, and what the log says of them (the replay keeps a few)."""

    inputs: LidarHeadInputs
    targets: HeadTargets


def _render(model: SceneModel, data: HeadRays, n: int, near_frac: float, gen: torch.Generator,
            sweeps: int = SWEEPS_PER_STEP) -> _Rendered:
    """``n`` rays of ``sweeps`` sweeps drawn with ``gen``, rendered without gradient."""
    device = model.lidar_heads.intensity_scale.device
    b = data.sample(n, gen, float(model.scale * near_frac), sweeps)
    rays = b.rays.to(device)
    with torch.no_grad():
        out = model(rays, train=TrainingInputs(stratified=False, rgb_rows=torch.zeros(n, dtype=torch.bool,
                                                                                        device=device)))
        inputs = model.lidar_head_inputs(rays, out)
    return _Rendered(inputs, HeadTargets(b.intensity.to(device), b.returned.to(device), b.drop_known.to(device)))


def head_losses(model: SceneModel, data: HeadRays, cfg: TrainConfig, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The heads' losses on this step's ``cfg.sampling.lidar_head_rays`` rays (drawn with ``gen``, rendered
    without gradient: only the heads learn from these losses) and on those of the ``REPLAY_STEPS - 1`` steps
    before (kept in ``data.replay``, their features as they were then: the fields change slowly, and the heads
    see many times more rays for the cost of one render)."""
    heads = model.lidar_heads
    if not cfg.sampling.lidar_head_rays or heads is None:
        return {}
    heads.intensity_scale.fill_(data.intensity_scale)
    data.replay = (data.replay + [_render(model, data, cfg.sampling.lidar_head_rays, cfg.sampling.near_frac,
                                          gen)])[-REPLAY_STEPS:]
    pred = heads(LidarHeadInputs.cat([r.inputs for r in data.replay]))
    return head_loss_terms(pred, HeadTargets.cat([r.targets for r in data.replay]), cfg.losses.intensity_weight,
                           cfg.losses.drop_weight)


def final_head_fit(model: SceneModel, data: HeadRays, cfg: TrainConfig, gen: torch.Generator) -> dict[str, float]:
    """The heads' last fit on the final fields (train/head_fit.py): ``cfg.head_fit.rays`` rays of the training
    sweeps, ``FINAL_SWEEPS`` sweeps per rendered piece. Returns the fit's losses before and after."""
    if model.lidar_heads is None:
        return {}
    model.lidar_heads.intensity_scale.fill_(data.intensity_scale)

    def render(n: int) -> tuple[LidarHeadInputs, HeadTargets]:
        r = _render(model, data, n, cfg.sampling.near_frac, gen, FINAL_SWEEPS)
        return r.inputs, r.targets

    was_training = model.training
    model.train()  # the rays render as the training steps' head rays do
    try:
        return fit_heads(model.lidar_heads, render, cfg.head_fit,
                         (cfg.losses.intensity_weight, cfg.losses.drop_weight), gen)
    finally:
        model.train(was_training)
