"""Full-frame render speed of a reconstructed scene, fast renderer against the reference, and how far their
images differ.

For each size (``log``: each frame's own intrinsics; ``WxH``: the frame's camera with its intrinsics scaled to
W x H, so the field of view is kept when the aspect ratio is) it renders one warm-up frame with each renderer,
then the held-out frames (all frames when the scene holds none out), alternating reference and fast frame by
frame (the machine's load hits both alike), at most ``--frames`` of them and until ``--budget`` seconds have
passed. Both go through ``NeuralScene.render_image`` (what ``simrecon render``, ``compose``, ``export``,
``regress`` and the viewer use); the timed call returns numpy arrays, so device work is finished when the clock
stops. At the log's size it also scores both against the held-out images (PSNR), and compares the two renders
of each frame, as logged and with the camera moved 2 m to its left: PSNR between them, median depth difference
and the share of pixels with the same instance id. The fast renderer's occupancy grids are read or built before
timing (built: the time is printed). Prints a table, or JSON with ``--json``.

    python benchmarks/render.py --scene demo-out/scene --size log 160x96 320x200
    python benchmarks/render.py --scene SCENE --device cuda --size 1920x1080 --frames 5 --json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.data.images import decode_image  # noqa: E402
from simrecon.data.model import Frame, Intrinsics  # noqa: E402
from simrecon.scene import load_scene  # noqa: E402
from simrecon.scene.metrics import psnr  # noqa: E402
from simrecon.scene.neural import NeuralScene  # noqa: E402


def parse_size(text: str) -> tuple[int, int] | None:
    """``log`` -> None (each frame's own size); ``WxH`` -> (W, H)."""
    if text == "log":
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected log or WxH such as 1920x1080, got {text!r}") from None
    if not (16 <= w <= 16384 and 16 <= h <= 16384):
        raise argparse.ArgumentTypeError(f"width and height must be in [16, 16384], got {text!r}")
    return w, h


def scaled(intr: Intrinsics, size: tuple[int, int] | None) -> Intrinsics:
    """``intr`` with its focal lengths and principal point scaled to ``size`` (unchanged for None)."""
    if size is None:
        return intr
    sx, sy = size[0] / intr.w, size[1] / intr.h
    return dataclasses.replace(intr, fl_x=intr.fl_x * sx, fl_y=intr.fl_y * sy, cx=intr.cx * sx, cy=intr.cy * sy,
                               w=size[0], h=size[1])


def held_out_frames(scene: NeuralScene) -> list[Frame]:
    held = set(scene.info.holdout)
    return [f for f in scene.log.frames if f.file_path in held] or list(scene.log.frames)


def shifted_left(c2w: np.ndarray, metres: float) -> np.ndarray:
    """``c2w`` moved ``metres`` along its own left (OpenGL camera: x is right)."""
    out = np.array(c2w, dtype=float)
    out[:3, 3] -= out[:3, 0] * metres
    return out


def agreement(a, b) -> dict[str, float]:
    """PSNR (dB) between two renders, median depth difference (m) where both see a surface, same instance share."""
    both = np.isfinite(a.depth) & np.isfinite(b.depth)
    return {"psnr_between": psnr(a.rgb, b.rgb),
            "depth_median_diff_m": float(np.median(np.abs(a.depth[both] - b.depth[both]))) if both.any() else 0.0,
            "same_instance": float(np.mean(a.instance == b.instance))}


def time_size(scenes: dict[str, NeuralScene], frames: list[Frame], size: tuple[int, int] | None, max_frames: int,
              budget: float, chunk: int | None) -> dict[str, Any]:
    """Seconds per frame of each renderer on ``frames`` at ``size`` (alternating; one warm-up frame each), and at
    the log's size their PSNR against the images and their agreement, logged and shifted 2 m left."""
    extra = {} if chunk is None else {"chunk": chunk}
    times: dict[str, list[float]] = {name: [] for name in scenes}
    quality: dict[str, list[float]] = {name: [] for name in scenes}
    agree: list[dict[str, float]] = []
    agree_shift: list[dict[str, float]] = []
    for name, sc in scenes.items():  # warm-up
        sc.render_image(frames[0].c2w, scaled(frames[0].intrinsics, size), frames[0].timestamp, frames[0].camera)
    for f in frames[:max_frames]:
        intr = scaled(f.intrinsics, size)
        out = {}
        for name, sc in scenes.items():
            start = time.perf_counter()
            out[name] = sc.render_image(f.c2w, intr, f.timestamp, camera=f.camera, **extra)
            times[name].append(time.perf_counter() - start)
        if size is None:
            gt = decode_image(scenes["reference"].log.root / f.file_path)
            for name in scenes:
                quality[name].append(psnr(gt, out[name].rgb))
            agree.append(agreement(out["fast"], out["reference"]))
            moved = shifted_left(f.c2w, 2.0)
            agree_shift.append(agreement(*(sc.render_image(moved, intr, f.timestamp, camera=f.camera)
                                           for sc in (scenes["fast"], scenes["reference"]))))
        if sum(sum(t) for t in times.values()) > budget:
            break
    first = scaled(frames[0].intrinsics, size)
    row: dict[str, Any] = {"size": "log" if size is None else f"{size[0]}x{size[1]}", "width": first.w,
                           "height": first.h, "frames": len(times["fast"])}
    for name, t in times.items():
        row[f"{name}_frames_per_s"] = round(len(t) / sum(t), 3)
    ratios = [r / f for r, f in zip(times["reference"], times["fast"])]
    row["speedup"] = round(statistics.median(ratios), 2)
    row["speedup_range"] = [round(min(ratios), 2), round(max(ratios), 2)]
    if agree:
        for name in scenes:
            row[f"{name}_psnr"] = round(statistics.mean(quality[name]), 3)
        for key, rows in (("logged", agree), ("shifted_2m", agree_shift)):
            row[key] = {k: round(min(r[k] for r in rows) if k != "depth_median_diff_m" else
                                 max(r[k] for r in rows), 5) for k in rows[0]}
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, required=True, help="folder written by simrecon reconstruct")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--size", type=parse_size, nargs="+", default=[None, (160, 96), (320, 200)],
                    help="log (the log's resolution) and/or WxH (default: log 160x96 320x200)")
    ap.add_argument("--frames", type=int, default=6, help="timed frames per size, at most")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds after which a size stops (>= 1 frame)")
    ap.add_argument("--chunk", type=int, default=None, help="rays per batch (default: each renderer's)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)
    scenes = {name: load_scene(args.scene, device=args.device, renderer=name) for name in ("reference", "fast")}
    start = time.perf_counter()
    scenes["fast"].ray_renderer()  # the occupancy grids: read, or built and written
    grids_s = time.perf_counter() - start
    frames = held_out_frames(scenes["fast"])
    rows = [time_size(scenes, frames, size, max(1, args.frames), args.budget, args.chunk) for size in args.size]
    sc = scenes["fast"]
    meta = {"scene": str(args.scene), "device": str(sc.device), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(sc.device) if sc.device.type == "cuda" else None,
            "threads": torch.get_num_threads(), "held_out_frames": len(frames), "step": sc.info.step,
            "occupancy_s": round(grids_s, 2)}
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return 0
    print(f"{args.scene} (step {sc.info.step}) on {meta['gpu'] or sc.device}, {len(frames)} frames; occupancy grids "
          f"ready in {grids_s:.1f} s")
    print("| size | W x H | frames | reference frames/s | fast frames/s | speed-up (range) |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['width']}x{r['height']} | {r['frames']} | {r['reference_frames_per_s']:.2f} | "
              f"{r['fast_frames_per_s']:.2f} | {r['speedup']:.2f}x ({r['speedup_range'][0]:.2f}-"
              f"{r['speedup_range'][1]:.2f}) |")
    for r in rows:
        if "logged" in r:
            print(f"held out at {r['width']}x{r['height']}: PSNR reference {r['reference_psnr']:.3f} dB, fast "
                  f"{r['fast_psnr']:.3f} dB")
            for key in ("logged", "shifted_2m"):
                a = r[key]
                print(f"  fast vs reference, {key}: PSNR between >= {a['psnr_between']:.1f} dB, depth median diff "
                      f"<= {100 * a['depth_median_diff_m']:.3f} cm, same instance >= {100 * a['same_instance']:.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
