"""Full-frame render speed of a reconstructed scene: frames/s of its held-out frames, at the log's resolution and
at other sizes.

For each size (``log``: each frame's own intrinsics; ``WxH``: the frame's camera with its intrinsics scaled to
W x H, so the field of view is kept when the aspect ratio is) it renders one warm-up frame, then the held-out
frames (all frames when the scene holds none out) through ``NeuralScene.render_image`` (what ``simrecon render``
and ``simrecon eval`` use), at most ``--frames`` of them and until ``--budget`` seconds have passed (at least one
timed frame). The timed call returns numpy arrays, so device work is finished when the clock stops. Prints a
table, or JSON with ``--json``.

    python benchmarks/render.py --scene demo-out/scene --size log 1920x1080
    python benchmarks/render.py --scene SCENE --device cuda --frames 5 --json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.data.model import Frame, Intrinsics  # noqa: E402
from simrecon.scene import load_scene  # noqa: E402
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


def time_size(scene: NeuralScene, frames: list[Frame], size: tuple[int, int] | None, max_frames: int,
              budget: float, chunk: int | None) -> dict[str, Any]:
    """Frames/s of rendering ``frames`` at ``size`` (one warm-up frame first)."""
    extra = {} if chunk is None else {"chunk": chunk}

    def render(f: Frame) -> Intrinsics:
        intr = scaled(f.intrinsics, size)
        scene.render_image(f.c2w, intr, f.timestamp, camera=f.camera, **extra)
        return intr

    render(frames[0])  # warm-up: allocations, kernel loads, autotuning
    times: list[float] = []
    pixels = 0
    for f in frames[:max_frames]:
        start = time.perf_counter()
        intr = render(f)
        times.append(time.perf_counter() - start)
        pixels += intr.w * intr.h
        if sum(times) > budget:
            break
    total = sum(times)
    first = scaled(frames[0].intrinsics, size)
    return {"size": "log" if size is None else f"{size[0]}x{size[1]}", "width": first.w, "height": first.h,
            "frames": len(times), "seconds": round(total, 4), "frames_per_s": round(len(times) / total, 3),
            "rays_per_s": round(pixels / total, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", type=Path, required=True, help="folder written by simrecon reconstruct")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--size", type=parse_size, nargs="+", default=[None, (1920, 1080)],
                    help="log (the log's resolution) and/or WxH (default: log 1920x1080)")
    ap.add_argument("--frames", type=int, default=8, help="timed frames per size, at most")
    ap.add_argument("--budget", type=float, default=20.0, help="seconds after which a size stops (>= 1 frame)")
    ap.add_argument("--chunk", type=int, default=None, help="rays per model call (default: render_image's)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = ap.parse_args(argv)
    scene = load_scene(args.scene, device=args.device)
    frames = held_out_frames(scene)
    rows = [time_size(scene, frames, size, max(1, args.frames), args.budget, args.chunk) for size in args.size]
    meta = {"scene": str(args.scene), "device": str(scene.device), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(scene.device) if scene.device.type == "cuda" else None,
            "held_out_frames": len(frames), "step": scene.info.step}
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return 0
    print(f"{args.scene} (step {scene.info.step}) on {meta['gpu'] or scene.device}, {len(frames)} frames")
    print("| size | W x H | frames | frames/s | Mrays/s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['width']}x{r['height']} | {r['frames']} | {r['frames_per_s']:.2f} | "
              f"{r['rays_per_s'] / 1e6:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
