"""Rolling shutter on the synthetic street: the global-shutter log against a rolling-shutter one, modelled or not.

Generates the street twice from one seed at ``--speed`` m/s: global-shutter cameras, and cameras reading their
lines top to bottom over ``--readout`` seconds (``simrecon synth --rolling-shutter``, every line rendered at its
own exposure time). Trains the ``fast`` preset (or ``--preset``) for ``--steps`` steps on
    global   the global-shutter log
    off      the rolling-shutter log, sampling.rolling_shutter=false (every pixel posed at the frame's time)
    on       the rolling-shutter log, sampling.rolling_shutter=true (each line at its own time: the default)
and prints held-out PSNR as eval renders it (line by line for ``on``, as trained) and the training-batch PSNR.
Equal steps, not equal time, make the variants comparable on a shared machine.

    python benchmarks/rolling_shutter.py --steps 600 --seconds 1.5 --width 320 --height 180
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from simrecon.scene import load_scene
from simrecon.scene.evaluate import evaluate
from simrecon.synth import SynthConfig, generate
from simrecon.train import preset, reconstruct


def run(name: str, log: Path, out: Path, args, shutter: bool) -> dict:
    cfg = preset(args.preset)
    cfg.budget.steps, cfg.budget.minutes = args.steps, args.minutes
    cfg.seed = args.seed if args.train_seed is None else args.train_seed
    cfg.sampling.rolling_shutter = shutter
    if not (args.reuse and (out / name / "model.pt").is_file()):
        shutil.rmtree(out / name, ignore_errors=True)
        reconstruct(log, out / name, cfg)
    scene = load_scene(out / name, device="cpu")
    ev = evaluate(scene, lidar_points=0)
    lines = (out / name / "metrics.jsonl").read_text().splitlines()
    last = [json.loads(line) for line in lines if line.strip()]
    return {"variant": name, "steps": scene.info.step, "train_s": round(scene.info.elapsed),
            "train_psnr": round(float(np.mean([r["psnr"] for r in last[-5:] if "psnr" in r])), 2),
            "heldout_psnr": ev.get("psnr"), "heldout_ssim": ev.get("ssim")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/simrecon-rolling-shutter"))
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--minutes", type=float, default=10.0, help="time budget per run (a stop before --steps)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-seed", type=int, default=None, help="training seed (default --seed, the street's)")
    ap.add_argument("--tag", default="", help="suffix of the variants' scene folders (runs/NAME+TAG)")
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--speed", type=float, default=10.0, help="the ego's speed, m/s")
    ap.add_argument("--readout", type=float, default=0.03, help="the rolling shutter's readout, seconds")
    ap.add_argument("--variants", default="global,off,on")
    ap.add_argument("--reuse", action="store_true", help="evaluate a variant's scene again when it exists")
    args = ap.parse_args()
    base = SynthConfig(seconds=args.seconds, width=args.width, height=args.height, seed=args.seed,
                       ground_truth=False, ego_speed=args.speed)
    streets = {"global": base, "rolling": SynthConfig(**{**base.__dict__, "rolling_shutter_s": args.readout})}
    for key, cfg in streets.items():
        if not (args.out / key / "log" / "transforms.json").is_file():
            t0 = time.time()
            generate(args.out / key, cfg, force=True)
            print(f"generated the {key}-shutter street in {time.time() - t0:.0f} s", flush=True)
    plan = {"global": ("global", True), "off": ("rolling", False), "on": ("rolling", True)}
    if any(name not in plan for name in args.variants.split(",")):
        raise SystemExit(f"--variants: a comma-separated choice of {', '.join(plan)}")
    rows = []
    for name in args.variants.split(","):
        street, shutter = plan[name]
        rows.append(run(name + args.tag, args.out / street / "log", args.out / "runs", args, shutter))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{args.preset}, {args.steps} steps, {args.seconds:g} s at {args.width}x{args.height}, "
          f"{args.speed:g} m/s, readout {args.readout * 1000:g} ms")
    print("| variant | steps | train s | train PSNR | held-out PSNR | held-out SSIM |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['variant']} | {r['steps']} | {r['train_s']} | {r['train_psnr']:.2f} | {r['heldout_psnr']:.2f} | "
              f"{r['heldout_ssim']:.3f} |")


if __name__ == "__main__":
    main()
