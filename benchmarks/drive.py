"""Closed-loop simulation speed: ``DriveEnv.step`` steps per second with one RGB camera (default 160x96), on the
synthetic street's exact renderer and, with ``--scene``, on a reconstructed neural scene.

Each scene is driven by the ``replay`` driver (its actions computed outside the timed call) for ``--steps`` steps
after ``--warmup`` untimed ones, the episode restarting when it ends; also timed: the same steps without images
(dynamics, actors, collisions, route and metrics only). The synthetic street is generated into a temporary folder
(``--seconds`` long, no ground truth). Prints a table, or JSON with ``--json``.

    python benchmarks/drive.py
    python benchmarks/drive.py --scene demo-out/scene --device cuda --steps 100 --json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.sim import SimConfig, open_plan  # noqa: E402
from simrecon.sim.env import DriveEnv  # noqa: E402
from simrecon.sim.policies import Replay  # noqa: E402
from simrecon.synth import SynthConfig, generate  # noqa: E402


def steps_per_second(plan, width: int, height: int, steps: int, warmup: int, images: bool) -> float:
    """``DriveEnv.step`` calls per second on ``plan`` (replay actions; restarts at the episode's end)."""
    cfg = SimConfig()
    cfg.sensors.images, cfg.sensors.width, cfg.sensors.height = images, width, height
    env = DriveEnv(plan=plan, config=cfg)
    driver = Replay()
    obs, _ = env.reset(seed=0)
    driver.reset(env.world)
    spent, done_steps = 0.0, 0
    for k in range(warmup + steps):
        action = driver.act(obs)
        start = time.perf_counter()
        obs, _, terminated, truncated, _ = env.step(action)
        if k >= warmup:
            spent += time.perf_counter() - start
            done_steps += 1
        if terminated or truncated:
            obs, _ = env.reset(seed=0)
            driver.reset(env.world)
    return done_steps / spent if spent > 0 else float("inf")


def measure(name: str, plan, args) -> dict[str, Any]:
    with_images = steps_per_second(plan, args.width, args.height, args.steps, args.warmup, True)
    without = steps_per_second(plan, args.width, args.height, args.steps, args.warmup, False)
    return {"scene": name, "camera": f"{args.width}x{args.height} rgb", "steps": args.steps,
            "steps_per_s": with_images, "steps_per_s_no_images": without}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scene", type=Path, help="a reconstructed scene folder (scene.json) to time as well")
    ap.add_argument("--device", default="auto", help="the neural scene's device: auto, cpu or cuda")
    ap.add_argument("--renderer", default="fast", help="the neural scene's renderer: fast or reference")
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=96)
    ap.add_argument("--steps", type=int, default=30, help="timed steps per scene")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of the generated synthetic drive")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        log = generate(Path(tmp) / "street", SynthConfig(seconds=args.seconds, width=64, height=48,
                                                         lidar_beams=4, lidar_azimuths=64, ground_truth=False))
        rows.append(measure("synthetic (exact)", open_plan(log), args))
    if args.scene is not None:
        from simrecon.scene import load_scene

        scene = load_scene(args.scene, device=args.device, renderer=args.renderer)
        rows.append(measure(f"neural {args.scene} ({args.renderer}, {args.device})", open_plan(scene), args))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'scene':50s} {'camera':>14s} {'steps/s':>9s} {'no images':>10s}")
    for r in rows:
        print(f"{r['scene']:50s} {r['camera']:>14s} {r['steps_per_s']:9.2f} {r['steps_per_s_no_images']:10.1f}")


if __name__ == "__main__":
    main()
