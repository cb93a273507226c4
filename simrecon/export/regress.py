"""Regression runner: render a suite of scenarios, compare with golden renders, report, gate CI.

``regress(suite.yaml)`` renders every scenario of the suite (``simrecon compose`` layout), compares each
frame with the golden renders (PSNR and SSIM of RGB, depth relative error, number of visible boxes),
writes ``junit.xml``, ``report.html`` (side-by-side golden | render | difference images of the worst
frames) and ``summary.json`` into the output folder, and reports pass/fail per scenario.
``update_golden=True`` re-renders the golden set instead of comparing.

Scoring a reconstruction against ground truth is the same command: a suite whose ``golden_scene`` is the
synthetic street's log (exact ground truth, rendered on demand) and whose ``scene`` is the neural scene.
"""

from __future__ import annotations

import html
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..scene.metrics import depth_error, psnr, ssim
from ..compose.scenario import ScenarioError, _fmt_loc, load_scenario, parse_scenario, read_mapping, validated
from ..compose.scenes import open_scene
from ..data.safe_paths import name_problem
from ..data.scene_api import RenderableScene
from .exporter import compose
from .junit import JUnitCase, write_junit

Progress = Callable[[str, int, int], None]  # (scenario name, frames done, total)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    psnr_min: Optional[float] = 40.0  # dB, mean over the scenario's frames
    ssim_min: Optional[float] = 0.98  # mean over frames
    psnr_frame_min: Optional[float] = None  # dB, every frame
    box_count_tolerance: Optional[int] = Field(0, ge=0)  # |visible boxes - golden visible boxes| per frame
    depth_tolerance: Optional[float] = Field(0.01, ge=0)  # mean absolute relative depth error, mean over frames
    depth_mismatch_tolerance: Optional[float] = Field(0.01, ge=0)  # fraction of pixels sky in one, not the other


class SuiteEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    scenario: str
    name: Optional[str] = None
    thresholds: dict = {}


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: Optional[str] = None
    golden: Optional[str] = None
    scene: Optional[str] = None
    golden_scene: Optional[str] = None
    thresholds: dict = {}
    max_images: int = Field(4, ge=0)
    scenarios: list[SuiteEntry] = Field(min_length=1)


@dataclass
class FrameScore:
    camera: str
    index: int
    timestamp: float
    psnr: float
    ssim: float
    depth_rel: Optional[float]
    depth_mismatch: Optional[float]
    boxes: int
    golden_boxes: int


@dataclass
class CaseResult:
    name: str
    scenario: str
    passed: bool
    seconds: float
    failures: list[str] = field(default_factory=list)
    error: Optional[str] = None
    frames: list[FrameScore] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    images: list[str] = field(default_factory=list)
    updated: bool = False


@dataclass
class RegressResult:
    suite: str
    passed: bool
    cases: list[CaseResult]
    out: Path
    junit: Path
    html: Path


def _load_suite(path: Path) -> Suite:
    suite = validated(path, Suite, read_mapping(path, "suite file", "a mapping with a scenarios list"))
    names = set()
    for i, e in enumerate(suite.scenarios):
        for where, th in ((f"scenarios[{i}].thresholds", e.thresholds), ("thresholds", suite.thresholds)):
            try:
                Thresholds.model_validate(th)
            except ValidationError as exc:
                err = exc.errors()[0]
                msg = "unknown threshold" if err["type"] == "extra_forbidden" else err["msg"]
                raise ScenarioError(path, f"{where}.{_fmt_loc(tuple(err['loc']))}", msg) from None
        name = e.name or Path(e.scenario).stem
        problem = name_problem(name)  # the name becomes a folder of golden renders and report images
        if problem:
            raise ScenarioError(path, f"scenarios[{i}].name", problem)
        if name in names:
            raise ScenarioError(path, f"scenarios[{i}].name", f"two scenarios named {name!r}: give a name")
        names.add(name)
    return suite


def _rel(base: Path, p: Optional[str]) -> Optional[Path]:
    if p is None:
        return None
    q = Path(p)
    return q if q.is_absolute() else (base / q).resolve()


