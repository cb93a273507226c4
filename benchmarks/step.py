"""Training-step profile on a drive log: where a step's time goes, and the cost of posing the actors.

Times ``--steps`` training steps of the ``fast`` preset (after warm-up steps) split into sampling, forward,
backward and the optimiser step, and reports rays/s. Then times posing every actor at the batch's ray times
and slab-testing their boxes: all tracks at once (``SceneModel.logged_layout``, what training uses) against
the reference measured in the same run, a loop over the tracks (``TrackTensor.at`` and one box test per actor,
the implementation before session 4), and evaluating the actor fields crossed by a training batch, forward and
backward: all in one pass (``evaluate_actor_fields``, what training uses) against a call per field (the
implementation before session 5); and the lidar prior's test of which box holds each point, per sweep against a
loop over the boxes (the implementation before session 8). Logs with many tracked actors (real ones: DGP,
nuScenes, Waymo) are where these matter.

    python benchmarks/step.py --log LOG                   # e.g. a converted DGP scene (97 actors)
    python benchmarks/step.py --log LOG --set sampling.batch_rays=4096 --set model.samples=32
    python benchmarks/step.py --log LOG --regions           # the forward pass part by part
    python benchmarks/step.py --log LOG --profile 30        # the 30 costliest ops
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import simrecon.render.model as model_module  # noqa: E402
from simrecon.data.io import load_log  # noqa: E402
from simrecon.fields import evaluate_actor_fields  # noqa: E402
from simrecon.render import SceneModel  # noqa: E402
from simrecon.render.samplers import box_intervals  # noqa: E402
from simrecon.train import preset  # noqa: E402
from simrecon.train.config import parse_settings  # noqa: E402
from simrecon.train.data import TrainData, parse_holdout, scene_box  # noqa: E402
from simrecon.train.free_columns import free_columns_of  # noqa: E402
from simrecon.render.query import boxes_holding_loop  # noqa: E402
from simrecon.train.trainer import make_optimizer, step_losses  # noqa: E402


def _loop_layout(model: SceneModel, rays) -> None:
    """The reference: each track posed at every ray's time, each box tested on its own."""
    for i, track in enumerate(model.tracks):
        rot, trans, present = track.at(rays.times)
        if bool(present.any()):
            box_intervals(rays.origins, rays.dirs, rot, trans, model.actor_fields[i].half_size)


def _bank_layout(model: SceneModel, rays) -> None:
    lay = model.logged_layout(rays.times)
    if lay.field_index:
        half = torch.stack([model.actor_fields[i].half_size for i in lay.field_index])[:, None]
        box_intervals(rays.origins, rays.dirs, lay.rot, lay.trans, half)


def _fields_one_by_one(fields, x, d, counts):
    """The reference: a call per actor field (the implementation before session 5)."""
    parts = [f(xa, da) for f, xa, da, c in zip(fields, x.split(counts), d.split(counts), counts) if c]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _forward_backward(fn, params):
    def run():
        for p in params:
            p.grad = None  # as in training (zero_grad(set_to_none=True))
        sigma, rgb = fn()
        (sigma.sum() + rgb.sum()).backward()
    return run


def _print_regions(model: SceneModel, step, steps: int = 5) -> None:
    """Profile ``steps`` training steps with the model's parts wrapped in named ranges; print the CPU time of each
    (forward only: the backward of a part is not attributed to it) per step. The wrappers are removed after."""
    from torch.profiler import profile, record_function

    def wrap(obj, name: str, label: str) -> tuple:
        fn = getattr(obj, name)

        def wrapped(*a, **k):
            with record_function("part: " + label):
                return fn(*a, **k)
        setattr(obj, name, wrapped)
        return obj, name, fn

    saved = [wrap(model_module, n, n) for n in ("spaced_bins", "pdf_bins", "alpha_weights", "spacing",
                                               "box_intervals", "evaluate_actor_fields", "interlevel_loss")]
    saved += [wrap(model.proposal, "forward", "proposal field"),
              wrap(model.background, "density", "background density"),
              wrap(model.background, "color_along_rays", "background colour"),
              wrap(model.sky, "forward", "sky"),
              wrap(model, "logged_layout", "logged_layout (pose the actors)"),
              wrap(model, "_color", "_color (all colour)")]
    try:
        with profile() as prof:
            for _ in range(steps):
                with record_function("part: whole step"):
                    step()
    finally:
        for obj, name, fn in reversed(saved):
            if obj is model_module:
                setattr(obj, name, fn)
            else:
                delattr(obj, name)  # back to the class's method
    parts = sorted((e for e in prof.key_averages() if e.key.startswith("part: ")), key=lambda e: -e.cpu_time_total)
    for e in parts:
        print(f"{e.cpu_time_total / 1000 / steps:8.1f} ms  {e.key[6:]} ({e.count // steps} calls per step)")


