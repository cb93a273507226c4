"""Lidar simulation benchmark on the synthetic street: a neural scene's sweeps against the generator's exact ones.

Renders the log's lidar (its ``lidar_sensors`` model) from a reconstructed scene and from the synthetic street's
exact renderer (``GroundTruthScene.render_lidar``: the generator's own sweeps) and compares them ray by ray:

- ``held-out``: sweeps at the midpoints between the logged sweeps (a sensor pose and time the log never had;
  training saw every logged sweep, so the logged poses themselves are not held out);
- ``shift +2m``: the logged times with the sensor moved 2 m along the vehicle's left axis;
- ``logged``: the logged sweeps themselves (training data: an upper bound).

Figures per set: median and mean range error (metres, on rays both return), Chamfer distance (metres, mean of
both directions' nearest-neighbour distances between the two point clouds, per sweep), ray-drop accuracy (share of
rays both call returned or dropped) and F1 of "dropped", intensity RMSE (0..1 scale, on rays both return; "-" for
a scene without the intensity head), how the scene decides drops (learned head or geometry), and the rays/s of the
neural lidar render. Last, the
time of one 32-beam x 1024-column sweep from the neural scene (target: 1 s on 2 CPU cores) and from the exact
scene. Intensity is not reported for neural scenes: they have no intensity model yet (docs/lidar.md).

    python benchmarks/lidar.py --minutes 2                      # synthesise the street, train `fast` 2 minutes
    python benchmarks/lidar.py --scene SCENE --street STREET    # an existing reconstruction of STREET/log
    python benchmarks/lidar.py --scene SCENE --street STREET --device cuda --json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.data.geometry import make_pose  # noqa: E402
from simrecon.data.lidar_model import uniform_sensor  # noqa: E402
from simrecon.data.scene_api import logged_placements  # noqa: E402
from simrecon.scene import load_scene  # noqa: E402
from simrecon.scene.lidar_eval import SweepComparison, drop_model_of  # noqa: E402
from simrecon.synth import GroundTruthScene, SynthConfig, generate  # noqa: E402
from simrecon.train import preset, reconstruct  # noqa: E402

SWEEP_TARGET_S = 1.0


def _poses(log, kind: str) -> list[tuple[np.ndarray, float]]:
    """(sensor-to-world, time) of every sweep of a set."""
    sweeps = sorted(log.lidar, key=lambda s: s.timestamp)
    if kind == "logged":
        return [(s.s2w, s.timestamp) for s in sweeps]
    if kind == "shift +2m":
        return [(s.s2w @ make_pose(np.eye(3), np.array([0.0, 2.0, 0.0])), s.timestamp) for s in sweeps]
    out = []
    for a, b in zip(sweeps[:-1], sweeps[1:]):
        t = (a.timestamp + b.timestamp) / 2
        pose = a.s2w.copy()
        pose[:3, 3] = (a.s2w[:3, 3] + b.s2w[:3, 3]) / 2  # the synthetic ego drives straight: exact
        out.append((pose, t))
    return out


def score_set(scene, gt, kind: str, max_sweeps: int) -> dict:
    """The neural ``scene``'s sweeps of a set against the generator's (``gt``), and its render speed."""
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    cmp, secs = SweepComparison(), 0.0
    for s2w, t in _poses(log, kind)[:max_sweeps]:
        placed = logged_placements(log, t)
        want = gt.render_lidar(sensor, s2w, t, placed)
        t0 = time.perf_counter()
        got = scene.render_lidar(sensor, s2w, t, placed)
        secs += time.perf_counter() - t0
        cmp.add(got, want.range_m, want.returned, want.intensity, want.points())
    m = cmp.summary()
    m.drop_model = drop_model_of(scene)
    return {"set": kind, **m.to_json(), "rays_per_s": m.rays / secs}


def sweep_time(scene, log, repeats: int = 3) -> float:
    """Best wall time (s) of one 32 x 1024 sweep of ``scene`` from the first logged sensor pose."""
    sensor = uniform_sensor(32, 1024)
    s = log.lidar[0]
    placed = logged_placements(log, s.timestamp)
    scene.render_lidar(sensor, s.s2w, s.timestamp, placed)  # warm-up: occupancy grids, kernels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        scene.render_lidar(sensor, s.s2w, s.timestamp, placed)
        best = min(best, time.perf_counter() - t0)
    return best


def street_args(ap: argparse.ArgumentParser, out: str, minutes: float) -> None:
    """The options saying which street and scene to measure (shared with benchmarks/lidar_heads.py)."""
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--street", type=Path, help="a `simrecon synth` folder (with log/); default: synthesised")
    ap.add_argument("--scene", type=Path, help="a reconstruction of STREET/log; default: trained here")
    ap.add_argument("--minutes", type=float, default=minutes, help="training budget when training here (min)")
    ap.add_argument("--preset", default="fast")


def prepare(args) -> tuple[Path, Path]:
    """(street folder, scene folder): given, or synthesised and trained here."""
    street = args.street or args.out / "street"
    if not (street / "log").is_dir():
        generate(street, SynthConfig(), force=True)
    if args.scene is not None:
        return street, args.scene
    scene = args.out / "scene"
    cfg = preset(args.preset)
    cfg.budget.minutes = args.minutes
    shutil.rmtree(scene, ignore_errors=True)  # this benchmark's own output folder
    reconstruct(street / "log", scene, cfg)
    return street, scene


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    street_args(ap, "/tmp/simrecon-bench-lidar", 2.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--renderer", default="fast", choices=("fast", "reference"))
    ap.add_argument("--sweeps", type=int, default=6, help="sweeps per set at most")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    street, scene_dir = prepare(args)
    gt = GroundTruthScene.from_log(street / "log")
    scene = load_scene(scene_dir, device=args.device, renderer=args.renderer)
    rows = [score_set(scene, gt, kind, args.sweeps) for kind in ("held-out", "shift +2m", "logged")]
    timing = {"neural_sweep_32x1024_s": sweep_time(scene, gt.log), "exact_sweep_32x1024_s": sweep_time(gt, gt.log),
              "target_s": SWEEP_TARGET_S, "device": str(scene.device), "renderer": args.renderer,
              "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    if args.json:
        print(json.dumps({"sets": rows, "timing": timing, "scene": str(scene_dir)}, indent=1))
        return
    print(f"scene {scene_dir} ({args.renderer} renderer, {timing['device']}, {timing['threads']} threads)")
    print(f"{'set':<11}{'sweeps':>7}{'median m':>10}{'mean m':>9}{'chamfer m':>11}{'drop acc':>10}{'drop F1':>9}"
          f"{'int. RMSE':>10}{'drops':>11}{'rays/s':>10}")
    for r in rows:
        inten = "-" if r["intensity_rmse"] is None else f"{r['intensity_rmse']:.3f}"
        print(f"{r['set']:<11}{r['sweeps']:>7}{r['median_range_error_m']:>10.3f}{r['mean_range_error_m']:>9.3f}"
              f"{r['chamfer_m']:>11.3f}{r['drop_accuracy']:>10.3f}{r['drop_f1']:>9.3f}{inten:>10}"
              f"{r['drop_model'] or '-':>11}{r['rays_per_s']:>10.0f}")
    print(f"32x1024 sweep: neural {timing['neural_sweep_32x1024_s']:.2f} s (target {SWEEP_TARGET_S:.0f} s), "
          f"exact {timing['exact_sweep_32x1024_s']:.2f} s")


if __name__ == "__main__":
    main()