def _read_frames(root: Path) -> dict[tuple[str, int], dict]:
    comp = json.loads((root / "composition.json").read_text())
    out = {}
    for rel in comp["frames"]:
        rec = json.loads((root / rel).read_text())
        out[(rec["camera"], rec["index"])] = rec
    return out


def _side_by_side(golden: np.ndarray, render: np.ndarray) -> np.ndarray:
    diff = np.abs(golden.astype(np.int16) - render.astype(np.int16)).max(axis=2)
    diff = np.clip(diff.astype(np.int32) * 4, 0, 255).astype(np.uint8)
    heat = np.stack([diff, (diff // 3).astype(np.uint8), np.zeros_like(diff)], axis=2)
    gap = np.full((golden.shape[0], 4, 3), 255, np.uint8)
    return np.concatenate([golden, gap, render, gap, heat], axis=1)


def _compare(name: str, golden: Path, render: Path, th: Thresholds, img_dir: Path, max_images: int,
             case: CaseResult) -> None:
    g_frames, r_frames = _read_frames(golden), _read_frames(render)
    missing = sorted(set(g_frames) - set(r_frames))
    extra = sorted(set(r_frames) - set(g_frames))
    if missing or extra:
        case.failures.append(f"frames differ from the golden set: {len(missing)} missing, {len(extra)} extra "
                             "(did the scenario's cameras or times change? re-run with --update-golden)")
        return
    worst: list[tuple[float, tuple[str, int]]] = []
    for key in sorted(g_frames, key=lambda k: (g_frames[k]["timestamp"], k[0])):
        g, r = g_frames[key], r_frames[key]
        gf, rf = g["files"], r["files"]
        if "rgb" not in gf or "rgb" not in rf:
            case.failures.append("no rgb output to compare (add rgb to the scenario's outputs)")
            return
        ga = np.asarray(Image.open(golden / gf["rgb"]).convert("RGB"))
        ra = np.asarray(Image.open(render / rf["rgb"]).convert("RGB"))
        if ga.shape != ra.shape:
            case.failures.append(f"{key[0]} frame {key[1]}: image size {ra.shape[1]}x{ra.shape[0]} differs from "
                                 f"the golden {ga.shape[1]}x{ga.shape[0]}")
            return
        p, s = psnr(ra, ga), ssim(ra, ga)
        d_rel = d_mis = None
        if "depth" in gf and "depth" in rf:
            d_rel, d_mis = depth_error(np.load(render / rf["depth"]), np.load(golden / gf["depth"]))
        nb = sum(1 for o in r["objects"] if o["visible_pixels"])
        ngb = sum(1 for o in g["objects"] if o["visible_pixels"])
        case.frames.append(FrameScore(key[0], key[1], g["timestamp"], p, s, d_rel, d_mis, nb, ngb))
        worst.append((p, key))
    fs = case.frames
    mean_psnr = float(np.mean([f.psnr for f in fs]))
    mean_ssim = float(np.mean([f.ssim for f in fs]))
    worst_f = min(fs, key=lambda f: f.psnr)
    depth_rel = [f.depth_rel for f in fs if f.depth_rel is not None]
    depth_mis = [f.depth_mismatch for f in fs if f.depth_mismatch is not None]
    box_diff = max(abs(f.boxes - f.golden_boxes) for f in fs)
    case.summary = {"frames": len(fs), "psnr_mean": mean_psnr, "psnr_min": worst_f.psnr, "ssim_mean": mean_ssim,
                    "depth_rel_mean": float(np.mean(depth_rel)) if depth_rel else None,
                    "depth_mismatch_mean": float(np.mean(depth_mis)) if depth_mis else None,
                    "box_count_diff_max": int(box_diff)}
    where = f"worst {worst_f.camera} t={worst_f.timestamp:.2f}s {worst_f.psnr:.2f} dB"
    if th.psnr_min is not None and mean_psnr < th.psnr_min:
        case.failures.append(f"PSNR {mean_psnr:.2f} dB < {th.psnr_min:.2f} dB (mean over {len(fs)} frames; {where})")
    if th.psnr_frame_min is not None and worst_f.psnr < th.psnr_frame_min:
        case.failures.append(f"PSNR of a frame {worst_f.psnr:.2f} dB < {th.psnr_frame_min:.2f} dB ({where})")
    if th.ssim_min is not None and mean_ssim < th.ssim_min:
        case.failures.append(f"SSIM {mean_ssim:.4f} < {th.ssim_min:.4f} (mean over {len(fs)} frames)")
    if th.box_count_tolerance is not None and box_diff > th.box_count_tolerance:
        f = max(fs, key=lambda f: abs(f.boxes - f.golden_boxes))
        case.failures.append(f"visible boxes {f.boxes} vs golden {f.golden_boxes} ({f.camera} t={f.timestamp:.2f}s;"
                             f" tolerance {th.box_count_tolerance})")
    if th.depth_tolerance is not None and depth_rel and case.summary["depth_rel_mean"] > th.depth_tolerance:
        case.failures.append(f"depth error {case.summary['depth_rel_mean']:.4f} > {th.depth_tolerance} "
                             "(mean absolute relative error)")
    if th.depth_mismatch_tolerance is not None and depth_mis and \
            case.summary["depth_mismatch_mean"] > th.depth_mismatch_tolerance:
        case.failures.append(f"sky/non-sky disagreement on {100 * case.summary['depth_mismatch_mean']:.2f}% of "
                             f"pixels > {100 * th.depth_mismatch_tolerance:.2f}%")
    worst.sort(key=lambda x: (x[0], x[1]))
    for _, key in worst[:max_images]:
        g, r = g_frames[key], r_frames[key]
        ga = np.asarray(Image.open(golden / g["files"]["rgb"]).convert("RGB"))
        ra = np.asarray(Image.open(render / r["files"]["rgb"]).convert("RGB"))
        rel = f"images/{name}/{key[0]}_{key[1]:06d}.png"
        (img_dir / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(_side_by_side(ga, ra)).save(img_dir.parent / rel)
        case.images.append(rel)


def regress(suite_path: str | Path, update_golden: bool = False, out: str | Path | None = None,
            progress: Progress | None = None,
            scene_wrapper: Callable[[RenderableScene], RenderableScene] | None = None,
            renderer: str = "fast") -> RegressResult:
    """Run a suite; see the module docstring. ``scene_wrapper`` wraps the scene of the renders (tests);
    ``renderer`` is how reconstructed scenes render (``open_scene``)."""
    suite_path = Path(suite_path)
    suite = _load_suite(suite_path)
    base = suite_path.parent
    suite_name = suite.name or suite_path.stem
    golden_root = _rel(base, suite.golden) or (base / f"{suite_path.stem}-golden")
    out = Path(out) if out is not None else Path("regress-out") / suite_path.stem
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "summary.json").is_file()):
            raise FileExistsError(f"{out}: exists and is not a regress report folder; refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    img_dir = out / "images"
    scene_override = _rel(base, suite.scene)
    golden_scene = _rel(base, suite.golden_scene)
    scenes: dict[Path, RenderableScene] = {}

    def scene_at(p: Path, where: str, file: Path = suite_path) -> RenderableScene:
        if p not in scenes:
            try:
                scenes[p] = open_scene(p, renderer)
            except (ValueError, FileNotFoundError) as exc:
                raise ScenarioError(file, where, str(exc)) from None
        return scenes[p]

    cases = []
    for entry in suite.scenarios:
        name = entry.name or Path(entry.scenario).stem
        sc_path = _rel(base, entry.scenario)
        th = Thresholds.model_validate({**suite.thresholds, **entry.thresholds})
        case = CaseResult(name, str(sc_path), False, 0.0)
        t_start = time.perf_counter()
        tick = (lambda d, n, _l, _name=name: progress(_name, d, n)) if progress else None
        try:
            own = parse_scenario(sc_path).scene
            own_path = Path(own) if Path(own).is_absolute() else (sc_path.parent / own).resolve()
            render_scene = scene_at(scene_override, "scene") if scene_override else scene_at(own_path, "scene", sc_path)
            plan = load_scenario(sc_path, scene=render_scene)
            if scene_override:
                plan.scene_path = scene_override
            golden_dir = golden_root / name
            if update_golden or (golden_scene is not None and not (golden_dir / "manifest.json").is_file()):
                gplan = plan
                if golden_scene is not None:
                    gplan = load_scenario(sc_path, scene=scene_at(golden_scene, "golden_scene"))
                    gplan.scene_path = golden_scene
                golden_dir.parent.mkdir(parents=True, exist_ok=True)
                compose(gplan, golden_dir, force=True, progress=tick)
                case.updated = True
            if not (golden_dir / "manifest.json").is_file():
                raise FileNotFoundError(f"no golden renders in {golden_dir}: run with --update-golden")
            if update_golden and golden_scene is None:
                render_dir = golden_dir  # the renders are the new golden set: compare it with itself
            else:
                render_dir = out / "renders" / name
                wrapped = scene_wrapper(plan.scene) if scene_wrapper else None
                compose(plan, render_dir, force=True, progress=tick, scene=wrapped)
            _compare(name, golden_dir, render_dir, th, img_dir, suite.max_images, case)
        except (ScenarioError, FileNotFoundError, FileExistsError, ValueError) as exc:
            case.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        case.seconds = time.perf_counter() - t_start
        case.passed = case.error is None and not case.failures
        cases.append(case)
    result = RegressResult(suite_name, all(c.passed for c in cases), cases, out, out / "junit.xml",
                           out / "report.html")
    _write_junit(result)
    _write_html(result, golden_root)
    (out / "summary.json").write_text(json.dumps(_summary(result), indent=1, allow_nan=False) + "\n")
    return result


def _summary(result: RegressResult) -> dict:
    def clean(v):
        return None if isinstance(v, float) and not math.isfinite(v) else v

    return {"suite": result.suite, "passed": result.passed,
            "cases": [{"name": c.name, "scenario": c.scenario, "passed": c.passed, "seconds": round(c.seconds, 3),
                       "error": c.error, "failures": c.failures, "updated_golden": c.updated,
                       "summary": {k: clean(v) for k, v in c.summary.items()},
                       "frames": [{k: clean(v) for k, v in f.__dict__.items()} for f in c.frames]}
                      for c in result.cases]}


def _write_junit(result: RegressResult) -> None:
    write_junit(result.junit, "simrecon regress", result.suite,
                [JUnitCase(c.name, c.seconds, c.failures, c.error, c.summary) for c in result.cases])


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _write_html(result: RegressResult, golden_root: Path) -> None:
    e = html.escape
    rows = []
    for c in result.cases:
        s = c.summary
        status = "PASS" if c.passed else ("ERROR" if c.error else "FAIL")
        color = "#1a7f37" if c.passed else "#cf222e"
        why = c.error or "; ".join(c.failures) or ("golden updated" if c.updated else "")
        rows.append(f"<tr><td>{e(c.name)}</td><td style='color:{color};font-weight:bold'>{status}</td>"
                    f"<td>{s.get('frames', '-')}</td><td>{_fmt(s.get('psnr_mean'), '.2f')}</td>"
                    f"<td>{_fmt(s.get('psnr_min'), '.2f')}</td><td>{_fmt(s.get('ssim_mean'), '.4f')}</td>"
                    f"<td>{_fmt(s.get('depth_rel_mean'), '.4f')}</td><td>{s.get('box_count_diff_max', '-')}</td>"
                    f"<td>{c.seconds:.1f}</td><td>{e(why)}</td></tr>")
    sections = []
    for c in result.cases:
        if not c.images:
            continue
        imgs = "".join(f"<figure><img src='{e(p)}'><figcaption>{e(p)}</figcaption></figure>" for p in c.images)
        sections.append(f"<h2>{e(c.name)}</h2><p>golden | render | difference (x4)</p>{imgs}")
    verdict = "PASSED" if result.passed else "FAILED"
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>simrecon regress {e(result.suite)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:4px 8px}}img{{max-width:100%;image-rendering:pixelated}}figure{{margin:1em 0}}</style></head><body>
<h1>simrecon regress: {e(result.suite)} &mdash; {verdict}</h1>
<p>Golden renders: <code>{e(str(golden_root))}</code></p>
<table><tr><th>scenario</th><th>result</th><th>frames</th><th>PSNR mean (dB)</th><th>PSNR min</th><th>SSIM</th>
<th>depth rel. err.</th><th>box count diff</th><th>seconds</th><th>details</th></tr>
{''.join(rows)}</table>
{''.join(sections)}
</body></html>
"""
    result.html.write_text(doc, encoding="utf-8")
