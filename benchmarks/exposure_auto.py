"""The exposure auto-switch's measure (simrecon/train/exposure_auto.py) of drive logs, without training: one line per
log with the measure, the decision at the threshold and each camera's value, over the frames a run would train on.

    python benchmarks/exposure_auto.py STREET/log DRIFT/log KITTI_LOG [--holdout every:8]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import time
from pathlib import Path

import torch

from simrecon.data.io import load_log
from simrecon.train.data import TrainData, parse_holdout
from simrecon.train.exposure_auto import THRESHOLD, measure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logs", nargs="+", type=Path, help="drive logs (folders with transforms.json)")
    ap.add_argument("--holdout", default="every:8", help="frames kept out, as reconstruct's --holdout")
    args = ap.parse_args()
    for path in args.logs:
        log = load_log(path)
        data = TrainData(log, parse_holdout(args.holdout, log), near=0.1, device=torch.device("cpu"))
        t = time.time()
        var = measure(data)
        cams = ", ".join(f"{data.camera_names[k]} {v:.4f}" for k, v in var.per_camera.items())
        print(f"{path}: {var.value:.4f} -> {'on' if var.value > THRESHOLD else 'off'} (threshold {THRESHOLD}; "
              f"{var.frames} frames in {time.time() - t:.2f} s; {cams})", flush=True)


if __name__ == "__main__":
    main()
