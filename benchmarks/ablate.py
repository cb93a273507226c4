"""Ablations of the reconstruction: the ``fast`` preset with one change per run, at a step or time budget.

Each variant is ``key=value`` pairs joined by ``;`` (dotted keys as ``simrecon config`` lists them, old flat
names such as ``lr`` or ``lidar_prior.steps`` too; ``""`` is the preset itself); every run prints one JSON
line: steps, wall and CPU seconds, the last training-batch PSNR, held-out PSNR, actor-pixel PSNR, lidar median
depth error, PSNR against the +2 m lane-shift ground truth and the share of its sky that the render covers
with a surface (``sky_opaque``, see ``score_gt_set``).
Run variants one at a time on an otherwise idle machine: a time budget turns contention into fewer steps.

    python benchmarks/ablate.py --street /tmp/street --minutes 3 "" "model.color_samples=6" "schedule.lr=0.02"
    python benchmarks/ablate.py --street /tmp/street --steps 800 "sampling.box_lidar_range=80"
    python benchmarks/ablate.py --street /tmp/street --steps 1400 --seeds 0,2,3 "" "model.sky_texture=0"
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import json
import shutil
import time
from pathlib import Path

from simrecon.scene import load_scene
from simrecon.scene.evaluate import evaluate
from simrecon.scene.score import score_gt_set
from simrecon.synth import SynthConfig, generate
from simrecon.train import TrainConfig, preset, reconstruct
from simrecon.train.config import parse_settings


def apply(cfg: TrainConfig, variant: str) -> None:
    """Set ``a.b=value;c=value`` on ``cfg`` as ``simrecon reconstruct --set`` does (dotted names, old flat ones
    too; values type-checked against the field)."""
    try:
        parse_settings(cfg, [item for item in variant.split(";") if item.strip()], where="variant")
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+",
                    help='e.g. "" "model.color_samples=6" "schedule.lr=0.02;sampling.batch_rays=4096"')
    ap.add_argument("--street", type=Path, default=Path("/tmp/simrecon-ablate/street"),
                    help="synthetic street (OUT of simrecon synth); generated when missing")
    ap.add_argument("--out", type=Path, default=Path("/tmp/simrecon-ablate/runs"))
    ap.add_argument("--steps", type=int, default=10**6)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seeds", help="comma-separated seeds: each variant runs once per seed, then a line of means "
                                    "(the seed alone moves one run's figures by +-1.5 dB)")
    args = ap.parse_args()
    if not (args.street / "log" / "transforms.json").is_file():
        generate(args.street, SynthConfig(), force=True)
    seeds = [None] if args.seeds is None else [int(x) for x in args.seeds.split(",")]
    for variant in args.variants:
        rows = [run(args, ";".join(filter(None, [variant, f"seed={seed}" if seed is not None else ""])))
                for seed in seeds]
        if len(rows) > 1:  # one run's figure moves by +-1.5 dB with the seed alone (RESULTS.md, session 11)
            keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
            mean = {k: round(sum(r[k] for r in rows) / len(rows), 3) for k in keys
                    if all(r[k] is not None for r in rows)}
            print(json.dumps({"variant": variant, "seeds": seeds, "mean": mean}), flush=True)


def run(args: argparse.Namespace, variant: str) -> dict:
    """Train the preset with ``variant`` applied, score it, print and return its JSON line."""
    cfg = preset(args.preset)
    cfg.budget.steps, cfg.budget.minutes = args.steps, args.minutes
    apply(cfg, variant)
    out = args.out / (variant.replace("=", "_").replace(";", "__").replace(".", "-") or "preset")
    shutil.rmtree(out, ignore_errors=True)
    t, c = time.time(), time.process_time()
    result = reconstruct(args.street / "log", out, cfg)
    wall, cpu = time.time() - t, time.process_time() - c
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    scene = load_scene(out)
    ev = evaluate(scene, lidar_points=2000)
    shift = score_gt_set(scene, args.street / "gt" / "ego_shift_left_2m", 3)
    row = {"variant": variant, "steps": result.step, "wall_s": round(wall), "cpu_s": round(cpu),
           "batch_psnr": round(sum(m["psnr"] for m in metrics[-3:]) / 3, 2),
           "heldout_psnr": ev.get("psnr"), "actor_psnr": ev.get("psnr_actor_pixels"),
           "lidar_median_m": ev.get("lidar_depth", {}).get("median_abs_m"),
           "shift_2m_psnr": shift["psnr"], "sky_opaque": shift["sky_opaque"]}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main()
