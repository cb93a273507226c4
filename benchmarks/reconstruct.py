"""Reconstruction benchmark on the synthetic street: throughput and quality at time marks.

Trains the ``fast`` preset (or --preset) on the default synthetic log once per time mark, each run with that
budget (what ``simrecon reconstruct --minutes M`` gives a user: the learning rate decays over the whole budget),
and evaluates it: held-out PSNR/SSIM, PSNR on actor pixels, lidar depth error, and PSNR against the ground truth
the log never saw (ego shifted +1 / -1 / +2 m, car_0 removed), and ``sky_opaque``: the share of the +2 m set's
sky that the render covers with a surface (a sky painted onto a ceiling of density; see ``score_gt_set``). Prints
a table; --json too.

``--resume-marks`` trains one run instead, extended with ``--resume`` to each later mark: cheaper (10 minutes of
training for 2,5,10 instead of 17), but each resume raises the learning rate again (its decay is stretched over the
new budget), so its later marks are not what a user's run of that length gives.

    python benchmarks/reconstruct.py --marks 2,5,10 --out /tmp/bench-recon
    python benchmarks/reconstruct.py --street STREET --preset default --device cuda --marks 1,2,5 --resume-marks \
        --gt-frames 0 --json    # an existing street folder (log/), held-out figures only (benchmarks/gpu_check.py)
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
from simrecon.train import preset, reconstruct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/simrecon-bench-recon"))
    ap.add_argument("--marks", default="2,5,10", help="minutes at which to evaluate")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--gt-frames", type=int, default=10, help="GT frames scored per set (0: no GT sets)")
    ap.add_argument("--street", type=Path, default=None,
                    help="synthetic street folder to train on (default: OUT/street, generated when missing)")
    ap.add_argument("--resume-marks", action="store_true",
                    help="one run resumed to each mark (cheaper; the learning rate rises at each resume)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    street = args.street or args.out / "street"
    if args.street is None and not (street / "log" / "transforms.json").is_file():
        generate(street, SynthConfig(), force=True)
    marks = [float(m) for m in args.marks.split(",")]
    rows = []
    for i, mark in enumerate(marks):
        cfg = preset(args.preset)
        cfg.device = args.device
        scene_dir = args.out / ("scene" if args.resume_marks else f"scene_{mark:g}min")
        if i == 0 or not args.resume_marks:
            if scene_dir.exists():
                shutil.rmtree(scene_dir)
            cfg.budget.minutes = mark
            result = reconstruct(street / "log", scene_dir, cfg)
        else:
            result = reconstruct(Path(), scene_dir, cfg, resume=True, overrides={"budget.minutes": mark})
        metrics = [json.loads(x) for x in (scene_dir / "metrics.jsonl").read_text().splitlines()]
        rps = [m["rays_per_s"] for m in metrics[1:] or metrics]  # the first record includes warm-up
        scene = load_scene(scene_dir, device=args.device)
        t0 = time.time()
        ev = evaluate(scene)
        gt = {s: score_gt_set(scene, street / "gt" / s, args.gt_frames)
              for s in ("ego_shift_left_1m", "ego_shift_right_1m", "ego_shift_left_2m", "actor_removed")
              if args.gt_frames > 0}
        row = {"minutes": mark, "steps": result.step,
               "rays_per_s_median": round(sorted(rps)[len(rps) // 2], 1) if rps else None,
               "heldout_psnr": ev.get("psnr"), "heldout_ssim": ev.get("ssim"),
               "actor_pixels_psnr": ev.get("psnr_actor_pixels"),
               "lidar_median_abs_m": ev.get("lidar_depth", {}).get("median_abs_m"),
               **{f"{k}_psnr": v["psnr"] for k, v in gt.items()},
               **({"sky_opaque": gt["ego_shift_left_2m"]["sky_opaque"]} if gt else {}),
               "eval_s": round(time.time() - t0, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = list(rows[0])
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
