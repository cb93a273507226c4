"""What a person looks at after ``simrecon drive``: ``report.html`` (the metrics, the events, a bird's-eye plot of
the drive) and, when the cameras' frames were written, ``video.gif``: every step's observed cameras side by side
with a bird's-eye panel of the ego's path so far, the actors' boxes and the ego's box at that step."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .plot import box_corners, birdseye_svg

EGO = (207, 34, 46)
ACTOR = (140, 149, 159)
PATH = (9, 105, 218)


class _Panel:
    """World (x, y) -> pixels of a bird's-eye panel ``height`` pixels high (and up to 3x as wide) over everything
    the drive saw, one scale for both axes."""

    def __init__(self, traj: dict, height: int, margin_m: float = 5.0):
        pts = [[s["ego_pose"][0][3], s["ego_pose"][1][3]] for s in traj["steps"]]
        pts += [[a["pose"][0][3], a["pose"][1][3]] for s in traj["steps"] for a in s["actors"]]
        p = np.asarray(pts, float).reshape(-1, 2)
        self.lo = p.min(0) - margin_m if len(p) else np.zeros(2)
        span = np.maximum(p.max(0) + margin_m - self.lo, 1e-6) if len(p) else np.ones(2)
        self.height = height
        self.width = int(np.clip(height * span[0] / span[1], height, 3 * height))
        self.scale = min(self.width / span[0], height / span[1])

    def px(self, xy: np.ndarray) -> list[tuple[float, float]]:
        q = (np.asarray(xy, float).reshape(-1, 2) - self.lo) * self.scale
        return [(float(x), float(self.height - y)) for x, y in q]


def _panel_at(panel: _Panel, traj: dict, k: int) -> Image.Image:
    img = Image.new("RGB", (panel.width, panel.height), (246, 248, 250))
    d = ImageDraw.Draw(img)
    step = traj["steps"][k]
    for a in step["actors"]:
        d.polygon(panel.px(box_corners(a["pose"], a["size"])), outline=ACTOR, fill=(215, 220, 225))
    path = [[s["ego_pose"][0][3], s["ego_pose"][1][3]] for s in traj["steps"][:k + 1]]
    if len(path) > 1:
        d.line(panel.px(np.asarray(path)), fill=PATH, width=2)
    box = step["ego_box"]
    d.polygon(panel.px(box_corners(box["pose"], box["size"])), outline=EGO, fill=(255, 200, 200) if not
              step.get("contacts") else EGO)
    d.text((4, 2), f"t={step['time']:.1f} s  v={step['speed']:.1f} m/s", fill=(0, 0, 0))
    return img


def write_video(folder: Path, traj: dict, cameras: list[str]) -> Path | None:
    """``folder``/video.gif from ``folder``/frames/CAMERA/STEP.png (None when there are no frames)."""
    steps = traj["steps"]
    if not cameras or not (folder / "frames" / cameras[0] / f"{0:06d}.png").is_file():
        return None
    first = Image.open(folder / "frames" / cameras[0] / f"{0:06d}.png")
    height = max(96, first.height)
    panel = _Panel(traj, height)
    images = []
    for k in range(len(steps)):
        tiles = []
        for cam in cameras:
            path = folder / "frames" / cam / f"{k:06d}.png"
            if path.is_file():
                im = Image.open(path).convert("RGB")
                tiles.append(im.resize((max(1, round(im.width * height / im.height)), height), Image.NEAREST))
        tiles.append(_panel_at(panel, traj, k))
        frame = Image.new("RGB", (sum(t.width for t in tiles), height))
        x = 0
        for t in tiles:
            frame.paste(t, (x, 0))
            x += t.width
        images.append(frame)
    out = folder / "video.gif"
    images[0].save(out, save_all=True, append_images=images[1:], duration=max(20, round(1000 * traj["dt"])),
                   loop=0)
    return out


def _table(rows: list[tuple[str, str]]) -> str:
    e = html.escape
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows) + "</table>"


def write_report(folder: Path, traj: dict, metrics: dict, events: list[dict], run: dict, video: bool) -> None:
    """``folder``/report.html of one drive."""
    e = html.escape
    shown = [(k, "none" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)))
             for k, v in metrics.items() if k != "run"]
    ev = "".join(f"<tr><td>{x['time']:.2f}</td><td>{x['step']}</td><td>{e(x['kind'])}</td>"
                 f"<td>{e(str(x.get('actor') or ''))}</td><td>{e(str(x.get('message') or ''))}</td></tr>"
                 for x in events) or "<tr><td colspan='5'>none</td></tr>"
    clip = "<h2>Observed cameras</h2><img src='video.gif' alt='the drive'>" if video else ""
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>simrecon drive</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}img{{image-rendering:pixelated;max-width:100%}}</style>
</head><body><h1>simrecon drive: score {metrics['score']:.3f}, ended by {e(metrics['ended'])}</h1>
<p>scenario <code>{e(str(run.get('scenario')))}</code>, policy <code>{e(str(run.get('policy')))}</code></p>
{clip}<h2>Bird's-eye</h2>{birdseye_svg([("ego", "#cf222e", traj)])}
<h2>Metrics</h2>{_table(shown)}
<h2>Events</h2><table><tr><th>time (s)</th><th>step</th><th>kind</th><th>actor</th><th>message</th></tr>{ev}</table>
</body></html>
"""
    (folder / "report.html").write_text(doc, encoding="utf-8")
