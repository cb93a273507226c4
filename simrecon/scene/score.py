"""Score a scene against ground-truth renders (a GT set's cameras.json from ``simrecon synth``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.model import Intrinsics
from ..train.metrics import psnr, ssim
from .neural import NeuralScene


def score_gt_set(scene: NeuralScene, gt_dir: Path, max_frames: int | None = None) -> dict:
    """PSNR / SSIM of the scene rendered at every camera of ``gt_dir/cameras.json`` vs its images, and
    ``sky_opaque``: the share of the true sky's pixels (infinite depth in the set's depth files) that the render
    covers with a surface (opacity > 0.5), None when the set has no depth. A scene can paint the sky onto a
    ceiling of density a few tens of metres away and still score a fair PSNR; its depth maps are then wrong.

    Actors are placed as logged except those the set removed (``removed_actor``)."""
    gt_dir = Path(gt_dir)
    doc = json.loads((gt_dir / "cameras.json").read_text())
    intr = Intrinsics(doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"], int(doc["w"]), int(doc["h"]),
                      doc.get("camera_model", "PINHOLE"))
    removed = doc.get("removed_actor")
    frames = doc["frames"][:max_frames] if max_frames else doc["frames"]
    from ..data.scene_api import logged_placements

    scores = []
    sky_px = sky_opaque = 0
    for f in frames:
        placements = logged_placements(scene.log, f["timestamp"])
        placements.pop(removed, None)
        out = scene.render_image(np.array(f["transform_matrix"]), intr, f["timestamp"], camera=f["camera"],
                                 placements=placements)
        with Image.open(gt_dir / f["file_path"]) as im:
            gt = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)
        pred = torch.from_numpy(out.rgb)
        scores.append((psnr(pred, gt), ssim(pred, gt)))
        if f.get("depth_file_path"):
            sky = ~np.isfinite(np.load(gt_dir / f["depth_file_path"]))  # [H, W]
            sky_px += int(sky.sum())
            sky_opaque += int((out.acc[sky] > 0.5).sum())
    return {"set": gt_dir.name, "frames": len(scores), "psnr": round(float(np.mean([s[0] for s in scores])), 3),
            "ssim": round(float(np.mean([s[1] for s in scores])), 4),
            "sky_opaque": round(sky_opaque / sky_px, 3) if sky_px else None}
