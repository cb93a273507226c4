"""Reconstruction: fit a SceneModel to a drive log, writing a scene folder (docs/scene-format.md).

Stops at the step or time budget, whichever comes first. Checkpoints are atomic and written every
``checkpoint_every`` steps and on Ctrl-C / SIGTERM; ``resume`` continues with the optimiser state.
A non-finite loss stops the run and keeps the last good checkpoint. Under ``torchrun`` each rank
samples its own rays and gradients are averaged (DDP; gloo on CPU, NCCL on GPU).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from ..data.io import load_log
from ..logs import get_logger
from ..render import RenderResult, SceneModel, TrainingInputs
from ..render.occupancy import build_occupancy
from ..scene.checkpoint import (CHECKPOINT, load_checkpoint, load_model_state, remove_stale_temporaries, save_atomic,
                         save_checkpoint, temp_name, write_failed)
from ..scene.folder import (MODEL_FILE, SCENE_FILE, SceneInfo, find_log, log_reference, read_scene_info,
                            resolve_device, write_scene_info)
from ..scene.occupancy_file import occupancy_config, save_occupancy
from .camera_only import ray_distortion
from .config import TrainConfig, apply_setting, scene_config
from .data import TrainData, parse_holdout, scene_box
from .decisions import decide
from .error_map import ErrorMap
from .free_columns import FreeColumns, free_columns_of
from .lidar_heads import HeadRays, average_head_grads, final_head_fit, head_losses, setup_lidar_heads, share_heads
from .lidar_prior import train_lidar_prior
from .optim import adam
from .pose_refine import refine_decision, track_refine_decision, training_rig

log = get_logger(__name__)
METRICS = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class TrainingInterrupted(RuntimeError):
    """Ctrl-C or SIGTERM: a checkpoint was written, ``--resume`` continues."""


@dataclass
class TrainResult:
    scene_dir: Path
    step: int
    elapsed: float
    status: str  # complete | interrupted


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def make_optimizer(model: torch.nn.Module, lr: float, table_lr_scale: float = 1.0,
                   exposure_lr_scale: float = 1.0, pose_lr_scale: float = 0.2,
                   rotation_lr_scale: float = 0.02, track_lr_scale: float = 0.2,
                   yaw_lr_scale: float = 0.2) -> torch.optim.Optimizer:
    """Adam (:func:`simrecon.train.optim.adam`) in groups: the hash tables (learning rate times
    ``table_lr_scale``), the per-frame exposure (times ``exposure_lr_scale``), the camera pose corrections'
    translations (times ``pose_lr_scale``) and rotations (times ``rotation_lr_scale``), the actor track corrections'
    translations (times ``track_lr_scale``) and yaws (times ``yaw_lr_scale``; these four groups marked "poses")
    and the rest; each group's "scale" is kept so the schedule can set ``lr * scale``."""
    named = list(model.named_parameters())
    tables = [p for n, p in named if n.endswith("grid.table")]
    exposure = [p for n, p in named if n.startswith("exposure.")]
    trans = [p for n, p in named if n == "poses.trans"]
    rot = [p for n, p in named if n == "poses.rot"]
    track = [p for n, p in named if n == "track_fix.trans"]
    yaw = [p for n, p in named if n == "track_fix.yaw"]
    ids = {id(p) for p in tables + exposure + trans + rot + track + yaw}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": tables, "lr": lr * table_lr_scale, "scale": table_lr_scale},
              {"params": rest, "lr": lr, "scale": 1.0},
              {"params": exposure, "lr": lr * exposure_lr_scale, "scale": exposure_lr_scale},
              {"params": trans, "lr": lr * pose_lr_scale, "scale": pose_lr_scale, "poses": True},
              {"params": rot, "lr": lr * rotation_lr_scale, "scale": rotation_lr_scale, "poses": True},
              {"params": track, "lr": lr * track_lr_scale, "scale": track_lr_scale, "poses": True},
              {"params": yaw, "lr": lr * yaw_lr_scale, "scale": yaw_lr_scale, "poses": True}]
    return adam([g for g in groups if g["params"]], lr)


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """``schedule.lr`` for the first ``lr_hold`` of the budget, then exponential decay to ``lr_final`` at its end."""
    s = cfg.schedule
    decay = (min(progress, 1.0) - s.lr_hold) / max(1.0 - s.lr_hold, 1e-9)
    return s.lr * (s.lr_final / s.lr) ** max(decay, 0.0)