def _time(fn, repeats: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def _owners_loop(model, x: torch.Tensor, t: torch.Tensor):
    """The straightforward box test (the reference for ``SceneModel.owners``): every box posed at every point's
    time and tested on every point, one box at a time."""
    lay = model.logged_layout(t)
    half = torch.stack([model.actor_fields[i].half_size for i in lay.field_index])
    return boxes_holding_loop(x, lay.rot, lay.trans, half, lay.present, torch.arange(len(x)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", type=Path, required=True, help="drive log folder (transforms.json)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, as simrecon reconstruct --set (dotted names; old flat ones too)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--profile", type=int, default=0, metavar="K",
                    help="after timing, profile 5 steps and print the K ops with the most self CPU time")
    ap.add_argument("--regions", action="store_true",
                    help="after timing, profile 5 steps and print the time of each part of the model's forward "
                         "pass (proposal, background density and colour, actors, sampling, compositing) and of the "
                         "whole step")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset)
    try:
        parse_settings(cfg, args.set)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    log = load_log(args.log)
    box = scene_box(log)
    data = TrainData(log, parse_holdout(cfg.holdout, log), near=cfg.sampling.near_frac * float(np.mean(box.half)),
                     device=torch.device("cpu"))
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance, frames=(data.app, data.times)).train()
    sched = cfg.schedule
    optim = make_optimizer(model, sched.lr, sched.table_lr_scale, sched.exposure_lr_scale)  # the trainer's groups
    gen = torch.Generator().manual_seed(0)
    columns = free_columns_of(data, box, cfg.priors.free_columns)  # the trainer's free-columns prior, when on
    phases = dict.fromkeys(("sample", "forward", "backward", "optimiser"), 0.0)

    def batch():
        pixels = data.draw_pixels(cfg.sampling.batch_rays, gen)
        rays, target = data.pixel_rays(pixels)
        ranges = None
        if data.has_lidar and cfg.sampling.lidar_rays:
            lrays, ranges = data.sample_lidar(cfg.sampling.lidar_rays, gen)
            rays = type(rays).cat([rays, lrays])
        return rays, target, ranges, data.frame_of(pixels)

    def step(record: bool) -> None:
        t0 = time.perf_counter()
        rays, target, ranges, frames = batch()
        t1 = time.perf_counter()
        _, losses = step_losses(model, model, rays, target, cfg.sampling.batch_rays, ranges, cfg, columns, gen, frames)
        loss = sum(losses.values())
        t2 = time.perf_counter()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optim.step()
        t4 = time.perf_counter()
        if record:
            for k, dt in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                phases[k] += dt

    for _ in range(args.warmup):
        step(False)
    for _ in range(args.steps):
        step(True)
    per_step = sum(phases.values()) / args.steps
    rays_per_step = cfg.sampling.batch_rays + (cfg.sampling.lidar_rays if data.has_lidar else 0)
    print(f"{args.log}: {len(log.actors)} actors, preset {args.preset}, {rays_per_step} rays per step, "
          f"{torch.get_num_threads()} threads")
    print(f"step {per_step * 1000:.1f} ms = " + ", ".join(f"{k} {v / args.steps * 1000:.1f}" for k, v in
                                                          phases.items())
          + f" ms; {rays_per_step / per_step:,.0f} rays/s")
    if args.profile:
        from torch.profiler import profile

        with profile() as prof:
            for _ in range(5):
                step(False)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))
    if args.regions:
        _print_regions(model, lambda: step(False))
    if len(model.tracks):
        rays = batch()[0]
        with torch.no_grad():
            ref = _time(lambda: _loop_layout(model, rays), 10)
            ours = _time(lambda: _bank_layout(model, rays), 10)
        print(f"posing {len(model.tracks)} actors + box tests for {len(rays)} rays: per-track loop (reference) "
              f"{ref * 1000:.1f} ms, all at once {ours * 1000:.1f} ms: {ref / ours:.1f}x")
        if data.has_lidar:  # the lidar prior's box test: 8192 returns, three points each
            idx = torch.randint(0, len(data.lidar_points), (3 * 8192,), generator=gen)
            x, t = data.lidar_points[idx], data.lidar_times[idx]
            with torch.no_grad():
                ref = _time(lambda: _owners_loop(model, x, t), 5)
                ours = _time(lambda: model.owners(x, t), 5)
            print(f"lidar prior: which box holds each of {len(x)} points: a loop over the boxes (reference) "
                  f"{ref * 1000:.1f} ms, per sweep with a distance pre-test {ours * 1000:.1f} ms: {ref / ours:.1f}x")
        calls = []  # the arguments of the model's actor-field pass on one training batch

        def capture(*args):
            calls.append(args)
            return evaluate_actor_fields(*args)

        model_module.evaluate_actor_fields = capture
        step(False)
        model_module.evaluate_actor_fields = evaluate_actor_fields
        if calls:
            fields, x, d, counts = calls[0]
            x, d = x.detach(), d.detach()
            params = [p for f in fields for p in f.parameters()]
            ref = _time(_forward_backward(lambda: _fields_one_by_one(fields, x, d, counts), params), 10)
            ours = _time(_forward_backward(lambda: evaluate_actor_fields(fields, x, d, counts), params), 10)
            print(f"actor fields, forward + backward, {sum(c > 0 for c in counts)} fields, {len(x)} points: a call "
                  f"per field (reference) {ref * 1000:.1f} ms, one pass {ours * 1000:.1f} ms: {ref / ours:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
