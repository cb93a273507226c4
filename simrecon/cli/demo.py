"""``simrecon demo``: the main job on the bundled example (a synthetic street), end to end.

synth -> validate -> reconstruct -> eval (and score against the generator's ground truth) -> render a
lane-shifted video -> closed-loop drive -> HTML report. Each stage is reused when its inputs are unchanged.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from rich.console import Console

from ..data import validate_log
from ..data.io import atomic_write_text
from ..report import write_report
from ..synth import SynthConfig
from .progress import bar, run_synth
from .tables import print_log_tables

LANE_SHIFT_M = 2.0  # the generator has ground truth for +2 m


def _reusable(log_dir: Path, cfg: SynthConfig) -> bool:
    """True when ``log_dir`` was generated with exactly ``cfg`` (so the demo can skip regenerating)."""
    try:
        data = json.loads((log_dir / "transforms.json").read_text())
    except (OSError, ValueError):
        return False
    return data.get("synth_config") == asdict(cfg) and (log_dir.parent / "gt" / "actors.json").is_file()


def _scene_reusable(scene_dir: Path, log_dir: Path, preset_name: str, minutes: float | None) -> bool:
    try:
        info = json.loads((scene_dir / "scene.json").read_text())
        stamp = json.loads((scene_dir / "demo.json").read_text())
    except (OSError, ValueError):
        return False
    source = info.get("source_log")  # relative to the scene folder (absolute in older scenes)
    return (info.get("status") == "complete" and isinstance(source, str)
            and (scene_dir / source).resolve() == log_dir.resolve()
            and stamp == {"preset": preset_name, "minutes": minutes}
            and (scene_dir / "model.pt").is_file())


def run_demo(out_dir: Path, seconds: float, out: Console, err: Console, preset_name: str = "fast",
             minutes: float | None = None, reconstruct: bool = True) -> Path:
    """Run the demo into ``out_dir``; returns the report path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = 7 if reconstruct else 4
    cfg = SynthConfig(seconds=seconds)
    synth_dir = out_dir / "synthetic"
    log_dir = synth_dir / "log"
    if _reusable(log_dir, cfg):
        out.print(f"1/{stages} reusing synthetic street in {synth_dir} (same settings)", highlight=False)
    else:
        out.print(f"1/{stages} generating synthetic street into {synth_dir}", highlight=False)
        run_synth(synth_dir, cfg, force=True, console=err)
    out.print(f"2/{stages} validating", highlight=False)
    log, problems = validate_log(log_dir)
    if problems:  # the generator's own output must always validate: this is a bug, not user error
        raise RuntimeError("generated log does not validate:\n" + "\n".join(map(str, problems)))
    print_log_tables(out, log)
    extra = (f"<h2>Ground truth</h2><p>Novel-view ground truth in <code>{synth_dir / 'gt'}</code>: front camera "
             "with the ego shifted +1 m / -1 m / +2 m left, and the log without car_0.</p>")
    if reconstruct:
        extra += _reconstruct_stage(out_dir, log_dir, synth_dir / "gt", preset_name, minutes, out, err, stages)
        from .compose_cmd import run_demo_scenarios

        out.print(f"5/{stages} composing scenarios (car_0 removed, ego +1 m) and exporting a COCO sample",
                  highlight=False)
        extra += run_demo_scenarios(out_dir, log_dir, err, scene_dir=out_dir / "scene")
    from .drive_cmd import run_demo_drive

    driven = out_dir / "scene" if reconstruct else log_dir
    out.print(f"{stages - 1}/{stages} driving in closed loop (lane-follow behind a slower car) on "
              f"{'the reconstruction' if reconstruct else 'the synthetic street'}", highlight=False)
    extra += run_demo_drive(out_dir, driven, err)
    out.print(f"{stages}/{stages} writing report", highlight=False)
    return write_report(log, out_dir / "report.html", title="simrecon demo: synthetic street", extra_html=extra)


def _reconstruct_stage(out_dir: Path, log_dir: Path, gt_dir: Path, preset_name: str, minutes: float | None,
                       out: Console, err: Console, stages: int) -> str:
    from ..scene import load_scene
    from ..scene.evaluate import evaluate
    from ..scene.render_frames import render_frames, trajectory
    from ..scene.report import scene_sections
    from ..scene.score import score_gt_set
    from .scene_cmds import reconstruct_command

    scene_dir = out_dir / "scene"
    if _scene_reusable(scene_dir, log_dir, preset_name, minutes):
        out.print(f"3/{stages} reusing reconstruction in {scene_dir} (same log and settings)", highlight=False)
    else:
        budget = f"{minutes} min" if minutes is not None else f"the '{preset_name}' preset's budget"
        out.print(f"3/{stages} reconstructing ({budget}) into {scene_dir}", highlight=False)
        shutil.rmtree(scene_dir, ignore_errors=True)
        reconstruct_command(log_dir, scene_dir, preset_name, None, minutes, None, "auto", False, err)
        atomic_write_text(scene_dir / "demo.json", json.dumps({"preset": preset_name, "minutes": minutes}))
    out.print(f"4/{stages} evaluating and rendering a drive shifted {LANE_SHIFT_M:+.0f} m to the left",
              highlight=False)
    scene = load_scene(scene_dir)
    with bar(err) as progress:
        task = progress.add_task("", total=max(len(scene.info.holdout), 1), what="eval")
        evaluation = evaluate(scene, on_frame=lambda i, n: progress.update(task, completed=i))
    atomic_write_text(scene_dir / "eval.json", json.dumps(evaluation, indent=1))
    gt_scores = [score_gt_set(scene, gt_dir / name, max_frames=4) for name in ("ego_shift_left_2m", "actor_removed")]
    for s in gt_scores:
        sky = f", sky covered {100 * s['sky_opaque']:.0f} %" if s["sky_opaque"] is not None else ""
        out.print(f"  {s['set']}: PSNR {s['psnr']:.2f} dB vs ground truth{sky}", highlight=False)
    if "psnr" in evaluation:
        out.print(f"  held-out PSNR {evaluation['psnr']:.2f} dB, SSIM {evaluation['ssim']:.4f}", highlight=False)
    video_dir = out_dir / "lane_shift"
    shutil.rmtree(video_dir, ignore_errors=True)
    frames = trajectory(scene, None, LANE_SHIFT_M)
    with bar(err) as progress:
        task = progress.add_task("", total=len(frames), what="render")
        render_frames(scene, frames, video_dir, ("rgb",), video=True,
                      on_frame=lambda i, n: progress.update(task, completed=i))
    files = out_dir / "report_scene_files"
    return scene_sections(scene, files, files.name, evaluation, Path(video_dir.name) / "video.mp4", gt_scores)
