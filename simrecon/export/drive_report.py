"""The drive suite's HTML report: one row per case (candidate and baseline metrics side by side, what regressed)
and, per case, a bird's-eye plot of both drives (``sim.plot``)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..sim.plot import birdseye_svg

if TYPE_CHECKING:
    from .drive_suite import CaseResult, SuiteResult

COLORS = {"candidate": "#cf222e", "baseline": "#0969da"}
SHOWN = (("score", ".3f"), ("route_completion", ".3f"), ("min_ttc", ".2f"), ("collision", ""), ("off_road", ""),
         ("max_long_accel", ".2f"), ("max_jerk", ".2f"))


def _cell(metrics, key: str, spec: str) -> str:
    if metrics is None:
        return "-"
    v = getattr(metrics, key)
    if v is None:
        return "none"
    return format(v, spec) if spec and not isinstance(v, bool) else str(v).lower()


def _row(c: "CaseResult", has_base: bool) -> str:
    e = html.escape
    status = "PASS" if c.passed else ("ERROR" if c.error else "REGRESSION")
    color = "#1a7f37" if c.passed else "#cf222e"
    worse = {r.metric for r in c.regressions}
    cells = []
    for key, spec in (SHOWN if c.kind == "drive" else ()):
        style = " style='background:#ffebe9'" if key in worse else ""
        text = _cell(c.candidate, key, spec) + (f" / {_cell(c.baseline, key, spec)}" if has_base else "")
        cells.append(f"<td{style}>{e(text)}</td>")
    if c.kind == "perception":  # the detector's COCO AP in the details; the drive columns stay empty
        cells = ["<td>-</td>"] * len(SHOWN)
        ap = f"mAP {_cell(c.candidate, 'map', '.3f')}" + (f" / {_cell(c.baseline, 'map', '.3f')}" if has_base else "")
        ap50 = f"AP50 {_cell(c.candidate, 'map50', '.3f')}" + (
            f" / {_cell(c.baseline, 'map50', '.3f')}" if has_base else "")
        variation = f"perception: {ap}, {ap50}"
    why = c.error or "; ".join(r.message for r in c.regressions)
    if c.kind == "drive":
        variation = ", ".join(f"{k}={json.dumps(v)}" for k, v in c.values.items())
    return (f"<tr><td><a href='#{e(c.name)}'>{e(c.name)}</a></td><td>{e(variation)}</td>"
            f"<td style='color:{color};font-weight:bold'>{status}</td>{''.join(cells)}<td>{e(why)}</td></tr>")


def _plot(c: "CaseResult", root: Path) -> str:
    drives = []
    for who, rel in c.runs.items():
        traj = root / rel / "trajectory.json"
        if traj.is_file():
            drives.append((who, COLORS.get(who, "#000"), json.loads(traj.read_text())))
    if not drives:
        return ""
    links = " ".join(f"<a href='{html.escape(rel)}/metrics.json'>{html.escape(who)} run</a>"
                     for who, rel in c.runs.items())
    return f"<h2 id='{html.escape(c.name)}'>{html.escape(c.name)}</h2><p>{links}</p>{birdseye_svg(drives)}"


def write_html(path: Path, result: "SuiteResult", root: Path) -> None:
    """``path``: the report of ``result``, whose run folders are under ``root``."""
    e = html.escape
    has_base = result.baseline is not None or result.baseline_detector is not None
    pair = " (candidate / baseline)" if has_base else ""
    head = "".join(f"<th>{k}{pair}</th>" for k, _ in SHOWN)
    verdict = "PASSED" if result.passed else "FAILED"
    who = ", ".join(f"{label} <code>{e(spec)}</code>" for label, spec in (
        ("candidate", result.candidate), ("baseline", result.baseline), ("candidate detector", result.detector),
        ("baseline detector", result.baseline_detector)) if spec) + ("" if has_base else "; no baseline (gates only)")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>simrecon drive-suite {e(result.suite)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px}}</style></head><body>
<h1>simrecon drive-suite: {e(result.suite)} &mdash; {verdict}</h1>
<p>{who}. Red cells: worse than allowed. Plots: world x to the right, y up; the ego's path and final box, actors
in grey, a cross where the ego touched an actor.</p>
<table><tr><th>case</th><th>variation</th><th>result</th>{head}<th>details</th></tr>
{''.join(_row(c, has_base) for c in result.cases)}</table>
{''.join(_plot(c, root) for c in result.cases)}
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
