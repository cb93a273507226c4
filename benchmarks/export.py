"""Export throughput of the scenario composer on the synthetic street's exact renderer (GroundTruthScene).

A small synthetic drive is generated into a temporary folder; a scenario renders its front camera at
640x400 (intrinsics override) for ``--frames`` timestamps. The reference is the scene's bare render time
(one ``scene.render`` of the full frame with rgb, depth and instance) measured in the same run: standalone
after the exports (first row; ``x ref`` = time per frame over it) and, robust to a busy machine, inside each
export through a timing wrapper around the scene. Each export row gives frames/s, ``x ref``,
``x bare`` = export time / time of its own full-frame renders, the seconds per
frame spent on rendering each visible actor alone (``visibility: render``) and the composer/exporter
overhead per frame outside the scene (labels, PNG/JSON encoding, checksums, atomic writes).

    python benchmarks/export.py                   # table
    python benchmarks/export.py --frames 2 --json  # JSON on stdout
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.compose import load_scenario  # noqa: E402
from simrecon.data.scene_api import ActorPlacement  # noqa: E402
from simrecon.export import export  # noqa: E402
from simrecon.synth import GroundTruthScene, SynthConfig, generate  # noqa: E402


class Timed:
    """Scene wrapper summing the time spent in ``render``: full frames (with rgb) and other calls."""

    def __init__(self, scene):
        self.scene, self.frame_s, self.other_s = scene, 0.0, 0.0

    @property
    def log(self):
        return self.scene.log

    def render(self, c2w, intrinsics, time_, placements, outputs=("rgb", "depth", "instance")):
        t0 = time.perf_counter()
        out = self.scene.render(c2w, intrinsics, time_, placements, outputs)
        dt_s = time.perf_counter() - t0
        if "rgb" in outputs:
            self.frame_s += dt_s
        else:
            self.other_s += dt_s
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4, help="timestamps to export (at most 10)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=400)
    parser.add_argument("--formats", nargs="+", default=["simrecon", "kitti", "coco", "nerfstudio"])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    n = max(1, min(args.frames, 10))
    work = Path(tempfile.mkdtemp(prefix="simrecon-bench-export-"))
    try:
        cfg = SynthConfig(seconds=1.0, width=160, height=96, seed=0, lidar_azimuths=256, ground_truth=False)
        generate(work / "street", cfg)
        scene = GroundTruthScene.from_log(work / "street" / "log")
        times = [round(0.1 * k, 6) for k in range(n)]
        base = {"scene": str(work / "street" / "log"), "time": {"times": times},
                "cameras": [{"name": "front", "intrinsics": {"w": args.width, "h": args.height, "hfov_deg": 80},
                             "mount": {"position": [1.6, 0.0, 1.55]}}]}
        plan0 = load_scenario(_write(work, "bare", base), scene=scene)
        cam = plan0.cameras[0]
        rows = []
        runs = [(f, "box") for f in args.formats] + [("simrecon", "render"), ("simrecon", "none")]
        for fmt, vis in runs:
            timed = Timed(scene)
            plan = load_scenario(_write(work, f"{fmt}-{vis}", {**base, "visibility": vis}), scene=timed)
            out = work / f"out-{fmt}-{vis}"
            t0 = time.perf_counter()
            export(plan, fmt, out)
            sec = time.perf_counter() - t0
            rows.append({"what": f"export --format {fmt}", "format": fmt, "visibility": vis, "frames": n,
                         "seconds": sec, "frames_per_s": n / sec, "ratio": sec / timed.frame_s,
                         "alone_s_per_frame": timed.other_s / n,
                         "overhead_s_per_frame": (sec - timed.frame_s - timed.other_s) / n})
            shutil.rmtree(out)
        # the reference, measured after the exports (warm): best of two renders of each frame
        bare = []
        for t in plan0.times:
            placements = {a.id: ActorPlacement(a.source, a.pose_at(t)) for a in plan0.actors
                          if a.pose_at(t) is not None}
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                scene.render(plan0.c2w(cam, float(t)), cam.intrinsics, float(t), placements)
                best = min(best, time.perf_counter() - t0)
            bare.append(best)
        bare_s = statistics.median(bare)
        rows.insert(0, {"what": "bare scene.render (reference)", "format": "-", "visibility": "-", "frames": n,
                        "seconds": sum(bare), "frames_per_s": n / sum(bare), "ratio": 1.0, "alone_s_per_frame": 0.0,
                        "overhead_s_per_frame": 0.0})
        for r in rows[1:]:
            r["x_reference"] = (r["seconds"] / n) / bare_s
    finally:
        shutil.rmtree(work, ignore_errors=True)
    meta = {"date": dt.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
            "resolution": f"{args.width}x{args.height}", "device": "cpu", "bare_render_s": bare_s}
    if args.json:
        print(json.dumps({"meta": meta, "results": rows}, indent=2))
        return
    print(f"export throughput at {args.width}x{args.height} on CPU ({meta['threads']} threads, torch "
          f"{meta['torch']}), synthetic street GroundTruthScene, {n} frames")
    print(f"{'what':<32} {'visibility':<10} {'s':>7} {'frames/s':>9} {'x ref':>6} {'x bare':>7} "
          f"{'alone s/fr':>10} {'overhead s/fr':>13}")
    for r in rows:
        print(f"{r['what']:<32} {r['visibility']:<10} {r['seconds']:>7.2f} {r['frames_per_s']:>9.3f} "
              f"{r.get('x_reference', 1.0):>6.2f} {r['ratio']:>7.2f} {r['alone_s_per_frame']:>10.3f} "
              f"{r['overhead_s_per_frame']:>13.3f}")


def _write(work: Path, name: str, doc: dict) -> Path:
    p = work / f"{name}.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


if __name__ == "__main__":
    main()
