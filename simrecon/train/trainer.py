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
from ..render import SceneModel
from .checkpoint import CHECKPOINT, load_checkpoint, save_atomic, save_checkpoint
from .config import TrainConfig
from .data import TrainData, parse_holdout, scene_box
from .free_columns import FreeColumns, free_columns_of
from .lidar_prior import train_lidar_prior
from .optim import adam
from .scene_file import MODEL_FILE, SceneInfo, read_scene_info, write_scene_info

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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"--device: expected auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def make_optimizer(model: torch.nn.Module, lr: float, table_lr_scale: float = 1.0,
                   exposure_lr_scale: float = 1.0) -> torch.optim.Optimizer:
    """Adam (:func:`simrecon.train.optim.adam`) in groups: the hash tables (learning rate times
    ``table_lr_scale``), the per-frame exposure (times ``exposure_lr_scale``) and the rest; each group's "scale"
    is kept so the schedule can set ``lr * scale``."""
    named = list(model.named_parameters())
    tables = [p for n, p in named if n.endswith("grid.table")]
    exposure = [p for n, p in named if n.startswith("exposure.")]
    ids = {id(p) for p in tables + exposure}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": tables, "lr": lr * table_lr_scale, "scale": table_lr_scale},
              {"params": rest, "lr": lr, "scale": 1.0},
              {"params": exposure, "lr": lr * exposure_lr_scale, "scale": exposure_lr_scale}]
    return adam([g for g in groups if g["params"]], lr)


def learning_rate(cfg: TrainConfig, progress: float) -> float:
    """``cfg.lr`` for the first ``lr_hold`` of the budget, then exponential decay to ``lr_final`` at its end."""
    decay = (min(progress, 1.0) - cfg.lr_hold) / max(1.0 - cfg.lr_hold, 1e-9)
    return cfg.lr * (cfg.lr_final / cfg.lr) ** max(decay, 0.0)


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


