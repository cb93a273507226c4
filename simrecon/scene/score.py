"""Score a scene against ground-truth renders (a GT set's cameras.json from ``simrecon synth``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.model import Intrinsics
from ..render.image import ImageOutput
from .metrics import psnr, ssim
from .neural import NeuralScene


def gt_set_intrinsics(doc: dict) -> Intrinsics:
    """The one camera model of a GT set's cameras.json."""
    return Intrinsics(doc["fl_x"], doc["fl_y"], doc["cx"], doc["cy"], int(doc["w"]), int(doc["h"]),
                      doc.get("camera_model", "PINHOLE"))


def render_gt_set(scene: NeuralScene, gt_dir: Path, max_frames: int | None = None
                  ) -> Iterator[tuple[dict, ImageOutput, np.ndarray]]:
    """Render the scene at each camera of ``gt_dir/cameras.json`` (its first ``max_frames``), actors placed as
    logged except the one the set removed (``removed_actor``). Yields (the frame's entry, the render, the
    ground-truth RGB [H, W, 3] float32 in [0, 1])."""
    gt_dir = Path(gt_dir)
    doc = json.loads((gt_dir / "cameras.json").read_text())
    intr = gt_set_intrinsics(doc)
    removed = doc.get("removed_actor")
    from ..data.scene_api import logged_placements

    for f in doc["frames"][:max_frames] if max_frames else doc["frames"]:
        placements = logged_placements(scene.log, f["timestamp"])
        placements.pop(removed, None)
        # exact poses: not corrected as the log's (possibly noisy) poses are
        out = scene.render_image(np.array(f["transform_matrix"]), intr, f["timestamp"], camera=f["camera"],
                                 placements=placements, refine=False)
        with Image.open(gt_dir / f["file_path"]) as im:
            gt = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        yield f, out, gt


def score_gt_set(scene: NeuralScene, gt_dir: Path, max_frames: int | None = None) -> dict:
    """PSNR / SSIM of the scene rendered at every camera of ``gt_dir/cameras.json`` vs its images, and
    ``sky_opaque``: the share of the true sky's pixels (infinite depth in the set's depth files) that the render
    covers with a surface (opacity > 0.5), None when the set has no depth. A scene can paint the sky onto a
    ceiling of density a few tens of metres away and still score a fair PSNR; its depth maps are then wrong.

    Actors are placed as logged except those the set removed (``removed_actor``)."""
    gt_dir = Path(gt_dir)
    scores = []
    sky_px = sky_opaque = 0
    for f, out, gt in render_gt_set(scene, gt_dir, max_frames):
        pred, gt_t = torch.from_numpy(out.rgb), torch.from_numpy(gt)
        scores.append((psnr(pred, gt_t), ssim(pred, gt_t)))
        if f.get("depth_file_path"):
            sky = ~np.isfinite(np.load(gt_dir / f["depth_file_path"]))  # [H, W]
            sky_px += int(sky.sum())
            sky_opaque += int((out.acc[sky] > 0.5).sum())
    return {"set": gt_dir.name, "frames": len(scores), "psnr": round(float(np.mean([s[0] for s in scores])), 3),
            "ssim": round(float(np.mean([s[1] for s in scores])), 4),
            "sky_opaque": round(sky_opaque / sky_px, 3) if sky_px else None}
