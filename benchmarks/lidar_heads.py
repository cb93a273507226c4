"""Learned lidar heads on the synthetic street: ray drop and intensity with the heads vs the geometric rule alone.

Trains a scene (the learned heads switch on by themselves: the street's sweeps carry intensity and a beam/column
layout), then renders sweeps twice, with the heads (drop = P(drop) > 0.5 on top of opacity and range; intensity
from the intensity head) and without them (opacity and range only; no intensity), and compares ray by ray:

- ``held-out logged``: the logged sweeps the scene never trained on (all cameras held out at their time), against
  the recording;
- ``held-out between``: sweeps at the midpoints between logged sweeps (poses and times the log never had), against
  the generator's exact sweeps (``GroundTruthScene.render_lidar``).

    python benchmarks/lidar_heads.py --minutes 1.5                # synthesise the street, train `fast`, measure
    python benchmarks/lidar_heads.py --scene SCENE --street STREET
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.data.scene_api import logged_placements  # noqa: E402
from simrecon.scene import load_scene  # noqa: E402
from simrecon.scene.evaluate import held_out_sweeps  # noqa: E402
from simrecon.scene.folder import training_sweeps  # noqa: E402
from simrecon.scene.lidar import NeuralLidarConfig, render_sweep  # noqa: E402
from simrecon.scene.lidar_eval import SweepComparison, recorded_range_image  # noqa: E402
from simrecon.synth import GroundTruthScene  # noqa: E402

from lidar import prepare, street_args  # noqa: E402  (benchmarks/lidar.py: the same street and scene options)


def _between(log, n: int) -> list[tuple]:
    """(sensor-to-world, time) midway between consecutive logged sweeps (the synthetic ego drives straight)."""
    sweeps = sorted(log.lidar, key=lambda s: s.timestamp)
    out = []
    for a, b in zip(sweeps[:-1], sweeps[1:]):
        pose = a.s2w.copy()
        pose[:3, 3] = (a.s2w[:3, 3] + b.s2w[:3, 3]) / 2
        out.append((pose, (a.timestamp + b.timestamp) / 2))
    return out[:: max(1, len(out) // n)][:n]


def measure(scene, gt, sweeps: int) -> list[dict]:
    """Per set and drop model (learned, geometric): the sweep metrics, and the intensity RMSE of the trivial
    baseline (every return at the training returns' mean intensity) on the true returns."""
    log = scene.log
    sensor = log.lidar_sensors["lidar"]
    trained = training_sweeps(log, set(scene.info.holdout))
    mean = float(np.mean(np.concatenate([s.load(log.root)[:, 3] for s in trained])))
    truth = {"held-out logged": [s.load(log.root)[:, 3] for s in held_out_sweeps(scene)[:sweeps]],
             "held-out between": [gt.render_lidar(sensor, p, t, logged_placements(log, t)).intensity
                                  for p, t in _between(log, sweeps)]}
    rows = []
    for heads in (True, False):
        cfg = NeuralLidarConfig(heads=heads)
        logged, between = SweepComparison(), SweepComparison()
        for s in held_out_sweeps(scene)[:sweeps]:
            got = render_sweep(scene, sensor, s.s2w, s.timestamp, logged_placements(log, s.timestamp), cfg)
            logged.add(got, *recorded_range_image(s, log.root, sensor))
        for s2w, t in _between(log, sweeps):
            placed = logged_placements(log, t)
            want = gt.render_lidar(sensor, s2w, t, placed)
            between.add(render_sweep(scene, sensor, s2w, t, placed, cfg), want.range_m, want.returned,
                        want.intensity, want.points())
        for name, cmp in (("held-out logged", logged), ("held-out between", between)):
            if cmp.sweeps:
                want = np.concatenate(truth[name])
                want = want[want > 0]  # the returns (the exact scene gives 0 on dropped rays)
                rows.append({"set": name, "heads": heads, **cmp.summary().to_json(),
                             "constant_intensity_rmse": round(float(np.sqrt(np.mean((want - mean) ** 2))), 5)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    street_args(ap, "/tmp/simrecon-bench-lidar-heads", 1.5)
    ap.add_argument("--sweeps", type=int, default=4, help="sweeps per set at most")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    street, scene_dir = prepare(args)
    scene = load_scene(scene_dir)
    rows = measure(scene, GroundTruthScene.from_log(street / "log"), args.sweeps)
    if args.json:
        print(json.dumps({"rows": rows, "scene": str(scene_dir)}, indent=1))
        return
    fmt = lambda v, spec: "-" if v is None else f"{v:{spec}}"  # noqa: E731
    print(f"scene {scene_dir}")
    print(f"{'set':<18}{'drop model':>12}{'sweeps':>7}{'drop acc':>10}{'drop F1':>9}{'intensity RMSE':>16}"
          f"{'median m':>10}{'constant intensity RMSE':>25}")
    for r in rows:
        print(f"{r['set']:<18}{'learned' if r['heads'] else 'geometric':>12}{r['sweeps']:>7}"
              f"{fmt(r['drop_accuracy'], '.3f'):>10}{fmt(r['drop_f1'], '.3f'):>9}"
              f"{fmt(r['intensity_rmse'], '.3f'):>16}{fmt(r['median_range_error_m'], '.3f'):>10}"
              f"{r['constant_intensity_rmse']:>25.3f}")


if __name__ == "__main__":
    main()
