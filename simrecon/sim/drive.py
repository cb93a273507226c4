"""Run a policy through a scenario and write the run (``simrecon drive``): metrics.json, trajectory.json,
events.json, report.html and, when asked, the observed cameras' frames and video.gif. The folder is built under a temporary name and renamed
into place when complete (``data.outdir``)."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..config_io import to_dict
from ..data.io import atomic_write_text
from ..data.outdir import check_target, naming_failures, swap_in, temp_beside
from .config import SimConfig, configure, open_plan
from .metrics import DriveMetrics, drive_metrics
from .policies import Policy, as_action, as_policy, load_policy
from .run_report import write_report, write_video
from .sensors import Sensors
from .world import Event, StepRecord, World

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, label)
StepHook = Callable[[StepRecord, dict], None]


@dataclass
class DriveResult:
    out: Path | None  # the run folder (None when nothing was written)
    metrics: DriveMetrics
    events: list[Event]
    world: World


def _failure(exc: BaseException) -> str:
    first = (str(exc).splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:500]


def run_episode(world: World, policy: Policy, sensors: Sensors, on_step: StepHook | None = None) -> None:
    """Reset ``world`` and ``policy``, then act and step until the episode ends. A policy that raises or returns
    a bad action (not two finite numbers) ends it with a ``policy_error`` event; out-of-range actions are clipped
    by the vehicle's limits."""
    hook = on_step or (lambda _rec, _obs: None)
    world.reset()
    try:
        policy.reset(world)
    except Exception as exc:  # noqa: BLE001 - user code may raise anything
        world.fail(f"reset raised {_failure(exc)}")
        return
    obs = sensors.observe(world)
    hook(world.record, obs)
    while not world.done:
        try:
            action = as_action(policy.act(obs))
        except Exception as exc:  # noqa: BLE001
            world.fail(_failure(exc))
            break
        world.step(action)
        obs = sensors.observe(world)
        hook(world.record, obs)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _pose(m: np.ndarray) -> list[list[float]]:
    return [[float(v) for v in row] for row in m]


def trajectory_json(world: World) -> dict:
    """The run step by step: the ego (vehicle pose, box, motion) and every actor present (box pose, size)."""
    size = [float(v) for v in world.vehicle.size]
    steps = [{"step": r.step, "time": r.time, "ego_pose": _pose(r.pose), "ego_box": {"pose": _pose(r.box_pose),
                                                                                      "size": size},
              "speed": r.state.speed, "accel": r.state.accel, "steer": r.state.steer, "yaw_rate": r.state.yaw_rate,
              "on_road": r.on_road, "progress": r.progress, "ttc": _finite(r.ttc), "contacts": r.contacts,
              "actors": [{"id": a.id, "cls": a.cls, "pose": _pose(a.pose), "size": [float(v) for v in a.size]}
                         for a in r.actors]}
             for r in world.history]
    return {"frame": "world frame of the scene's log: z up, metres; poses are 4x4 row-major, ego_pose vehicle-to-"
                     "world (x forward, y left, z up), box poses box-to-world at the box centre",
            "dt": world.dt, "start_time": world.t0, "ego_size": size, "route_length_m": world.route.length,
            "steps": steps}


def _write_frames(root: Path, step: int, obs: dict) -> None:
    for key, arr in obs.items():
        camera, _, kind = key.rpartition("/")
        if kind == "rgb" and camera:
            folder = root / "frames" / camera
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(arr).save(folder / f"{step:06d}.png", compress_level=1)


def _write_run(root: Path, world: World, metrics: DriveMetrics, run: dict) -> None:
    traj, events = trajectory_json(world), [e.to_json() for e in world.events]
    atomic_write_text(root / "metrics.json", json.dumps({**metrics.to_json(), "run": run}, indent=1))
    atomic_write_text(root / "events.json", json.dumps(events, indent=1))
    atomic_write_text(root / "trajectory.json", json.dumps(traj))
    video = write_video(root, traj, run["cameras"]) is not None
    write_report(root, traj, metrics.to_json(), events, run, video)


def drive(source, policy: str | Policy, out: str | Path | None, cfg: SimConfig | None = None, frames: bool = False,
          force: bool = False, progress: Progress | None = None, renderer: str = "fast",
          settings: dict | list | None = None) -> DriveResult:
    """Drive ``policy`` (a spec for ``load_policy`` or a policy object) through ``source`` (a scenario file,
    scene folder or Plan: ``open_plan``) and write the run into ``out`` (None: write nothing). The settings are
    ``cfg``, then the scenario's ``drive:`` section, then ``settings`` (dotted names to values). ``frames``
    writes the observed cameras' RGB as ``frames/<camera>/<step>.png``. Bad input is a one-line ValueError (or
    FileExistsError / FileNotFoundError) before anything is written."""
    plan = open_plan(source, renderer)
    cfg = configure(cfg, plan, settings)
    pol = load_policy(policy, cfg.policy, cfg.exec) if isinstance(policy, str) else as_policy(policy)
    try:
        return _drive(plan, pol, out, cfg, frames, force, progress)
    finally:
        close = getattr(pol, "close", None)
        if callable(close):
            close()


def _drive(plan, pol: Policy, out: Path | None, cfg: SimConfig, frames: bool, force: bool,
           progress: Progress | None) -> DriveResult:
    world = World(plan, cfg.world, cfg.vehicle, cfg.action, actors=cfg.actors)
    images = frames or bool(getattr(pol, "needs_images", True))
    sensors = Sensors(plan, dataclasses.replace(cfg.sensors, images=cfg.sensors.images and images))
    tick = progress or (lambda _done, _total, _label: None)
    if out is None:
        run_episode(world, pol, sensors, lambda rec, _obs: tick(rec.step, world.n_steps, f"t={rec.time:.2f} s"))
        return DriveResult(None, _metrics(world, cfg), list(world.events), world)
    out = Path(out)
    check_target(out, force)
    tmp = temp_beside(out)
    try:
        with naming_failures(out):
            def on_step(rec: StepRecord, obs: dict) -> None:
                if frames:
                    _write_frames(tmp, rec.step, obs)
                tick(rec.step, world.n_steps, f"t={rec.time:.2f} s")

            run_episode(world, pol, sensors, on_step)
            metrics = _metrics(world, cfg)
            run = {"scenario": str(plan.file), "scene": str(plan.scene_path), "policy": str(getattr(pol, "name", "")),
                "cameras": [c.name for c in sensors.cameras], "config": to_dict(cfg)}
            _write_run(tmp, world, metrics, run)
            swap_in(tmp, out, "drive")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return DriveResult(out, metrics, list(world.events), world)


def _metrics(world: World, cfg: SimConfig) -> DriveMetrics:
    return drive_metrics(world.history, world.events, world.dt, world.ended or "time", cfg.score)