def _grads_finite(model: torch.nn.Module) -> bool:
    """False when any gradient holds a NaN or an infinity: they propagate into the sum of the sums. One pass
    over the ~70 MB of table gradients at memory speed (2.5 ms a step; clip_grad_norm_'s max-norm took 6)."""
    sums = [p.grad.sum() for p in model.parameters() if p.grad is not None]
    return not sums or bool(torch.isfinite(torch.stack(sums).sum()))


def _floater_penalty(tau: torch.Tensor, near: torch.Tensor) -> torch.Tensor:
    """Mean over rays of log1p(optical thickness over ``near``), counted only on rays that are opaque there
    (thickness > ln 2: more than half the light stopped): tau, near [R, S]. A healthy field is never opaque
    where lidar proves empty space, so this only acts on floaters, and leaves a good run alone."""
    thick = (tau * near).sum(-1)  # [R]
    return torch.mean(torch.log1p(thick) * (thick.detach() > math.log(2.0)))


def compute_losses(model: SceneModel, out: RenderResult, target: torch.Tensor, n_cam: int,
                   ranges: torch.Tensor | None, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Photometric loss on the first ``n_cam`` rays, lidar losses on the rest."""
    losses = {"rgb": torch.mean((out.rgb - target) ** 2)}
    if ranges is not None:
        s = model.scale
        depth = out.depth[n_cam:]
        acc = out.acc[n_cam:]
        mids = out.samples.mids[n_cam:]
        margin = cfg.losses.lidar_margin * ranges[:, None] + 0.1 * s * cfg.sampling.near_frac
        depth_weight, beyond_weight = cfg.lidar_loss_weights()
        if depth_weight:
            losses["depth"] = depth_weight * torch.mean(torch.abs(depth - ranges) / s)
        # Empty space before the return (minus a margin), on the weights: once a surface is opaque its penalty
        # saturates, so lidar that disagrees with the cameras (moving actors, track errors) cannot erode it.
        w = out.samples.weights[n_cam:]
        losses["empty"] = cfg.losses.empty_weight * torch.mean((w * (mids < ranges[:, None] - margin)).sum(-1))
        # Weight past the return (plus the margin): what the expected-range L1 says, without its pull on the
        # weight in front when a little of it leaks to the far plane (used with the lidar prior).
        if beyond_weight:
            losses["beyond"] = beyond_weight * torch.mean((w * (mids > ranges[:, None] + margin)).sum(-1))
        # Floaters: the nearer half of the way to the return must be clear whatever the field has learned. The
        # empty-space penalty has no gradient left once the field is opaque there (d weight / d density ~
        # exp(-thickness)), so an early collapse in front of the cameras never cleared (learning rate 0.015,
        # a 2^18 table: 16-18 dB); this one acts on the optical thickness of such rays through log1p (~linear
        # near 0, gradient bounded and alive).
        near = mids < 0.5 * ranges[:, None]
        losses["floaters"] = cfg.losses.floater_weight * _floater_penalty(out.samples.tau[n_cam:], near)
        # The same for the proposal. The interlevel loss only asks it to cover the background's weights: if both
        # go opaque near the camera it is satisfied, and the background never gets samples at the surface again.
        pnear = out.proposal.mids[n_cam:] < 0.5 * ranges[:, None]
        losses["proposal_floaters"] = cfg.losses.floater_weight * _floater_penalty(out.proposal.tau[n_cam:], pnear)
        losses["opacity"] = cfg.losses.opacity_weight * torch.mean((1 - acc) ** 2)
    if out.proposal is not None:
        losses["interlevel"] = cfg.losses.interlevel_weight * out.proposal.interlevel
    recipe = cfg.priors.camera_only
    if recipe.mode == "on" and recipe.distortion_weight > 0:  # the camera-only recipe (train/camera_only.py)
        losses["distortion"] = recipe.distortion_weight * ray_distortion(out.samples.mids[:n_cam] / model.scale,
                                                                         out.samples.weights[:n_cam])
    return losses


def step_losses(net: torch.nn.Module, model: SceneModel, rays, target: torch.Tensor, n_cam: int,
                ranges: torch.Tensor | None, cfg: TrainConfig, columns: FreeColumns | None,
                gen: torch.Generator, frames: torch.Tensor | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """Render a training batch (``n_cam`` camera rays first, then lidar rays) through ``net`` (the model, or its
    DDP wrapper) and compute every loss of a step: :func:`compute_losses` and the free-columns prior on points
    drawn with ``gen``. ``frames`` [n_cam]: the training frame of each camera ray, for the model's per-frame
    exposure. Returns (the render, the losses); ``benchmarks/step.py`` times this same step."""
    rgb_rows = torch.zeros(len(rays), dtype=torch.bool, device=target.device)
    rgb_rows[:n_cam] = True
    points = columns.sample(cfg.priors.free_columns.points, gen).to(target.device) if columns is not None else None
    out = net(rays, train=TrainingInputs(stratified=True, rgb_rows=rgb_rows, frames=frames, points=points))
    losses = compute_losses(model, out, target, n_cam, ranges, cfg)
    if columns is not None:
        losses.update(columns.loss(out.points, model.scale, cfg.priors.free_columns.weight))
    return out, losses


def _check_fresh_target(scene_dir: Path) -> None:
    """Refuse to start a new scene in ``scene_dir`` when it holds a finished or resumable one (weights or a
    checkpoint), or is not a scene folder. A scene folder whose run never reached its first checkpoint (killed,
    or a full disk) holds nothing to keep: it starts afresh, with a warning."""
    if not scene_dir.exists() and not scene_dir.is_symlink():
        return
    if not scene_dir.is_dir():
        raise FileExistsError(f"{scene_dir}: exists and is not a folder; choose another -o")
    if (scene_dir / MODEL_FILE).exists() or (scene_dir / CHECKPOINT).exists():
        raise FileExistsError(f"{scene_dir} already holds a scene (use --resume to continue it, or another -o)")
    if (scene_dir / SCENE_FILE).exists():
        log.warning("%s: a scene whose training never reached its first checkpoint (killed, or a full disk): "
                    "starting it afresh", scene_dir)
        return
    other = sorted(p.name for p in scene_dir.iterdir() if p.name != METRICS and not _is_temporary(p.name))
    if other:
        listed = ", ".join(other[:3]) + (", ..." if len(other) > 3 else "")
        raise FileExistsError(f"{scene_dir}: not a scene folder (it holds {listed}); reconstruct into a new or "
                              "empty folder")


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and ".tmp" in name


def _start(scene_dir: Path, log_path: Path | None, cfg: TrainConfig, resume: bool, overrides: dict | None,
           rank: int) -> tuple[TrainConfig, Path, SceneInfo | None, dict | None]:
    """The run's configuration, drive log, recorded scene and checkpoint (None: start afresh). ``resume`` takes
    them from ``scene_dir``, the log too unless ``log_path`` names where it is now; a scene without a checkpoint
    (its run died before the first) restarts with its recorded settings. Rank 0 then removes the temporary files
    of dead writers."""
    info, state = None, None
    if not resume and log_path is None:
        raise ValueError("reconstruct: a drive log is needed to start a scene (or resume=True)")
    if resume:
        info = read_scene_info(scene_dir)
        cfg = scene_config(scene_dir, info) if info.config else cfg
        for key, value in (overrides or {}).items():  # dotted names (old flat ones too), type-checked
            apply_setting(cfg, key, value, "reconstruct overrides", resume=True)
        log_path = find_log(scene_dir, info, log_path)
        if (scene_dir / CHECKPOINT).exists():
            state = load_checkpoint(scene_dir / CHECKPOINT)
        elif (scene_dir / MODEL_FILE).exists():
            raise ValueError(f"{scene_dir}: no {CHECKPOINT} to resume from, yet finished weights ({MODEL_FILE}): "
                             "resuming would train them again from scratch; reconstruct into another -o")
        elif rank == 0:
            log.warning("%s: no %s (training stopped before its first checkpoint): starting afresh with the "
                        "settings of its %s", scene_dir, CHECKPOINT, SCENE_FILE)
    elif rank == 0:
        _check_fresh_target(scene_dir)
    if rank == 0:
        stale = remove_stale_temporaries(scene_dir, (SCENE_FILE,)) + remove_stale_temporaries(
            scene_dir.parent, folders=scene_dir.name)
        for p in stale:
            log.info("removed %s (left by a run that stopped while writing it)", p)
    return cfg, log_path, info, state


def _first_write(scene_dir: Path, info: SceneInfo) -> None:
    """Write scene.json. A new ``scene_dir`` is made under a temporary name with its scene.json and renamed into
    place, so that a kill never leaves a scene folder without one (which ``--resume`` could not restart); when
    the write fails (a full disk) nothing is left."""
    if scene_dir.is_dir():
        write_scene_info(scene_dir, info)
        return
    scene_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(scene_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write_scene_info(tmp, info)
        os.replace(tmp, scene_dir)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if tmp.name in str(exc):  # say the folder the user named, not the temporary one
            raise OSError(str(exc).replace(str(tmp), str(scene_dir))) from exc
        raise


class _Metrics:
    """``metrics.jsonl``: one JSON record a line (rank 0). A failed write (a full disk) is one OSError line
    naming the file."""

    def __init__(self, path: Path, append: bool):
        self.path = path
        self.file = open(path, "a" if append else "w")  # a run that starts afresh drops a dead run's records

    def write(self, rec: dict, scene_dir: Path) -> None:
        try:
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
        except OSError as exc:
            raise write_failed(self.path, exc, f"training stopped at step {rec.get('step')}: free space, then "
                                               f"continue with simrecon reconstruct --resume -o {scene_dir}") from exc

    def close(self) -> None:
        try:
            self.file.close()
        except OSError:  # the buffered tail of a failed write; that failure is what gets reported
            pass


@dataclass
class TrainState:
    """Everything a training run works with and changes: built by ``Trainer.setup``, advanced by
    ``Trainer.step``; a reader at any line of the trainer knows that this is the state it may touch."""

    cfg: TrainConfig
    scene_dir: Path
    rank: int
    world: int
    device: torch.device
    data: TrainData
    model: SceneModel
    optim: torch.optim.Optimizer
    info: SceneInfo  # scene.json as this run writes it
    resume: bool  # continues a checkpoint (else: a fresh start)
    step: int = 0
    elapsed0: float = 0.0  # seconds of the budget spent before ``start``
    start: float = 0.0  # time.time() when the training loop started
    columns: FreeColumns | None = None
    error_map: ErrorMap | None = None
    net: torch.nn.Module | None = None  # the model, or its DDP wrapper
    metrics: _Metrics | None = None  # rank 0's
    frame_rig: torch.Tensor | None = None  # [F] rig time of each training frame (pose refinement on), else None
    heads: HeadRays | None = None  # the sweeps' rays the learned lidar heads train on (None: no heads)
    poses_learn: bool = True  # False before model.poses.start of the budget: the pose groups' learning rate is 0

    def elapsed(self) -> float:
        return self.elapsed0 + time.time() - self.start

    def checkpoint(self) -> None:
        if self.rank != 0:
            return
        try:
            save_checkpoint(self.scene_dir / CHECKPOINT, self.model.state_dict(), self.optim.state_dict(), self.step,
                            self.elapsed(), {"error_map": self.error_map.error} if self.error_map is not None else None)
        except OSError as exc:
            raise OSError(f"{exc}; training stopped at step {self.step}: free space, then continue with "
                          f"simrecon reconstruct --resume -o {self.scene_dir} (or start again)") from exc


def _device(cfg: TrainConfig, world: int, local_rank: int) -> torch.device:
    """The run's device; under torchrun each rank's own GPU, and the process group started."""
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def _setup(scene_dir: Path, log_path: Path, cfg: TrainConfig, info: SceneInfo | None, state: dict | None,
           rank: int, world: int, device: torch.device) -> TrainState:
    """Load the log, build the model and optimiser (restored from ``state``, a checkpoint, when given) and write
    scene.json. A resumed run keeps the held-out frames and box of ``info``."""
    resume = state is not None
    drive = load_log(log_path)
    holdout = parse_holdout(cfg.holdout, drive) if not resume else set(info.holdout)
    if rank == 0 and not resume and not holdout and cfg.holdout not in ("", "none"):
        longest = max((len(f) for f in drive.cameras.values()), default=0)
        log.warning("--holdout %s holds out no frame of %s (at most %d frames per camera): eval will have no "
                    "held-out figures; use every:2 or a file of image paths", cfg.holdout, log_path, longest)
    sampling = cfg.sampling
    box = scene_box(drive, sampling.box_lidar_range, aspect_cap=sampling.box_aspect_cap) if not resume else info.box
    data = TrainData(drive, holdout, near=sampling.near_frac * float(np.mean(box.half)), device=device,
                     rolling_shutter=sampling.rolling_shutter)
    if rank == 0 and data.shutter:
        _log_shutter(data)
    decide(cfg, data, state, rank)  # model.frame_exposure and priors.camera_only.mode: auto resolved, printed
    rig, frame_rig = _pose_rig(cfg, drive, data, state, rank)
    heads = setup_lidar_heads(cfg.model.lidar_heads, drive, holdout, resume)  # before the model: auto -> on/off
    model = SceneModel(cfg.model, box, drive.actors, data.num_appearance, frames=(data.app, data.times),
                       rig=rig, refine_tracks=_track_refine(cfg, drive, state, rank)).to(device)
    optim = make_optimizer(model, cfg.schedule.lr, cfg.schedule.table_lr_scale, cfg.schedule.exposure_lr_scale,
                           cfg.model.poses.lr / cfg.schedule.lr, cfg.model.poses.rotation_lr / cfg.schedule.lr,
                           cfg.model.tracks.lr / cfg.schedule.lr, cfg.model.tracks.yaw_lr / cfg.schedule.lr)
    source_log, source_log_absolute = log_reference(scene_dir, log_path)  # a resume records where the log is now
    info_out = SceneInfo(source_log=source_log, source_log_absolute=source_log_absolute, box=box, near=data.near,
                         camera_names=data.camera_names, actors=[a.id for a in drive.actors],
                         holdout=sorted(holdout), config=cfg.to_json(), status="training")
    run = TrainState(cfg, scene_dir, rank, world, device, data, model, optim, info_out, resume, heads=heads)
    run.error_map = data.error_map(sampling.error_tiles) if sampling.error_sampling > 0 else None
    run.frame_rig = frame_rig.to(device) if frame_rig is not None else None
    if resume:
        _restore(run, state)
    run.info.step, run.info.elapsed = run.step, run.elapsed0
    if rank == 0:
        _first_write(scene_dir, run.info)
    return run


def _log_shutter(data: TrainData) -> None:
    ms = sorted({round(float(r) * 1000, 1) for r in data.readout if r > 0})
    log.info("rolling shutter: each pixel posed at its own line's exposure (readouts %s ms; "
             "sampling.rolling_shutter=false turns it off)", ", ".join(f"{m:g}" for m in ms[:4]))


def _track_refine(cfg: TrainConfig, drive, state: dict | None, rank: int) -> bool:
    """Actor track refinement (render/track_refine.py) on or off: a fresh run decides by ``cfg.model.tracks`` and the
    log, a resumed one keeps what its checkpoint has; the decision is logged."""
    if state is not None:
        on, why = "track_fix.trans" in state.get("model", {}), "resumed: as the checkpoint has it"
    else:
        on, why = track_refine_decision(cfg.model.tracks, drive, cfg.model.actors)
    if rank == 0:
        log.info("actor track refinement %s (%s)", "on" if on else "off", why)
    return on


def _pose_rig(cfg: TrainConfig, drive, data: TrainData, state: dict | None,
              rank: int) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """Camera pose refinement (train/pose_refine.py): ((rig times [T], pivots [T, 3]), each training frame's rig
    time [F]) when it is on, (None, None) when off. A fresh run decides by ``cfg.model.poses`` and the log; a resumed
    one keeps what its checkpoint has."""
    if state is not None:
        on, why = "poses.trans" in state.get("model", {}), "resumed: as the checkpoint has it"
    else:
        on, why = refine_decision(cfg.model.poses, drive)
    if rank == 0:
        log.info("camera pose refinement %s (%s)", "on" if on else "off", why)
    if not on:
        return None, None
    times, pivots, frame_rig = training_rig(data.times, data.c2w)
    return (times, pivots), frame_rig


def _restore(run: TrainState, state: dict) -> None:
    """Continue from a checkpoint: weights (refused in one line when they are another model's), Adam's state
    (started anew when it does not fit), the step, the time spent and the error map (rank 0's)."""
    ckpt_path = run.scene_dir / CHECKPOINT
    load_model_state(run.model, state["model"], ckpt_path)
    if state.get("optimizer"):
        try:
            run.optim.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:  # other parameter groups, or malformed
            log.warning("%s: optimiser state not restored (%s); Adam starts anew", ckpt_path, exc)
    run.step, run.elapsed0 = int(state["step"]), float(state["elapsed"])
    saved = state.get("error_map")  # a map of another shape starts anew
    if run.error_map is not None and isinstance(saved, torch.Tensor) and saved.shape == run.error_map.error.shape:
        run.error_map.error = saved.float().cpu().clone()


def _priors(run: TrainState, on_log: Callable[[dict], None] | None) -> None:
    """Before the first step of a fresh run, the lidar prior; on every run, the free-columns map. The time they
    take of a fresh run counts in its budget."""
    cfg, priors = run.cfg, run.cfg.priors
    if not run.resume and run.data.has_lidar and priors.lidar_prior.steps:  # before DDP: it broadcasts rank 0's
        t0 = time.time()
        n_prior = priors.lidar_prior.steps

        def prior_step(i: int) -> None:
            if on_log and run.rank == 0 and (i % 10 == 0 or i == n_prior):
                on_log({"stage": f"lidar prior {i}/{n_prior}"})

        prior = train_lidar_prior(run.model, run.data, priors.lidar_prior, cfg.sampling.near_frac, cfg.seed,
                                  prior_step)
        run.elapsed0 = time.time() - t0
        log.info("lidar prior: %d steps in %.1f s, %s", n_prior, run.elapsed0, prior)
    t0 = time.time()
    run.columns = free_columns_of(run.data, run.info.box, priors.free_columns, cfg.seed)
    if run.columns is not None:
        if not run.resume:
            run.elapsed0 += time.time() - t0
        log.info("free columns: %d of %.2f m in %.1f s", len(run.columns), run.columns.cell, time.time() - t0)
    run.net = run.model
    if run.world > 1:
        share_heads(run.model)  # before wrapping: DDP leaves them to us
        run.net = torch.nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
            find_unused_parameters=True)


def _done(run: TrainState, elapsed: float, budget_s: float, stop: StopSignal) -> bool:
    done = run.step >= run.cfg.budget.steps or elapsed >= budget_s or stop.requested
    if run.world > 1:  # every rank stops at the same step
        flag = torch.tensor([1.0 if done else 0.0], device=run.device)
        dist.all_reduce(flag)
        done = flag.item() > 0
    return done


def _step(run: TrainState, gen: torch.Generator, batch: int, lidar_batch: int, n_err: int,
          lr: float) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """One optimiser step at learning rate ``lr``; (the loss, the losses, each camera ray's squared error)."""
    cfg, data = run.cfg, run.data
    for g in run.optim.param_groups:
        g["lr"] = lr * g.get("scale", 1.0) if run.poses_learn or not g.get("poses") else 0.0
    pixels = data.draw_pixels(batch, gen, run.error_map, n_err)  # [batch], the error-map share first
    rays, target = data.pixel_rays(pixels)
    frames = data.frame_of(pixels).to(run.device)
    if run.model.poses is not None:  # camera rays only: lidar sweeps are taken as posed
        rays = run.model.poses.correct_rays(rays, run.frame_rig[frames])
    ranges = None
    if lidar_batch:
        lrays, ranges = data.sample_lidar(lidar_batch, gen)
        rays = type(rays).cat([rays, lrays])
    out, losses = step_losses(run.net, run.model, rays, target, batch, ranges, cfg, run.columns, gen, frames)
    if run.heads is not None:  # the learned lidar heads, on their own rays (train/lidar_heads.py)
        losses.update(head_losses(run.model, run.heads, cfg, gen))
    if run.model.poses is not None:
        losses["pose_reg"] = cfg.model.poses.reg_weight * run.model.poses.regulariser()
    if run.model.track_fix is not None:
        losses["track_reg"] = run.model.track_fix.regulariser(cfg.model.tracks.reg_weight,
                                                              cfg.model.tracks.smooth_weight)
    loss = sum(losses.values())
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss became {loss.item()} at step {run.step}")
    run.optim.zero_grad(set_to_none=True)
    loss.backward()
    if run.world > 1:
        average_head_grads(run.model)
    if not _grads_finite(run.model):  # caught before the step: the weights are still good
        raise TrainingDiverged(f"gradients became non-finite at step {run.step}")
    run.optim.step()
    sq_err = (out.rgb.detach() - target).square().mean(-1)  # [batch]
    if run.error_map is not None:
        run.error_map.update(pixels, sq_err)
    return loss, losses, sq_err


def _train(run: TrainState, on_log: Callable[[dict], None] | None, stop: StopSignal) -> str:
    """Steps until the step or time budget is spent or ``stop`` is requested; "complete" or "interrupted"."""
    cfg, sampling, budget = run.cfg, run.cfg.sampling, run.cfg.budget
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + run.rank + run.step)
    batch = max(1, sampling.batch_rays // run.world)
    lidar_batch = max(1, sampling.lidar_rays // run.world) if run.data.has_lidar and sampling.lidar_rays > 0 else 0
    n_err = int(round(batch * sampling.error_sampling)) if run.error_map is not None else 0
    budget_s = budget.minutes * 60.0
    run.start = time.time()
    last_log_t, last_log_step = run.start, run.step
    run.model.train()
    while True:
        elapsed = run.elapsed()
        if _done(run, elapsed, budget_s, stop):
            return "interrupted" if stop.requested else "complete"
        progress = max(run.step / max(budget.steps, 1), elapsed / max(budget_s, 1e-9))
        lr = learning_rate(cfg, progress)
        run.poses_learn = progress >= cfg.model.poses.start
        loss, losses, sq_err = _step(run, gen, batch, lidar_batch, n_err, lr)
        run.step += 1
        if run.step % budget.checkpoint_every == 0:
            run.checkpoint()
        if run.rank == 0 and (run.step % budget.log_every == 0 or run.step == 1):
            now = time.time()
            rays_per_s = ((run.step - last_log_step) * (batch + lidar_batch) * run.world
                          / max(now - last_log_t, 1e-9))
            # PSNR of the uniformly drawn pixels: the error-map share is drawn where the error is, by design
            mse = (sq_err[n_err:] if n_err < batch else sq_err).mean().item()
            rec = {"step": run.step, "time": round(run.elapsed0 + now - run.start, 2), "loss": round(loss.item(), 6),
                   "psnr": round(-10 * math.log10(max(mse, 1e-12)), 3), "rays_per_s": round(rays_per_s, 1),
                   "lr": lr, **{k: round(v.item(), 6) for k, v in losses.items()}}
            last_log_t, last_log_step = now, run.step
            run.metrics.write(rec, run.scene_dir)
            if on_log:
                on_log({**rec, "budget_steps": budget.steps, "budget_s": budget_s})


def _on_sigterm(rank: int, stop: StopSignal):
    """Rank 0 requests ``stop`` on SIGTERM (training then ends cleanly); the previous handler, to restore."""
    if rank != 0 or not hasattr(signal, "SIGTERM"):
        return None
    try:
        return signal.signal(signal.SIGTERM, lambda *_: setattr(stop, "requested", True))
    except ValueError:  # not the main thread
        return None


@dataclass
class StopSignal:
    """Set by SIGTERM on rank 0 (or by a caller); training then ends cleanly after the current step."""

    requested: bool = False


class Trainer:
    """One training run of a scene: ``setup`` (the log, model and optimiser, restored from the checkpoint when
    resuming; the priors; scene.json), ``step`` (one optimiser step), ``checkpoint``, and ``run`` (all of it:
    steps until a budget is spent or a stop is requested, then the weights). Distributed training (torchrun),
    resume, signals and budgets each live in one place: ``_dist_info``/``_device``, ``_start``/``_restore``,
    ``StopSignal``, ``_done``."""

    def __init__(self, log_path: Path | None, scene_dir: Path, cfg: TrainConfig, resume: bool = False,
                 on_log: Callable[[dict], None] | None = None, overrides: dict | None = None):
        self.log_path, self.scene_dir, self.cfg, self.resume = log_path, Path(scene_dir), cfg, resume
        self.on_log, self.overrides = on_log, overrides
        self.stop = StopSignal()
        self.state: TrainState | None = None

    def setup(self) -> TrainState:
        """Everything before the first step; the run's state."""
        rank, world, local_rank = _dist_info()
        # resuming, Path() (".") stands for no log given, as None does
        given = None if self.log_path is None or (self.resume and str(self.log_path) == ".") else Path(self.log_path)
        cfg, log_path, info, state = _start(self.scene_dir, given, self.cfg, self.resume, self.overrides, rank)
        resume = state is not None
        cfg.check()
        # The budget decides an automatic prior once: scene.json keeps the steps, so a resume that extends the budget
        # keeps the lidar losses the run started with (lidar_loss_weights). A scene from before the prior ran none.
        cfg = copy.deepcopy(cfg)
        prior = cfg.priors.lidar_prior
        prior.steps = prior.steps_for(cfg.budget.minutes) if not resume else max(prior.steps, 0)
        device = _device(cfg, world, local_rank)
        torch.manual_seed(cfg.seed + rank)
        run = _setup(self.scene_dir, log_path, cfg, info, state, rank, world, device)
        _priors(run, self.on_log)
        run.metrics = _Metrics(self.scene_dir / METRICS, append=resume) if rank == 0 else None
        self.state = run
        return run

    def step(self, gen: torch.Generator, batch: int, lidar_batch: int, n_err: int,
             lr: float) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """One optimiser step (see ``_step``)."""
        return _step(self.state, gen, batch, lidar_batch, n_err, lr)

    def checkpoint(self) -> None:
        self.state.checkpoint()

    def run(self) -> TrainResult:
        """Set up, train until a budget is spent or a stop is requested, and write the weights."""
        run = self.setup() if self.state is None else self.state
        old_handler = _on_sigterm(run.rank, self.stop)
        run.start = time.time()
        try:
            status = _train(run, self.on_log, self.stop)
        except KeyboardInterrupt:
            status = "interrupted"
        except TrainingDiverged as exc:
            run.checkpoint()  # the weights before the bad step
            if run.rank == 0:
                run.info.step, run.info.status = run.step, "diverged"
                write_scene_info(self.scene_dir, run.info)
            raise TrainingDiverged(f"{exc}; stopped. The last good state (step {run.step}) is kept in "
                                   f"{self.scene_dir / CHECKPOINT}: lower --lr or check the log's poses") from None
        finally:
            if run.metrics:
                run.metrics.close()
            if old_handler is not None:
                signal.signal(signal.SIGTERM, old_handler)
        return _finish(run, status, self.on_log)


def reconstruct(log_path: Path | None, scene_dir: Path, cfg: TrainConfig, resume: bool = False,
                on_log: Callable[[dict], None] | None = None, overrides: dict | None = None) -> TrainResult:
    """Train (or resume) the scene for ``log_path`` into ``scene_dir``: ``Trainer(...).run()``.

    With ``resume`` the configuration comes from scene.json; ``overrides`` (dotted names, e.g.
    ``{"budget.minutes": 20}``; old flat names too) replace some of its fields, to extend a finished run (not
    ``model.*``, ``holdout``, ``priors.*`` or the box: ``config.FIXED_ON_RESUME``). The drive log is then the
    one scene.json records, unless ``log_path`` says where it is now (``--log``; None or ``Path()``: the recorded one), and the
    resumed run records where it found it. A scene folder whose run stopped before its first
    checkpoint starts afresh (``resume`` or not). ``on_log`` gets every logged step's record and, before the
    first step, ``{"stage": ...}`` records of the lidar prior's progress."""
    return Trainer(log_path, scene_dir, cfg, resume, on_log, overrides).run()


def _fit_heads(run: TrainState, on_log: Callable[[dict], None] | None) -> None:
    """The learned lidar heads' last fit on the final fields (train/head_fit.py), logged with its losses."""
    if on_log:
        on_log({"stage": "learned lidar heads: last fit"})
    start = time.time()
    gen = torch.Generator().manual_seed(run.cfg.seed * 1000 + 999)
    fit = final_head_fit(run.model, run.heads, run.cfg, gen)
    if fit:
        log.info("lidar heads' last fit (%d rays, %d steps, %.1f s): %s", run.cfg.head_fit.rays,
                 run.cfg.head_fit.steps, time.time() - start, ", ".join(f"{k} {v:.4g}" for k, v in fit.items()))


def _finish(run: TrainState, status: str, on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """The last checkpoint, the weights, their occupancy grids (a complete run: what the fast renderer reads)
    and scene.json; TrainingInterrupted when the run was stopped."""
    elapsed = run.elapsed()
    if status == "complete" and run.heads is not None and run.rank == 0:
        _fit_heads(run, on_log)
    run.checkpoint()
    if run.rank == 0:
        save_atomic(run.model.state_dict(), run.scene_dir / MODEL_FILE)
        if status == "complete":
            grids = build_occupancy(run.model, occupancy_config(run.model),
                                    on_field=lambda name: on_log and on_log({"stage": f"occupancy grids: {name}"}))
            save_occupancy(run.scene_dir, grids)
        run.info.step, run.info.elapsed, run.info.status = run.step, round(elapsed, 2), status
        write_scene_info(run.scene_dir, run.info)
    if run.world > 1:
        dist.barrier()
    if status == "interrupted":
        raise TrainingInterrupted(f"interrupted at step {run.step}; checkpoint saved in "
                                  f"{run.scene_dir / CHECKPOINT}; continue with: simrecon reconstruct --resume "
                                  f"-o {run.scene_dir}")
    return TrainResult(run.scene_dir, run.step, elapsed, status)
