"""Camera pose and actor track refinement on the synthetic street with noisy poses: off vs on, at equal steps.

Generates the street from one seed (same images) with exact poses, with ``--pose-noise`` (default 10 cm / 0.5 deg
on every timestamp's rig) and with ``--track-noise`` (default 20 cm / 2 deg on every actor track keyframe), as the
variants need. Trains the ``fast`` preset (or ``--preset``) for ``--steps`` steps on
    clean      the exact log (refinement auto: off, the log says its poses and tracks are exact)
    off        the pose-noisy log, model.poses.refine=off
    on         the pose-noisy log, model.poses.refine=on
    track_off  the track-noisy log, model.tracks.refine=off
    track_on   the track-noisy log, model.tracks.refine=on
and prints a table: held-out PSNR (at the logged poses corrected from the neighbours' corrections, as eval renders
them, and at the exact poses: the scene's own quality), training-batch PSNR, the training cameras' pose error
against the truth (OUT/true_poses.json), mean and max, in cm and degrees, as the scene renders them
(``NeuralScene.refined``), the held-out PSNR of the pixels in actor boxes and the moving actors' keyframe error
(refined as the scene renders them) against the truth. Keep runs short on a shared machine: equal steps, not equal
time, make the variants comparable.

    python benchmarks/pose_refine.py --steps 400 --seconds 1.5 --width 320 --height 180
    python benchmarks/pose_refine.py --variants clean,track_off,track_on
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from simrecon.scene import load_scene
from simrecon.scene.metrics import psnr
from simrecon.scene.evaluate import evaluate
from simrecon.synth import SynthConfig, generate
from simrecon.synth.noise import TRUE_POSES, read_true_poses
from simrecon.train import preset, reconstruct
from simrecon.train.config import parse_settings


@dataclass
class Row:
    name: str
    steps: int
    seconds: float
    train_psnr: float
    heldout_psnr: float  # held-out frames at their logged poses, corrected from their neighbours (what eval does)
    heldout_true_psnr: float  # ... at their exact poses, uncorrected: the scene itself, whatever the poses
    pos_cm: tuple[float, float]  # mean, max
    rot_deg: tuple[float, float]
    actor_psnr: float = float("nan")  # held out, pixels inside actor boxes
    track_cm: float = float("nan")  # mean box centre error of the moving actors' keyframes against the truth
    track_deg: float = float("nan")  # mean yaw error


def pose_errors(scene, truth: dict[str, np.ndarray]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Training frames' refined poses against the truth: (mean, max) centre error in cm and angle in degrees."""
    held = set(scene.info.holdout)
    pos, rot = [], []
    for f in scene.log.frames:
        if f.file_path in held:
            continue
        c2w = scene.refined(f.c2w, f.timestamp)
        true = truth[f.file_path]
        pos.append(100 * np.linalg.norm(c2w[:3, 3] - true[:3, 3]))
        r = c2w[:3, :3].T @ true[:3, :3]
        rot.append(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))
    return (float(np.mean(pos)), float(np.max(pos))), (float(np.mean(rot)), float(np.max(rot)))


def track_errors(scene, truth_doc: dict) -> tuple[float, float]:
    """Moving actors' keyframes at training times as the scene renders them (logged pose, refined) against the
    truth: mean centre error in cm and yaw error in degrees. Keyframes at held-out times are left out: no training
    ray sees them, so only the regulariser moves their corrections."""
    held = {round(f.timestamp, 6) for f in scene.log.frames if f.file_path in set(scene.info.holdout)}
    pos, yaw = [], []
    for k, actor in enumerate(scene.log.actors):
        if actor.static or actor.id not in truth_doc:
            continue
        for t, p, true in zip(actor.track.timestamps, actor.track.poses, truth_doc[actor.id]):
            if round(float(t), 6) in held:
                continue
            if scene.model.track_fix is not None:
                p = p @ scene.model.track_fix.matrix_at(k, float(t))
            m = np.array(true["transform_matrix"])
            pos.append(100 * np.linalg.norm(p[:3, 3] - m[:3, 3]))
            r = p[:3, :3].T @ m[:3, :3]
            yaw.append(abs(np.degrees(np.arctan2(r[1, 0], r[0, 0]))))
    return (float(np.mean(pos)), float(np.mean(yaw))) if pos else (float("nan"), float("nan"))


def true_pose_psnr(scene, truth: dict[str, np.ndarray]) -> float:
    """Mean PSNR of the held-out frames rendered at their exact poses (``refine=False``: already the truth)."""
    held = set(scene.info.holdout)
    scores = []
    for f in scene.log.frames:
        if f.file_path not in held:
            continue
        out = scene.render_image(truth[f.file_path], f.intrinsics, f.timestamp, camera=f.camera, refine=False)
        with Image.open(scene.log.root / f.file_path) as im:
            gt = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
        scores.append(psnr(torch.from_numpy(out.rgb), gt))
    return float(np.mean(scores))


