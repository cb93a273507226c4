"""CLI glue for reconstruct / eval / render: progress bars and tables around the library calls."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..config_io import set_field
from ..data.io import atomic_write_text
from .options import check_number
from .progress import bar


def reconstruct_command(log: Path | None, out: Path, preset_name: str, steps: int | None, minutes: float | None,
                        holdout: str | None, device: str, resume: bool, console: Console,
                        lidar_prior_steps: int | None = None, free_columns: float | None = None,
                        frame_exposure: bool | None = None, settings: list[str] | None = None) -> Path:
    """``simrecon reconstruct``: the preset, the options and then ``settings`` (``--set KEY=VALUE``, dotted names,
    old flat ones too) on top; with ``resume`` they override what scene.json records (``config.FIXED_ON_RESUME``
    refused)."""
    from ..train import TrainingInterrupted, preset, reconstruct  # noqa: F401  (re-raised to main)
    from ..train.config import parse_settings

    if not resume and log is None:
        raise ValueError("LOG is required (or --resume with -o SCENE)")
    if resume and not (out / "scene.json").is_file():
        raise ValueError(f"--resume: {out} is not a scene folder (no scene.json)")
    cfg = preset(preset_name)
    overrides: dict = {}
    if steps is not None:
        if steps < 1:
            raise ValueError(f"--steps must be >= 1, got {steps}")
        overrides["budget.steps"] = steps
    if minutes is not None:
        overrides["budget.minutes"] = check_number("--minutes", minutes, "> 0")
    if holdout is not None:
        if resume:
            raise ValueError("--holdout cannot change when resuming: the held-out frames are fixed at the start")
        cfg.holdout = holdout
    if device != "auto":
        overrides["device"] = device
    if lidar_prior_steps is not None:
        if resume:
            raise ValueError("--lidar-prior-steps: the prior runs before the first step, not when resuming")
        if lidar_prior_steps < 0:
            raise ValueError(f"--lidar-prior-steps must be >= 0, got {lidar_prior_steps}")
        cfg.priors.lidar_prior.steps = lidar_prior_steps
    if free_columns is not None:
        if resume:
            raise ValueError("--free-columns cannot change when resuming: the run keeps the weight it started with")
        cfg.priors.free_columns.weight = check_number("--free-columns", free_columns, ">= 0")
    if frame_exposure is not None:
        if resume:
            raise ValueError("--frame-exposure cannot change when resuming: the model keeps the parts it started with")
        cfg.model.frame_exposure = frame_exposure
    overrides.update(parse_settings(cfg, settings or [], resume=resume))  # typed, dotted; applied to cfg too
    for key, value in overrides.items():
        set_field(cfg, key, value, "--set")
    columns = [TextColumn("[bold]train"), BarColumn(), TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn()]
    progress = Progress(*columns, console=console, transient=False)
    task = progress.add_task("", total=1.0, info="loading log")
    stepped = []

    def on_log(rec: dict) -> None:
        if "stage" in rec:  # before the first step (the lidar prior)
            progress.update(task, info=rec["stage"])
            return
        stepped.append(True)
        frac = max(rec["step"] / rec["budget_steps"], rec["time"] / rec["budget_s"])
        progress.update(task, completed=min(frac, 1.0),
                        info=f"step {rec['step']}  loss {rec['loss']:.4f}  PSNR {rec['psnr']:.2f}  "
                             f"{rec['rays_per_s'] / 1000:.1f}k rays/s")

    # with --resume, LOG is where the scene's log is now (absolute: the library takes "." for no log)
    given = log.absolute() if resume and log is not None else log
    progress.start()
    try:
        result = reconstruct(given, out, cfg, resume=resume, on_log=on_log,
                             overrides=overrides)
    except BaseException:
        if not stepped:  # a bad scene, log or disk before training: the error line alone says it, no bar
            progress.live.transient = True
            progress.live.stop()
            raise
        progress.stop()
        raise
    progress.update(task, completed=1.0)
    progress.stop()
    console.print(f"scene written to {result.scene_dir} ({result.step} steps, {result.elapsed / 60:.1f} min)",
                  highlight=False)
    return result.scene_dir


def eval_command(scene_dir: Path, device: str, out: Console, err: Console, log: Path | None = None,
                 renderer: str = "fast") -> dict:
    from ..scene import load_scene
    from ..scene.evaluate import evaluate

    scene = load_scene(scene_dir, device=device, log=log, renderer=renderer)
    with bar(err) as progress:
        task = progress.add_task("", total=max(len(scene.info.holdout), 1), what="eval")
        result = evaluate(scene, on_frame=lambda i, n: progress.update(task, completed=i))
    table = Table("frame", "camera", "PSNR", "SSIM", title=f"Held-out frames of {scene_dir}")
    for f in result["frames"]:
        table.add_row(f["file_path"], f["camera"], f"{f['psnr']:.2f}", f"{f['ssim']:.4f}")
    out.print(table)
    if result["num_frames"]:
        out.print(f"mean PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f}"
                  + (f", actor pixels PSNR {result['psnr_actor_pixels']:.2f} dB" if "psnr_actor_pixels" in result
                     else ""), highlight=False)
    else:
        spec = (scene.info.config or {}).get("holdout", "none")
        why = ("trained with --holdout none" if spec in ("", "none")
               else f"--holdout {spec} held out no frame of its log")
        out.print(f"no held-out frames ({why})", highlight=False)
    if "lidar_depth" in result:
        d = result["lidar_depth"]
        out.print(f"lidar depth error: mean {d['mean_abs_m']:.3f} m, median {d['median_abs_m']:.3f} m, "
                  f"{100 * d['within_10cm']:.1f}% within 10 cm; median distance's median error "
                  f"{d['median_range_median_abs_m']:.3f} m{_intensity(d['intensity_rmse'])} ({d['points']} returns"
                  f"{', held-out sweeps' if d['held_out_sweeps'] else ', training sweeps'})", highlight=False)
    if "lidar_sweeps" in result:
        out.print(sweep_line(result["lidar_sweeps"]), highlight=False)
    try:
        atomic_write_text(scene_dir / "eval.json", json.dumps(result, indent=1))
    except OSError as exc:
        from ..scene.checkpoint import write_failed

        raise write_failed(scene_dir / "eval.json", exc) from exc
    out.print(f"wrote {scene_dir / 'eval.json'}", highlight=False)
    return result


def render_command(scene_dir: Path, poses: Path | None, out_dir: Path, outputs: str, trajectory_flag: bool,
                   camera: str | None, shift_left: float, device: str, force: bool, console: Console,
                   log: Path | None = None, renderer: str = "fast") -> Path:
    from ..data.outdir import check_target
    from ..scene import load_scene
    from ..scene.render_frames import read_poses, render_frames, trajectory

    if (poses is None) == (not trajectory_flag):
        raise ValueError("give exactly one of --poses FRAMES.json or --trajectory")
    check_target(out_dir, force)  # before loading the scene: --force replaces only what simrecon wrote
    kinds = tuple(k.strip() for k in outputs.split(",") if k.strip())
    frames = read_poses(poses) if poses is not None else None
    scene = load_scene(scene_dir, device=device, log=log, renderer=renderer)
    if frames is None:
        frames = trajectory(scene, camera, shift_left)
    with bar(console) as progress:
        task = progress.add_task("", total=len(frames), what="render")
        render_frames(scene, frames, out_dir, kinds, video=trajectory_flag, force=force,
                      on_frame=lambda i, n: progress.update(task, completed=i))
    return out_dir


def sweep_line(m: dict) -> str:
    """One line of ``evaluate``'s whole-sweep lidar metrics."""
    fmt = lambda v, spec, unit="": "-" if v is None else f"{v:{spec}}{unit}"  # noqa: E731
    return (f"lidar sweeps ({m['sweeps']}, {'held out' if m['held_out_sweeps'] else 'training'}): range error "
            f"median {fmt(m['median_range_error_m'], '.3f', ' m')}, mean {fmt(m['mean_range_error_m'], '.3f', ' m')}; "
            f"Chamfer {fmt(m['chamfer_m'], '.3f', ' m')}; ray drop accuracy {fmt(m['drop_accuracy'], '.1%')}, F1 "
            f"{fmt(m['drop_f1'], '.3f')}{_drop_model(m.get('drop_model'))}; intensity RMSE "
            f"{fmt(m['intensity_rmse'], '.3f')}")


def _intensity(rmse: float | None) -> str:
    return "" if rmse is None else f"; intensity RMSE {rmse:.3f}"


def _drop_model(how: str | None) -> str:
    return f" ({how} drops)" if how else ""
