"""Where a scene's error against a ground-truth set is: by class, on the sky, and the depth error by height.

Renders SCENE at the cameras of a GT set of ``simrecon synth`` (e.g. ``GT/ego_shift_left_2m``, the lane-shift
target) and splits the squared error by the set's semantic classes, splits the error on sky pixels by the
opacity the render gives them (a sky pixel rendered opaque shows a surface where there is none), and gives the
share of pixels of one class (``--depth-class``, default building) whose rendered depth is off by more than 10 %,
by the height of the true surface: surfaces above the lidar's reach learn their depth from the cameras alone.

    python benchmarks/gt_errors.py SCENE STREET/gt/ego_shift_left_2m --frames 5
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import json
from pathlib import Path

import numpy as np
from heldout_errors import _psnr  # benchmarks/, the script's own folder
from PIL import Image

from simrecon.render.rays import camera_directions
from simrecon.scene import load_scene
from simrecon.scene.score import gt_set_intrinsics, render_gt_set

ACC_BINS = (0.0, 0.02, 0.2, 0.5, 0.9, 1.01)  # opacity of the render on ground-truth sky pixels
HEIGHT_BINS = (-np.inf, 4.0, 8.0, 11.0, 14.0, 17.0, np.inf)  # metres (world z) of the true surface


class _Tally:
    """Squared-error sums and pixel counts by label."""

    def __init__(self) -> None:
        self.err: dict[str, float] = {}
        self.px: dict[str, int] = {}

    def add(self, label: str, e: np.ndarray) -> None:
        self.err[label] = self.err.get(label, 0.0) + float(e.sum())
        self.px[label] = self.px.get(label, 0) + int(e.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene", type=Path)
    ap.add_argument("gt_set", type=Path, help="a GT set folder of simrecon synth (with cameras.json)")
    ap.add_argument("--frames", type=int, default=5, help="the set's first N cameras")
    ap.add_argument("--depth-class", default="building")
    args = ap.parse_args()
    scene = load_scene(args.scene)
    doc = json.loads((args.gt_set / "cameras.json").read_text())
    classes = json.loads((args.gt_set.parent / "actors.json").read_text())["semantic_classes"]  # name -> id
    names = {v: k for k, v in classes.items()}
    view = camera_directions(gt_set_intrinsics(doc)).numpy()  # [H, W, 3] OpenGL camera axes
    view = view / -view[..., 2:3]  # per unit depth along the view axis
    by_class, sky, total = _Tally(), _Tally(), _Tally()
    depth_off = {i: [0, 0] for i in range(len(HEIGHT_BINS) - 1)}  # height bin -> [off by > 10 %, pixels]
    for f, out, gt in render_gt_set(scene, args.gt_set, args.frames):
        c2w = np.array(f["transform_matrix"])
        with Image.open(args.gt_set / f["semantic_file_path"]) as im:
            sem = np.asarray(im)
        depth = np.load(args.gt_set / f["depth_file_path"])  # [H, W] along the view axis, inf on the sky
        e = ((out.rgb - gt) ** 2).mean(-1)  # [H, W]
        total.add("all", e)
        for cid in np.unique(sem):
            by_class.add(names.get(int(cid), str(cid)), e[sem == cid])
        is_sky = ~np.isfinite(depth)
        for lo, hi in zip(ACC_BINS, ACC_BINS[1:]):
            sky.add(f"{lo:g}-{min(hi, 1.0):g}", e[is_sky & (out.acc >= lo) & (out.acc < hi)])
        m = (sem == classes.get(args.depth_class, -1)) & np.isfinite(depth)
        height = (c2w[:3, :3] @ (view[m] * depth[m][:, None]).T).T[:, 2] + c2w[2, 3]  # [M] world z
        rendered = np.where(np.isfinite(out.depth[m]), out.depth[m], 1e9)
        off = np.abs(rendered - depth[m]) > 0.1 * depth[m]
        which = np.digitize(height, HEIGHT_BINS[1:-1])
        for i in depth_off:
            depth_off[i][0] += int(off[which == i].sum())
            depth_off[i][1] += int((which == i).sum())
    all_err = total.err["all"]
    print(f"{args.gt_set.name}: {min(args.frames, len(doc['frames']))} frames, PSNR {_psnr(all_err, total.px['all'])}")
    print(f"\n{'class':>12} | pixels | error share | PSNR")
    for lab in sorted(by_class.err, key=lambda k: -by_class.err[k]):
        print(f"{lab:>12} | {by_class.px[lab] / total.px['all']:6.3f} | {by_class.err[lab] / all_err:11.3f} | "
              f"{_psnr(by_class.err[lab], by_class.px[lab])}")
    print(f"\n{'sky opacity':>12} | pixels | error share | PSNR")
    for lab in sky.err:
        print(f"{lab:>12} | {sky.px[lab] / total.px['all']:6.3f} | {sky.err[lab] / all_err:11.3f} | "
              f"{_psnr(sky.err[lab], sky.px[lab])}")
    print(f"\n{args.depth_class} depth off by > 10 %, by the height of the true surface:")
    for i, (n_off, n) in depth_off.items():
        if n:
            print(f"  {HEIGHT_BINS[i]:>5g} to {HEIGHT_BINS[i + 1]:<5g} m: {n_off / n:.3f} of {n} pixels")


if __name__ == "__main__":
    main()
