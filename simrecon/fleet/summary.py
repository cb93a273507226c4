"""The fleet's summary: one row per log (its status, figures, time per stage, first error) as a markdown table
(``OUT/summary.md``) and an HTML page with thumbnails (``OUT/summary.html``) that a team can publish from CI."""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..data.io import atomic_write_text
from .state import LogRecord, Manifest

FIGURE_COLUMNS = (  # (header, StageFigures field, format)
    ("PSNR dB", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.3f}"), ("lidar err m", "lidar_error_m", "{:.3f}"),
    ("steps", "steps", "{}"), ("frames", "frames", "{}"), ("rendered", "rendered", "{}"),
    ("regress pass/fail", None, ""),
    ("drive score", "drive_score", "{:.3f}"), ("collisions", "collisions", "{}"),
    ("lidar range m", "lidar_range_m", "{:.3f}"), ("drop acc", "lidar_drop_accuracy", "{:.3f}"),
    ("meshes", "meshes", "{}"), ("mesh faces", "mesh_faces", "{}"),
)


@dataclass(frozen=True)
class SummaryRow:
    log: str
    status: str  # done, failed, running or pending
    stages: str  # each stage with its status and seconds, e.g. "validate 0.4s, reconstruct 12.1s"
    figures: tuple[str, ...]  # one cell per FIGURE_COLUMNS
    error: str  # the first failure: "stage: its one-line error"
    seconds: float  # the stages' times added up (s)
    thumbnail: Optional[str]  # an image relative to OUT


def _cell(log: LogRecord, field: Optional[str], fmt: str) -> str:
    fig = log.figures()
    if field is None:
        return "" if fig.regress_passed is None else f"{fig.regress_passed}/{fig.regress_failed}"
    value = getattr(fig, field)
    return "" if value is None else fmt.format(value)


def _stage_cell(log: LogRecord) -> str:
    parts = []
    for s in log.stages:
        mark = {"done": "", "failed": " FAILED", "blocked": " blocked", "running": " running",
                "pending": " pending"}[s.status]
        timing = f" {s.seconds:.1f}s" if s.status in ("done", "failed") else ""
        skipped = f" skipped: {s.figures.skipped}" if s.status == "done" and s.figures.skipped else ""
        parts.append(f"{s.name}{timing}{mark}{skipped}{' (reused)' if s.reused else ''}")
    return ", ".join(parts)


def rows(manifest: Manifest) -> list[SummaryRow]:
    out = []
    for log in manifest.logs:
        failed = next((s for s in log.stages if s.status == "failed"), None)
        out.append(SummaryRow(log.name, log.status, _stage_cell(log),
                              tuple(_cell(log, f, fmt) for _, f, fmt in FIGURE_COLUMNS),
                              f"{failed.name}: {failed.error}" if failed else "",
                              round(sum(s.seconds for s in log.stages), 2), log.figures().thumbnail))
    return out


def headline(manifest: Manifest) -> str:
    n = len(manifest.logs)
    done = sum(1 for log in manifest.logs if log.status == "done")
    failed = sum(1 for log in manifest.logs if log.status == "failed")
    return f"fleet {manifest.name}: {done} of {n} log(s) done, {failed} failed ({manifest.executor})"


def markdown(manifest: Manifest) -> str:
    head = ["log", "status", *(c for c, _, _ in FIGURE_COLUMNS), "stages", "error"]
    lines = [f"# {headline(manifest)}", "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows(manifest):
        cells = [r.log, r.status, *r.figures, r.stages, r.error.replace("|", "\\|")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def page(manifest: Manifest) -> str:
    head = ["log", "status", *(c for c, _, _ in FIGURE_COLUMNS), "stages", "error", "thumbnail"]
    body = []
    for r in rows(manifest):
        thumb = f"<img src='{html.escape(r.thumbnail)}' height='72'>" if r.thumbnail else ""
        colour = {"done": "#dfd", "failed": "#fdd"}.get(r.status, "#eee")
        cells = [html.escape(c) for c in (r.log, r.status, *r.figures, r.stages, r.error)] + [thumb]
        body.append(f"<tr style='background:{colour}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<!doctype html><meta charset='utf-8'><title>simrecon fleet</title>"
            "<style>body{font-family:sans-serif}td,th{padding:3px 8px;border-bottom:1px solid #ccc;"
            "text-align:left;vertical-align:top}</style>"
            f"<h1>{html.escape(headline(manifest))}</h1><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(body) + "</table>")


def write_summary(out: Path, manifest: Manifest) -> None:
    atomic_write_text(Path(out) / "summary.md", markdown(manifest))
    atomic_write_text(Path(out) / "summary.html", page(manifest))
