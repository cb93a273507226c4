"""HTML sections about a reconstructed scene: training curve, held-out frames beside their renders."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .neural import NeuralScene


def training_curve(metrics_file: Path, size: tuple[int, int] = (640, 240)) -> Image.Image:
    """Batch PSNR over training time, drawn with PIL (no plotting dependency)."""
    recs = [json.loads(line) for line in Path(metrics_file).read_text().splitlines() if line.strip()]
    w, h = size
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    if len(recs) < 2:
        draw.text((10, 10), "not enough training steps to plot", fill="black")
        return im
    t = np.array([r["time"] for r in recs], dtype=float)
    p = np.array([r["psnr"] for r in recs], dtype=float)
    left, right, top, bottom = 48, w - 12, 12, h - 28
    lo, hi = float(np.floor(p.min())), float(np.ceil(p.max()))
    hi = max(hi, lo + 1)
    x = left + (t - t.min()) / max(t.max() - t.min(), 1e-9) * (right - left)
    y = bottom - (p - lo) / (hi - lo) * (bottom - top)
    draw.rectangle((left, top, right, bottom), outline=(180, 180, 180))
    for v in np.linspace(lo, hi, 5):
        yy = bottom - (v - lo) / (hi - lo) * (bottom - top)
        draw.line((left - 3, yy, left, yy), fill="black")
        draw.text((4, yy - 6), f"{v:.0f}", fill="black")
    draw.line(list(zip(x.tolist(), y.tolist())), fill=(30, 90, 200), width=2)
    draw.text((left, bottom + 8), "0 s", fill="black")
    draw.text((right - 60, bottom + 8), f"{t.max():.0f} s", fill="black")
    draw.text((left + 8, top + 4), "batch PSNR (dB) over training time", fill="black")
    return im


def side_by_side(scene: NeuralScene, frame) -> Image.Image:
    """Recorded image | render | 4x absolute difference, for one frame."""
    out = scene.render_image(frame.c2w, frame.intrinsics, frame.timestamp, camera=frame.camera,
                             shutter=scene.shutter_for(frame))
    with Image.open(scene.log.root / frame.file_path) as im:
        gt = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    diff = np.clip(np.abs(out.rgb - gt) * 4, 0, 1)
    row = np.concatenate([gt, out.rgb, diff], axis=1)
    return Image.fromarray((row * 255 + 0.5).astype(np.uint8))


def scene_sections(scene: NeuralScene, files_dir: Path, rel: str, evaluation: dict | None,
                   video: Path | None, gt_scores: list[dict] | None = None, max_frames: int = 3) -> str:
    """HTML for the scene part of a report; images are written into ``files_dir`` (``rel`` in links)."""
    files_dir.mkdir(parents=True, exist_ok=True)
    parts = [f"<h2>Reconstruction</h2><p>Scene <code>{html.escape(str(scene.scene_dir))}</code>: "
             f"{scene.info.step} steps in {scene.info.elapsed / 60:.1f} min ({html.escape(scene.info.status)}).</p>"]
    training_curve(scene.scene_dir / "metrics.jsonl").save(files_dir / "training_curve.png")
    parts.append(f'<img src="{rel}/training_curve.png" alt="training curve">')
    if evaluation and evaluation.get("num_frames"):
        extra = (f", actor pixels {evaluation['psnr_actor_pixels']:.2f} dB" if "psnr_actor_pixels" in evaluation
                 else "")
        parts.append(f"<h3>Held-out frames</h3><p>Mean PSNR {evaluation['psnr']:.2f} dB, SSIM "
                     f"{evaluation['ssim']:.4f}{extra}. Each row: recorded | rendered | 4x difference.</p>")
        held = set(scene.info.holdout)
        frames = [f for f in scene.log.frames if f.file_path in held][:max_frames]
        for i, f in enumerate(frames):
            side_by_side(scene, f).save(files_dir / f"heldout_{i}.jpg", quality=90)
            parts.append(f"<p>{html.escape(f.file_path)}</p><img src=\"{rel}/heldout_{i}.jpg\" alt=\"held-out\">")
    if evaluation and "lidar_depth" in evaluation:
        d = evaluation["lidar_depth"]
        parts.append(f"<p>Lidar depth error: median {d['median_abs_m']:.3f} m, mean {d['mean_abs_m']:.3f} m, "
                     f"{100 * d['within_10cm']:.1f}% within 10 cm.</p>")
    if gt_scores:
        def sky(s: dict) -> str:
            return "" if s.get("sky_opaque") is None else f"{100 * s['sky_opaque']:.0f} %"

        rows = "".join(f"<tr><td>{html.escape(s['set'])}</td><td>{s['psnr']:.2f}</td><td>{s['ssim']:.4f}</td>"
                       f"<td>{sky(s)}</td></tr>" for s in gt_scores)
        parts.append("<h3>Views the log never recorded, against the generator's ground truth</h3>"
                     "<table><tr><th>set</th><th>PSNR</th><th>SSIM</th><th>sky covered by a surface</th></tr>"
                     f"{rows}</table>")
    if video is not None:
        parts.append(f"<h3>Lane-shifted drive</h3><video src=\"{html.escape(str(video))}\" controls loop "
                     "width=\"640\"></video>")
    return "".join(parts)
