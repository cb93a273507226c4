"""Viewer preview throughput on a reconstructed scene: frames/s of the moving (coarse) preview path.

The viewer renders the browser's camera at the preview resolution (320x200 here); while the camera moves it
renders at 1/k per axis (k adapted to the measured ray throughput for ``--target-fps``) and upsamples, and it
refines to full preview resolution when the camera is still. This script runs exactly that code
(``simrecon.viewer.render.Preview``) on a moving camera along the log's front camera, JPEG-encodes each frame
as the viewer does before sending it, and compares it with the full-resolution render of the same view
measured in the same run (the reference: what a non-progressive viewer would do per frame).

The scene: ``--scene DIR`` (a folder written by ``simrecon reconstruct``; ``demo-out/scene`` after
``make demo``), else a scene of the ``fast`` preset (the demo's architecture) trained for a few steps on the
demo's synthetic street in a temporary folder. Render cost depends on the architecture and the sample
counts, not on how long the scene trained.

    python benchmarks/viewer.py                       # table
    python benchmarks/viewer.py --scene demo-out/scene --frames 40 --json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.data.scene_api import logged_placements  # noqa: E402
from simrecon.viewer.render import Preview, View, preview_intrinsics, vertical_fov  # noqa: E402


def build_scene(workdir: Path, steps: int) -> Path:
    from simrecon.synth import SynthConfig, generate
    from simrecon.train import preset, reconstruct

    street = workdir / "street"
    generate(street, SynthConfig(seconds=1.0), force=True)
    cfg = preset("fast")
    cfg.budget.steps, cfg.budget.log_every, cfg.budget.checkpoint_every = steps, max(1, steps), 10 ** 6
    reconstruct(street / "log", workdir / "scene", cfg)
    return workdir / "scene"


def jpeg(img: np.ndarray, quality: int) -> int:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.tell()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, default=None, help="reconstructed scene folder (default: demo-out/scene "
                                                             "if present, else a quickly trained one)")
    ap.add_argument("--width", type=int, default=320)
    ap.add_argument("--height", type=int, default=200)
    ap.add_argument("--frames", type=int, default=30, help="moving frames measured")
    ap.add_argument("--target-fps", type=float, default=8.0, help="the viewer's frame budget while moving")
    ap.add_argument("--train-steps", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from simrecon.scene import load_scene

    tmp = None
    scene_dir = args.scene
    if scene_dir is None and (Path("demo-out/scene") / "scene.json").is_file():
        scene_dir = Path("demo-out/scene")
    t_build = 0.0
    if scene_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="simrecon-bench-viewer-")
        t = time.perf_counter()
        scene_dir = build_scene(Path(tmp.name), args.train_steps)
        t_build = time.perf_counter() - t
    scene = load_scene(scene_dir, device="cpu")
    log = scene.log
    cams = log.cameras
    front = cams["front"] if "front" in cams else cams[sorted(cams)[0]]
    fov = vertical_fov(front[0].intrinsics)
    intr = preview_intrinsics(fov, args.width / args.height, args.width)
    intr = type(intr)(intr.fl_x, intr.fl_y, intr.cx, args.height / 2, args.width, args.height, model="PINHOLE")

    def view_at(i: int) -> View:
        f = front[min(i % len(front), len(front) - 1)]
        c2w = f.c2w.copy()
        c2w[:3, 3] += c2w[:3, 0] * 0.05 * np.sin(i / 3.0)  # a camera that keeps moving (sideways wobble)
        return View(c2w, intr, f.timestamp, logged_placements(log, f.timestamp), "rgb")

    preview = Preview(scene, target_fps=args.target_fps)
    # Reference, same run: full-resolution renders of the same views (what each frame costs without coarse-first).
    preview.render_coarse(view_at(0), factor=4)  # warm-up (allocations, kernel builds)
    ref_times = []
    for i in range(3):
        t = time.perf_counter()
        frame = preview.render_coarse(view_at(i), factor=1)
        jpeg(frame.image, 92)
        ref_times.append(time.perf_counter() - t)
    ref_s = float(np.median(ref_times))
    preview.rays_per_s = intr.w * intr.h / ref_s  # what the viewer would have measured by now
    # The moving preview path: coarse frames, factor adapted to the measured throughput.
    times, factors = [], []
    t_all = time.perf_counter()
    for i in range(args.frames):
        t = time.perf_counter()
        frame = preview.render_coarse(view_at(i))
        jpeg(frame.image, 75)
        times.append(time.perf_counter() - t)
        factors.append(frame.factor)
    wall = time.perf_counter() - t_all
    fps = args.frames / wall
    # Fixed coarse factors, for the record (the viewer picks k itself).
    fixed = {}
    for k in (2, 4):
        t = time.perf_counter()
        for i in range(4):
            jpeg(preview.render_coarse(view_at(i), factor=k).image, 75)
        fixed[f"1/{k}"] = round(4 / (time.perf_counter() - t), 2)
    # Refinement when still (strips), for the record.
    t = time.perf_counter()
    refined = preview.render_refined(view_at(0))
    refine_s = time.perf_counter() - t
    k_med = int(np.median(factors))
    result = {
        "scene": str(scene_dir) if tmp is None else f"fast preset, {args.train_steps} steps (temporary)",
        "preview": f"{intr.w}x{intr.h}",
        "moving_fps": round(fps, 2),
        "moving_ms_median": round(1000 * float(np.median(times)), 1),
        "moving_ms_p90": round(1000 * float(np.percentile(times, 90)), 1),
        "coarse_factor": k_med,
        "coarse_resolution": f"{round(intr.w / k_med)}x{round(intr.h / k_med)}",
        "reference_full_res_ms": round(1000 * ref_s, 1),
        "reference_fps": round(1.0 / ref_s, 2),
        "speedup_vs_reference": round(fps * ref_s, 2),
        "fixed_factor_fps": fixed,
        "refine_ms": round(1000 * refine_s, 1),
        "rays_per_s": int(preview.rays_per_s or 0),
        "target_met_5fps": fps >= 5.0,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "scene_build_s": round(t_build, 1),
    }
    assert refined.complete
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