def run(name: str, log: Path, out: Path, args, truth: dict[str, np.ndarray], refine: str, tracks: str) -> Row:
    cfg = preset(args.preset)
    cfg.budget.steps, cfg.budget.minutes, cfg.seed = args.steps, args.minutes, args.seed
    cfg.model.poses.refine, cfg.model.tracks.refine = refine, tracks
    parse_settings(cfg, args.set, where="--set")
    if not (args.reuse and (out / name / "model.pt").is_file()):
        shutil.rmtree(out / name, ignore_errors=True)
        reconstruct(log, out / name, cfg)
    scene = load_scene(out / name, device="cpu")
    ev = evaluate(scene, lidar_points=0) if scene.info.holdout else {}
    last = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines() if line.strip()]
    train_psnr = float(np.mean([r["psnr"] for r in last[-5:] if "psnr" in r]))
    pos, rot = pose_errors(scene, truth) if truth else ((0.0, 0.0), (0.0, 0.0))
    true_psnr = true_pose_psnr(scene, truth) if truth else float(ev.get("psnr", float("nan")))
    track_file = log.parent / TRUE_POSES
    t_cm, t_deg = track_errors(scene, json.loads(track_file.read_text())["actors"]) if track_file.is_file() \
        else (0.0, 0.0)
    return Row(name, scene.info.step, scene.info.elapsed, train_psnr, float(ev.get("psnr", float("nan"))),
               true_psnr, pos, rot, float(ev.get("psnr_actor_pixels", float("nan"))), t_cm, t_deg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("/tmp/simrecon-pose-refine"))
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--minutes", type=float, default=3.0, help="time budget per run (a stop before --steps)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=180)
    ap.add_argument("--pose-noise", default="0.1,0.5", help="POS_M,ROT_DEG")
    ap.add_argument("--track-noise", default="0.2,2", help="POS_M,ROT_DEG of the track_off / track_on street")
    ap.add_argument("--variants", default="clean,off,on")
    ap.add_argument("--reuse", action="store_true", help="evaluate a variant's scene again when it exists")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a training setting for every variant, as reconstruct --set (e.g. model.poses.lr=0.002)")
    ap.add_argument("--tag", default="", help="suffix of the variants' scene folders (runs/NAME+TAG)")
    args = ap.parse_args()
    pos_m, rot_deg = (float(x) for x in args.pose_noise.split(","))
    base = SynthConfig(seconds=args.seconds, width=args.width, height=args.height, seed=args.seed,
                       ground_truth=False)
    track_m, track_deg = (float(x) for x in args.track_noise.split(","))
    streets = {"clean": base, "noisy": SynthConfig(**{**base.__dict__, "pose_noise_m": pos_m,
                                                      "pose_noise_deg": rot_deg}),
               "tracks": SynthConfig(**{**base.__dict__, "track_noise_m": track_m, "track_noise_deg": track_deg})}
    plan = {"clean": ("clean", "auto", "auto"), "off": ("noisy", "off", "auto"), "on": ("noisy", "on", "auto"),
            "track_off": ("tracks", "auto", "off"), "track_on": ("tracks", "auto", "on")}
    if any(name not in plan for name in args.variants.split(",")):
        raise SystemExit(f"--variants: a comma-separated choice of {', '.join(plan)}")
    wanted = {plan[name][0] for name in args.variants.split(",")}
    for key, cfg in streets.items():
        if key in wanted and not (args.out / key / "log" / "transforms.json").is_file():
            generate(args.out / key, cfg, force=True)
    truth = read_true_poses(args.out / "noisy" / TRUE_POSES) if "noisy" in wanted else {}
    rows = []
    for name in args.variants.split(","):
        street, refine, tracks = plan[name]
        rows.append(run(name + args.tag, args.out / street / "log", args.out / "runs", args,
                        truth if street == "noisy" else {}, refine, tracks))
        print(json.dumps(rows[-1].__dict__), flush=True)
    print(f"\n{args.preset}, {args.steps} steps, {' '.join(args.set) or 'defaults'}, pose noise {pos_m * 100:g} cm / {rot_deg:g} deg, "
          f"{args.seconds:g} s at {args.width}x{args.height}")
    print("| variant | steps | train s | train PSNR | held-out PSNR (logged poses) | held-out PSNR (exact poses) | "
          "pose error cm (mean/max) | deg (mean/max) | held-out actor PSNR | track error cm / deg (mean) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r.name} | {r.steps} | {r.seconds:.0f} | {r.train_psnr:.2f} | {r.heldout_psnr:.2f} | "
              f"{r.heldout_true_psnr:.2f} | "
              f"{r.pos_cm[0]:.1f} / {r.pos_cm[1]:.1f} | {r.rot_deg[0]:.3f} / {r.rot_deg[1]:.3f} | "
              f"{r.actor_psnr:.2f} | {r.track_cm:.1f} / {r.track_deg:.2f} |")


if __name__ == "__main__":
    main()
