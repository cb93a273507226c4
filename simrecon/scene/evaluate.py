"""``simrecon eval``: PSNR / SSIM on held-out frames, and depth error against lidar where it exists (returns and,
for v1.1 logs, whole sweeps: range, ray drop, Chamfer, intensity)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..render import TrainingInputs
from ..render.rays import lidar_rays
from .metrics import psnr, ssim
from .folder import training_sweeps
from .lidar import ray_range
from .lidar_eval import score_sweeps
from .neural import NeuralScene


def actor_mask(scene: NeuralScene, frame) -> np.ndarray:
    """[H, W] bool: pixels inside the 2D hull (bounding rectangle) of any projected actor box."""
    h, w = frame.intrinsics.h, frame.intrinsics.w
    mask = np.zeros((h, w), bool)
    for actor in scene.log.actors:
        corners = actor.corners_at(frame.timestamp)
        if corners is None:
            continue
        uv, depth = frame.project(corners)
        if np.any(depth <= 0.1):
            continue
        u0, v0 = np.floor(uv.min(0)).astype(int)
        u1, v1 = np.ceil(uv.max(0)).astype(int)
        mask[max(v0, 0):max(min(v1, h), 0), max(u0, 0):max(min(u1, w), 0)] = True
    return mask


def evaluate(scene: NeuralScene, frames: list | None = None, on_frame=None, lidar_points: int = 20000,
             lidar_sweeps: int = 4) -> dict:
    """Metrics over ``frames`` (default: the held-out frames); with lidar, the depth error at ``lidar_points``
    returns and, for sweeps with a sensor model and layout (v1.1), up to ``lidar_sweeps`` whole sweeps rendered
    against the recorded ones (``lidar_eval``). Returns a JSON-ready dict."""
    if frames is None:
        held = set(scene.info.holdout)
        frames = [f for f in scene.log.frames if f.file_path in held]
    per_frame = []
    actor_err, actor_px = 0.0, 0
    for i, f in enumerate(frames):
        out = scene.render_image(f.c2w, f.intrinsics, f.timestamp, camera=f.camera, shutter=scene.shutter_for(f))
        with Image.open(scene.log.root / f.file_path) as im:
            gt = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        pred = torch.from_numpy(out.rgb)
        tgt = torch.from_numpy(gt)
        mask = actor_mask(scene, f)
        if mask.any():
            actor_err += float(((out.rgb - gt)[mask] ** 2).sum())
            actor_px += int(mask.sum()) * 3
        per_frame.append({"file_path": f.file_path, "camera": f.camera, "timestamp": f.timestamp,
                          "psnr": round(psnr(pred, tgt), 3), "ssim": round(ssim(pred, tgt), 4)})
        if on_frame:
            on_frame(i + 1, len(frames))
    result: dict = {"frames": per_frame, "num_frames": len(per_frame)}
    if per_frame:
        result["psnr"] = round(float(np.mean([p["psnr"] for p in per_frame])), 3)
        result["ssim"] = round(float(np.mean([p["ssim"] for p in per_frame])), 4)
    if actor_px:
        result["psnr_actor_pixels"] = round(float(-10 * np.log10(max(actor_err / actor_px, 1e-12))), 3)
    if scene.log.lidar:
        result["lidar_depth"] = lidar_depth_error(scene, lidar_points)
        sweeps = score_sweeps(scene, held_out_sweeps(scene) or scene.log.lidar, max_sweeps=lidar_sweeps)
        if sweeps is not None:
            result["lidar_sweeps"] = {"held_out_sweeps": bool(held_out_sweeps(scene)), **sweeps.to_json()}
    return result


def held_out_sweeps(scene: NeuralScene) -> list:
    """The log's sweeps the scene never trained on (taken when every camera frame was held out)."""
    trained = {id(s) for s in training_sweeps(scene.log, set(scene.info.holdout))}
    return [s for s in scene.log.lidar if id(s) not in trained]


@torch.no_grad()
def lidar_depth_error(scene: NeuralScene, max_points: int, chunk: int = 8192) -> dict:
    """Rendered vs measured range over up to ``max_points`` lidar returns (all sweeps, any log: no sensor model
    needed): the expected distance's error, the median distance's (``lidar.ray_range``, what rendered sweeps
    return) and, when the scene has the intensity head and the returns carry intensity, the intensity RMSE."""
    held = held_out_sweeps(scene)
    sweeps = held or scene.log.lidar  # sweeps never trained on when the holdout leaves some
    o, p, t, inten = _sampled_returns(scene, sweeps, max_points)
    errs, med_errs, inten_err = [], [], []
    model = scene.model
    for i in range(0, len(o), chunk):
        rays, ranges = lidar_rays(o[i:i + chunk], p[i:i + chunk], t[i:i + chunk],
                                  torch.zeros(len(o[i:i + chunk]), dtype=torch.long), scene.info.near)
        rays = rays.to(scene.device)
        no_colour = torch.zeros(len(rays), dtype=torch.bool, device=scene.device)
        out = model(rays, train=TrainingInputs(stratified=False, rgb_rows=no_colour))
        errs.append((out.depth.cpu() - ranges).abs().numpy())
        med_errs.append((ray_range(out, "median").cpu() - ranges).abs().numpy())
        heads = model.lidar_head_outputs(rays, out)
        if heads is not None and heads.intensity is not None and inten is not None:
            inten_err.append((heads.intensity.cpu().numpy() - inten[i:i + chunk]))
    e, m = np.concatenate(errs), np.concatenate(med_errs)
    ie = np.concatenate(inten_err) if inten_err else None
    return {"held_out_sweeps": bool(held), "sweeps": len(sweeps), "points": int(len(e)),
            "mean_abs_m": round(float(e.mean()), 4), "median_abs_m": round(float(np.median(e)), 4),
            "within_10cm": round(float((e < 0.1).mean()), 4), "median_range_median_abs_m": round(float(np.median(m)), 4),
            "intensity_rmse": None if ie is None else round(float(np.sqrt(np.mean(ie ** 2))), 4)}


def _sampled_returns(scene: NeuralScene, sweeps: list, max_points: int):
    """(origins [N, 3], world points [N, 3], times [N], intensities [N] or None) of up to ``max_points`` returns
    spread over ``sweeps`` (fixed seed); intensities only when some return carries one."""
    rng = np.random.default_rng(0)
    per = max(1, max_points // len(sweeps))
    origins, points, times, inten = [], [], [], []
    for s in sweeps:
        raw = s.load(scene.log.root)
        pick = rng.choice(len(raw), size=min(per, len(raw)), replace=False)
        p = raw[pick, :3].astype(np.float64) @ s.s2w[:3, :3].T + s.s2w[:3, 3]
        origins.append(np.broadcast_to(s.s2w[:3, 3], p.shape))
        points.append(p)
        times.append(np.full(len(p), s.timestamp))
        inten.append(raw[pick, 3])
    i = np.concatenate(inten).astype(np.float32)
    return (torch.as_tensor(np.concatenate(origins), dtype=torch.float32),
            torch.as_tensor(np.concatenate(points), dtype=torch.float32),
            torch.as_tensor(np.concatenate(times), dtype=torch.float64), i if np.any(i != 0) else None)