def compute_losses(model: SceneModel, out: dict, target: torch.Tensor, n_cam: int, ranges: torch.Tensor | None,
                   cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """Photometric loss on the first ``n_cam`` rays, lidar losses on the rest."""
    losses = {"rgb": torch.mean((out["rgb"] - target) ** 2)}
    if ranges is not None:
        s = model.scale
        depth = out["depth"][n_cam:]
        acc = out["acc"][n_cam:]
        mids = out["mids"][n_cam:]
        margin = 0.02 * ranges[:, None] + 0.1 * s * cfg.near_frac  # lidar noise grows with range
        depth_weight, beyond_weight = cfg.lidar_loss_weights()
        if depth_weight:
            losses["depth"] = depth_weight * torch.mean(torch.abs(depth - ranges) / s)
        # Empty space before the return (minus a margin), on the weights: once a surface is opaque its penalty
        # saturates, so lidar that disagrees with the cameras (moving actors, track errors) cannot erode it.
        w = out["weights"][n_cam:]
        losses["empty"] = cfg.empty_weight * torch.mean((w * (mids < ranges[:, None] - margin)).sum(-1))
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
        losses["floaters"] = cfg.floater_weight * _floater_penalty(out["tau"][n_cam:], near)
        # The same for the proposal. The interlevel loss only asks it to cover the background's weights: if both
        # go opaque near the camera it is satisfied, and the background never gets samples at the surface again.
        pnear = out["proposal_mids"][n_cam:] < 0.5 * ranges[:, None]
        losses["proposal_floaters"] = cfg.floater_weight * _floater_penalty(out["proposal_tau"][n_cam:], pnear)
        losses["opacity"] = cfg.opacity_weight * torch.mean((1 - acc) ** 2)
    if "interlevel" in out:
        losses["interlevel"] = cfg.interlevel_weight * out["interlevel"]
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
    probe = columns.sample(cfg.free_columns.points, gen).to(target.device) if columns is not None else None
    out = net(rays, stratified=True, rgb_rows=rgb_rows, probe=probe, frames=frames)
    losses = compute_losses(model, out, target, n_cam, ranges, cfg)
    if columns is not None:
        losses.update(columns.loss(out, model.scale, cfg.free_columns.weight))
    return out, losses


def reconstruct(log_path: Path, scene_dir: Path, cfg: TrainConfig, resume: bool = False,
                on_log: Callable[[dict], None] | None = None, overrides: dict | None = None) -> TrainResult:
    """Train (or resume) the scene for ``log_path`` into ``scene_dir``.

    With ``resume`` the configuration comes from scene.json; ``overrides`` (e.g. ``{"minutes": 20}``)
    replace some of its fields, to extend a finished run. ``on_log`` gets every logged step's record and,
    before the first step, ``{"stage": ...}`` records of the lidar prior's progress."""
    rank, world, local_rank = _dist_info()
    scene_dir = Path(scene_dir)
    if resume:
        info = read_scene_info(scene_dir)
        cfg = TrainConfig.from_json(info.config) if info.config else cfg
        for key, value in (overrides or {}).items():
            setattr(cfg, key, value)
        ckpt_path = scene_dir / CHECKPOINT
        if not ckpt_path.is_file():
            raise ValueError(f"{scene_dir}: no {CHECKPOINT} to resume from")
        log_path = Path(info.source_log)
    elif (scene_dir / "scene.json").exists():
        raise FileExistsError(f"{scene_dir} already holds a scene (use --resume to continue it, or another -o)")
    cfg.check()
    # The budget decides an automatic prior once: scene.json keeps the steps, so a resume that extends the budget
    # keeps the lidar losses the run started with (lidar_loss_weights). A scene from before the prior ran none.
    cfg = copy.deepcopy(cfg)
    cfg.lidar_prior.steps = cfg.lidar_prior.steps_for(cfg.minutes) if not resume else max(cfg.lidar_prior.steps, 0)
    device = resolve_device(cfg.device)
    if world > 1:
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(cfg.seed + rank)
    drive = load_log(log_path)
    holdout = parse_holdout(cfg.holdout, drive) if not resume else set(info.holdout)
    if rank == 0 and not resume and not holdout and cfg.holdout not in ("", "none"):
        longest = max((len(f) for f in drive.cameras.values()), default=0)
        log.warning("--holdout %s holds out no frame of %s (at most %d frames per camera): eval will have no "
                    "held-out figures; use every:2 or a file of image paths", cfg.holdout, log_path, longest)
    box = scene_box(drive, cfg.box_lidar_range, aspect_cap=cfg.box_aspect_cap) if not resume else info.box
    scale = float(np.mean(box.half))
    data = TrainData(drive, holdout, near=cfg.near_frac * scale, device=device)
    model = SceneModel(cfg.model, box, drive.actors, data.num_appearance, frames=(data.app, data.times)).to(device)
    optim = make_optimizer(model, cfg.lr, cfg.table_lr_scale, cfg.exposure_lr_scale)
    step, elapsed0 = 0, 0.0
    if resume:
        state = load_checkpoint(ckpt_path, device)
        model.load_state_dict(state["model"])
        if state.get("optimizer"):
            try:
                optim.load_state_dict(state["optimizer"])
            except ValueError as exc:  # a checkpoint of a version with other parameter groups
                log.warning("%s: optimiser state not restored (%s); Adam starts anew", ckpt_path, exc)
        step, elapsed0 = int(state["step"]), float(state["elapsed"])
    info_out = SceneInfo(source_log=str(Path(log_path).resolve()), box=box, near=data.near,
                         camera_names=data.camera_names, actors=[a.id for a in drive.actors],
                         holdout=sorted(holdout), config=cfg.to_json(), step=step, elapsed=elapsed0,
                         status="training")
    if rank == 0:
        scene_dir.mkdir(parents=True, exist_ok=True)
        write_scene_info(scene_dir, info_out)
    if not resume and data.has_lidar and cfg.lidar_prior.steps:  # before DDP, which broadcasts rank 0's weights
        t0 = time.time()
        n_prior = cfg.lidar_prior.steps

        def prior_step(i: int) -> None:
            if on_log and rank == 0 and (i % 10 == 0 or i == n_prior):
                on_log({"stage": f"lidar prior {i}/{n_prior}"})

        prior = train_lidar_prior(model, data, cfg.lidar_prior, cfg.near_frac, cfg.seed, prior_step)
        elapsed0 = time.time() - t0  # counted in the budget
        log.info("lidar prior: %d steps in %.1f s, %s", n_prior, elapsed0, prior)
    t0 = time.time()
    columns = free_columns_of(data, box, cfg.free_columns, cfg.seed)
    if columns is not None:
        if not resume:
            elapsed0 += time.time() - t0  # counted in the budget, as the lidar prior
        log.info("free columns: %d of %.2f m in %.1f s", len(columns), columns.cell, time.time() - t0)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank + step)
    batch = max(1, cfg.batch_rays // world)
    lidar_batch = max(1, cfg.lidar_rays // world) if data.has_lidar and cfg.lidar_rays > 0 else 0
    budget_s = cfg.minutes * 60.0
    error_map = data.error_map(cfg.error_tiles) if cfg.error_sampling > 0 else None
    if error_map is not None and resume:  # kept in the checkpoint (rank 0's); a map of another shape starts anew
        saved = state.get("error_map")
        if saved is not None and saved.shape == error_map.error.shape:
            error_map.error = saved.float().cpu().clone()

    stop_signal = {"flag": False}
    old_handler = None
    if rank == 0 and hasattr(signal, "SIGTERM"):
        try:
            old_handler = signal.signal(signal.SIGTERM, lambda *_: stop_signal.__setitem__("flag", True))
        except ValueError:  # not the main thread
            old_handler = None

    def checkpoint(at_step: int, elapsed: float) -> None:
        if rank == 0:
            try:
                save_checkpoint(scene_dir / CHECKPOINT, model.state_dict(), optim.state_dict(), at_step, elapsed,
                                {"error_map": error_map.error} if error_map is not None else None)
            except OSError as exc:
                raise OSError(f"{exc}; training stopped at step {at_step}: free space, then continue with "
                              f"simrecon reconstruct --resume -o {scene_dir} (or start again)") from exc

    metrics_file = open(scene_dir / METRICS, "a") if rank == 0 else None
    start = time.time()
    last_log_t, last_log_step = start, step
    status = "complete"
    try:
        model.train()
        while True:
            elapsed = elapsed0 + (time.time() - start)
            done = step >= cfg.steps or elapsed >= budget_s or stop_signal["flag"]
            if world > 1:  # every rank stops at the same step
                flag = torch.tensor([1.0 if done else 0.0], device=device)
                dist.all_reduce(flag)
                done = flag.item() > 0
            if done:
                status = "interrupted" if stop_signal["flag"] else "complete"
                break
            progress = max(step / max(cfg.steps, 1), elapsed / max(budget_s, 1e-9))
            lr = learning_rate(cfg, progress)
            for g in optim.param_groups:
                g["lr"] = lr * g.get("scale", 1.0)
            n_err = int(round(batch * cfg.error_sampling)) if error_map is not None else 0
            pixels = data.draw_pixels(batch, gen, error_map, n_err)  # [batch], the error-map share first
            rays, target = data.pixel_rays(pixels)
            ranges = None
            if lidar_batch:
                lrays, ranges = data.sample_lidar(lidar_batch, gen)
                rays = type(rays).cat([rays, lrays])
            out, losses = step_losses(net, model, rays, target, batch, ranges, cfg, columns, gen,
                                      data.frame_of(pixels).to(device))
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at step {step}")
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if not _grads_finite(model):  # caught before the step: the weights are still good
                raise TrainingDiverged(f"gradients became non-finite at step {step}")
            optim.step()
            sq_err = (out["rgb"].detach() - target).square().mean(-1)  # [batch]
            if error_map is not None:
                error_map.update(pixels, sq_err)
            step += 1
            if step % cfg.checkpoint_every == 0:
                checkpoint(step, elapsed0 + time.time() - start)
            if rank == 0 and (step % cfg.log_every == 0 or step == 1):
                now = time.time()
                rays_per_s = (step - last_log_step) * (batch + lidar_batch) * world / max(now - last_log_t, 1e-9)
                # PSNR of the uniformly drawn pixels: the error-map share is drawn where the error is, by design
                mse = (sq_err[n_err:] if n_err < batch else sq_err).mean().item()
                rec = {"step": step, "time": round(elapsed0 + now - start, 2), "loss": round(loss.item(), 6),
                       "psnr": round(-10 * math.log10(max(mse, 1e-12)), 3), "rays_per_s": round(rays_per_s, 1),
                       "lr": lr, **{k: round(v.item(), 6) for k, v in losses.items()}}
                last_log_t, last_log_step = now, step
                metrics_file.write(json.dumps(rec) + "\n")
                metrics_file.flush()
                if on_log:
                    on_log({**rec, "budget_steps": cfg.steps, "budget_s": budget_s})
    except KeyboardInterrupt:
        status = "interrupted"
    except TrainingDiverged as exc:
        checkpoint(step, elapsed0 + time.time() - start)  # the weights before the bad step
        if rank == 0:
            info_out.step, info_out.status = step, "diverged"
            write_scene_info(scene_dir, info_out)
        raise TrainingDiverged(f"{exc}; stopped. The last good state (step {step}) is kept in "
                               f"{scene_dir / CHECKPOINT}: lower --lr or check the log's poses") from None
    finally:
        if metrics_file:
            metrics_file.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    elapsed = elapsed0 + time.time() - start
    checkpoint(step, elapsed)
    if rank == 0:
        save_atomic(model.state_dict(), scene_dir / MODEL_FILE)
        info_out.step, info_out.elapsed, info_out.status = step, round(elapsed, 2), status
        write_scene_info(scene_dir, info_out)
    if world > 1:
        dist.barrier()
    if status == "interrupted":
        raise TrainingInterrupted(f"interrupted at step {step}; checkpoint saved in {scene_dir / CHECKPOINT}; "
                                  f"continue with: simrecon reconstruct --resume -o {scene_dir}")
    return TrainResult(scene_dir, step, elapsed, status)
