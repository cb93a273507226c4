"""Small self-contained HTML report of a drive log: summary tables and a contact sheet of the cameras.

The overlay image projects lidar points (coloured by depth) and actor boxes into one camera: if the
conventions were wrong anywhere, points and boxes would not sit on the surfaces they belong to.
"""

from __future__ import annotations

import html
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .data.model import DriveLog, Frame

THUMB_WIDTH = 320
_BOX_EDGES = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7)]


def _pick_times(log: DriveLog, count: int) -> list[float]:
    times = sorted({f.timestamp for f in log.frames})
    if len(times) <= count:
        return times
    return [times[i] for i in np.linspace(0, len(times) - 1, count).round().astype(int)]


def _thumb(path: Path, width: int) -> Image.Image:
    with Image.open(path) as im:
        im = im.convert("RGB")
        return im.resize((width, max(1, round(im.height * width / im.width))), Image.BILINEAR)


def contact_sheet(log: DriveLog, rows: int = 4, width: int = THUMB_WIDTH) -> Image.Image:
    """Grid of thumbnails: one column per camera, ``rows`` timestamps spread over the log."""
    cams = log.cameras
    names = sorted(cams)
    times = _pick_times(log, rows)
    thumbs: dict[tuple[int, int], Image.Image] = {}
    for r, t in enumerate(times):
        for c, name in enumerate(names):
            frame = min(cams[name], key=lambda f: abs(f.timestamp - t))
            thumbs[r, c] = _thumb(log.root / frame.file_path, width)
    cell_h = max((im.height for im in thumbs.values()), default=1)
    pad, label = 4, 16
    sheet = Image.new("RGB", (len(names) * (width + pad) + pad, len(times) * (cell_h + label + pad) + pad), "white")
    draw = ImageDraw.Draw(sheet)
    for (r, c), im in thumbs.items():
        x, y = pad + c * (width + pad), pad + r * (cell_h + label + pad)
        draw.text((x, y), f"{names[c]}  t={times[r]:.2f}s", fill="black")
        sheet.paste(im, (x, y + label))
    return sheet


def _depth_color(depth: np.ndarray, far: float = 40.0) -> np.ndarray:
    """Near red -> far blue, [N, 3] uint8."""
    a = np.clip(depth / far, 0.0, 1.0)[:, None]
    return (np.array([255, 40, 0]) * (1 - a) + np.array([0, 120, 255]) * a).astype(np.uint8)


def overlay(log: DriveLog, frame: Frame) -> Image.Image:
    """``frame``'s image with the nearest lidar sweep's points and the actor boxes projected into it."""
    with Image.open(log.root / frame.file_path) as im:
        im = im.convert("RGB")
    draw = ImageDraw.Draw(im)
    if log.lidar:
        sweep = min(log.lidar, key=lambda s: abs(s.timestamp - frame.timestamp))
        pts = sweep.load_world(log.root)
        uv, depth = frame.project(pts)
        ok = (depth > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < im.width) & (uv[:, 1] >= 0) & (uv[:, 1] < im.height)
        colors = _depth_color(depth[ok])
        for (u, v), col in zip(uv[ok][::2], colors[::2]):
            draw.rectangle((float(u) - 0.5, float(v) - 0.5, float(u) + 0.5, float(v) + 0.5),
                           fill=tuple(int(x) for x in col))
    for actor in log.actors:
        corners = actor.corners_at(frame.timestamp)
        if corners is None:
            continue
        uv, depth = frame.project(corners)
        if np.any(depth <= 0.1):
            continue  # box reaches behind the camera: skip rather than draw a wrapped line
        for a, b in _BOX_EDGES:
            draw.line([tuple(uv[a]), tuple(uv[b])], fill=(255, 255, 0), width=1)
        top = uv[np.argmin(uv[:, 1])]
        draw.text((float(top[0]), float(top[1]) - 12), actor.id, fill=(255, 255, 0))
    return im


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def camera_rows(log: DriveLog) -> list[list[str]]:
    rows = []
    for name, frames in sorted(log.cameras.items()):
        intr = frames[0].intrinsics
        rows.append([name, f"{intr.w}x{intr.h}", intr.model, str(len(frames)),
                     f"{frames[0].timestamp:.2f} - {frames[-1].timestamp:.2f} s"])
    return rows


def actor_rows(log: DriveLog) -> list[list[str]]:
    counts = Counter(a.cls for a in log.actors)
    static = Counter(a.cls for a in log.actors if a.static)
    return [[cls, str(n), str(static[cls]), str(n - static[cls])] for cls, n in sorted(counts.items())]


def write_report(log: DriveLog, out_html: Path, title: str = "simrecon report", extra_html: str = "") -> Path:
    """Write ``out_html`` and its images folder (``<name>_files/``); both appear only once complete."""
    out_html = Path(out_html)
    files = out_html.with_name(out_html.stem + "_files")
    tmp_files = out_html.with_name(f".{files.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp_files, ignore_errors=True)
    tmp_files.mkdir(parents=True)
    contact_sheet(log).save(tmp_files / "contact_sheet.jpg", quality=90)
    cams = log.cameras
    first_cam = sorted(cams)[0] if "front" not in cams else "front"
    mid = cams[first_cam][len(cams[first_cam]) // 2]
    overlay(log, mid).save(tmp_files / "overlay.jpg", quality=90)
    rel = files.name
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Log: <code>{html.escape(str(log.root))}</code><br>{html.escape(log.summary())}</p>",
        "<h2>Cameras</h2>", _table(["camera", "resolution", "model", "frames", "time span"], camera_rows(log)),
        "<h2>Actors</h2>", _table(["class", "count", "static", "moving"], actor_rows(log)) if log.actors
        else "<p>none</p>",
        "<h2>Contact sheet</h2>", f'<img src="{rel}/contact_sheet.jpg" alt="contact sheet">',
        f"<h2>Lidar and boxes projected into {html.escape(first_cam)} at t={mid.timestamp:.2f}s</h2>",
        "<p>Points are coloured by depth (red near, blue far); yellow wireframes are the actor boxes.</p>",
        f'<img src="{rel}/overlay.jpg" alt="overlay">',
        extra_html,
    ]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}")
    doc = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
          f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    if files.exists():
        shutil.rmtree(files)
    os.replace(tmp_files, files)
    tmp_html = out_html.with_name(f".{out_html.name}.tmp-{os.getpid()}")
    tmp_html.write_text(doc, encoding="utf-8")
    os.replace(tmp_html, out_html)
    return out_html
