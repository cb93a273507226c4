"""Where a scene's held-out error is: by rendered depth, on image edges, and with supersampled rendering.

Renders each held-out frame of SCENE and splits the squared error (and PSNR) by the rendered depth (and the
sky: opacity < 0.5), and by image edges (ground-truth gradient above ``--edge``). With ``--supersample K`` it
also renders each frame with K x K rays per pixel, averaged, and reports both PSNRs: if supersampling helps,
the error is aliasing in the renderer, not the field.

    python benchmarks/heldout_errors.py SCENE --supersample 2
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: see simrecon/cli/main.py

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from PIL import Image

from simrecon.scene import load_scene

DEPTH_BINS = (0.0, 5.0, 10.0, 20.0, 40.0, 80.0, float("inf"))  # metres (scene units)


def _psnr(sq_err_sum: float, n: int) -> float:
    return round(float(-10 * np.log10(max(sq_err_sum / max(n, 1), 1e-12))), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scene", type=Path)
    ap.add_argument("--edge", type=float, default=0.1, help="edge pixels: |horizontal| + |vertical| gradient of "
                                                            "the ground truth's grey level above this")
    ap.add_argument("--supersample", type=int, default=0, metavar="K", help="also render K x K rays per pixel")
    args = ap.parse_args()
    scene = load_scene(args.scene)
    held = set(scene.info.holdout)
    frames = [f for f in scene.log.frames if f.file_path in held]
    if not frames:
        raise SystemExit(f"{args.scene}: no held-out frames")
    labels = [f"{a:g}-{b:g}" for a, b in zip(DEPTH_BINS, DEPTH_BINS[1:])] + ["sky"]
    err = dict.fromkeys(labels, 0.0)
    cnt = dict.fromkeys(labels, 0)
    edge_err = total_err = 0.0
    edge_px = total_px = 0
    vert_err, vert_px = 0.0, 0  # the edges that run up the image (stronger horizontal gradient)
    rows = []
    for f in frames:
        with Image.open(scene.log.root / f.file_path) as im:
            gt = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        out = scene.render_image(f.c2w, f.intrinsics, f.timestamp, camera=f.camera)
        e = ((out.rgb - gt) ** 2).mean(-1)  # [H, W]
        which = np.digitize(out.depth, DEPTH_BINS[1:-1])  # [H, W] depth bin
        for i, lab in enumerate(labels[:-1]):
            m = (which == i) & (out.acc >= 0.5)
            err[lab] += float(e[m].sum())
            cnt[lab] += int(m.sum())
        sky = out.acc < 0.5
        err["sky"] += float(e[sky].sum())
        cnt["sky"] += int(sky.sum())
        grey = gt.mean(-1)
        gx = np.abs(np.diff(grey, axis=1, prepend=grey[:, :1]))  # [H, W] across columns: vertical edges
        gy = np.abs(np.diff(grey, axis=0, prepend=grey[:1]))
        edge = gx + gy > args.edge
        edge_err += float(e[edge].sum())
        edge_px += int(edge.sum())
        vertical = edge & (gx > gy)
        vert_err += float(e[vertical].sum())
        vert_px += int(vertical.sum())
        total_err += float(e.sum())
        total_px += e.size
        row = {"frame": f.file_path, "psnr": _psnr(float(e.sum()), e.size),
               "edges_psnr": _psnr(float(e[edge].sum()), int(edge.sum()))}
        if args.supersample > 1:
            k, intr = args.supersample, f.intrinsics
            big = dataclasses.replace(intr, fl_x=intr.fl_x * k, fl_y=intr.fl_y * k, cx=intr.cx * k, cy=intr.cy * k,
                                      w=intr.w * k, h=intr.h * k)  # pixel centres of the K x K sub-pixels
            rgb = scene.render_image(f.c2w, big, f.timestamp, camera=f.camera).rgb
            rgb = rgb.reshape(intr.h, k, intr.w, k, 3).mean((1, 3))
            row[f"psnr_{k}x{k}"] = _psnr(float(((rgb - gt) ** 2).mean(-1).sum()), e.size)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'depth':>10} | pixels | error share | PSNR")
    for lab in labels:
        if cnt[lab]:
            share_px, share_err = cnt[lab] / total_px, err[lab] / total_err
            print(f"{lab:>10} | {share_px:6.3f} | {share_err:11.3f} | {_psnr(err[lab], cnt[lab])}")
    print(f"edges: {edge_px / total_px:.3f} of the pixels, {edge_err / total_err:.3f} of the squared error "
          f"(PSNR {_psnr(edge_err, edge_px)} on them, {_psnr(total_err - edge_err, total_px - edge_px)} elsewhere)")
    print(f"  vertical edges: {vert_px / max(edge_px, 1):.3f} of the edge pixels, PSNR {_psnr(vert_err, vert_px)}; "
          f"horizontal: PSNR {_psnr(edge_err - vert_err, edge_px - vert_px)}")
    print(f"mean PSNR {np.mean([r['psnr'] for r in rows]):.2f}" + "".join(
        f", {k}: {np.mean([r[k] for r in rows]):.2f}" for k in rows[0] if k.startswith("psnr_")))


if __name__ == "__main__":
    main()
