"""The ``simrecon`` command line: a thin face over the library.

Every failure the user can cause (a bad path, option or file) ends with one clear line and exit
code 2, never a traceback. Heavy modules are imported inside the commands so ``--help`` is instant.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .options import RENDERER_HELP, number, renderer_choice

app = typer.Typer(
    name="simrecon",
    help=(
        "Neural-rendering simulation toolkit for autonomous driving.\n\n"
        "Turn drive logs into editable 3D scenes and render camera data that was never recorded.\n\n"
        "Start with:  simrecon demo            (synthetic street, validation, HTML report)\n\n"
        "Then:  simrecon synth OUT  ->  simrecon validate OUT/log  ->  simrecon info OUT/log\n\n"
        "Real data:  simrecon convert kitti-odometry SRC OUT   (docs/datasets.md; ROS bags: convert rosbag)\n\n"
        "Closed loop:  simrecon drive SCENARIO --policy lane-follow -o RUN   (docs/simulation.md)"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def _existing_log(path: Path) -> Path:
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    return path


@app.command()
def validate(
    log: Path = typer.Argument(..., help="Drive-log folder (with transforms.json) or the transforms.json file."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Skip frames whose image is missing."),
    quick: bool = typer.Option(False, "--quick", help="Check images by their headers only (no full decode: "
                                                      "an image cut short is not noticed)."),
) -> None:
    """Check a drive log against format v1 / v1.1 (docs/drive-log.md).

    Exit 0 with a one-line summary, or exit 2 listing EVERY problem as
    `file: json.path: what was expected`. Every image and mask is decoded in full (in parallel) unless
    --quick is given.
    """
    from ..data import validate_log
    from .convert_cmd import decode_progress

    with decode_progress(err) as step:
        log_obj, problems = validate_log(_existing_log(log), skip_missing=skip_missing, decode=not quick,
                                         progress=step)
    if problems:
        for p in problems:
            err.print(str(p), highlight=False, markup=False, soft_wrap=True)
        err.print(f"INVALID: {len(problems)} problem(s) in {log}", style="bold red", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    out.print(f"OK {log}: {log_obj.summary()}", highlight=False, soft_wrap=True)


@app.command()
def info(log: Path = typer.Argument(..., help="Drive-log folder or its transforms.json.")) -> None:
    """Tables of what a log holds: cameras, lidar, actors by class, ego poses."""
    from ..data import load_log
    from .tables import print_log_tables

    print_log_tables(out, load_log(_existing_log(log)))


@app.command()
def synth(
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output folder: OUT/log (the drive log) and OUT/gt."),
    seconds: float = typer.Option(2.0, "--seconds", "-s", help="Length of the drive in seconds (10 Hz)."),
    width: int = typer.Option(480, "--width", "-W", help="Image width in pixels."),
    height: int = typer.Option(270, "--height", "-H", help="Image height in pixels."),
    seed: int = typer.Option(0, "--seed", help="Layout, colours and textures are a function of the seed."),
    no_gt: bool = typer.Option(False, "--no-gt", help="Skip the ground-truth renders (faster)."),
    antialias: int = typer.Option(2, "--antialias", help="K x K rays over each edge pixel, as a camera integrates "
                                                          "over its pixels (1: one ray per pixel, aliased)."),
    exposure_drift: float = typer.Option(0.0, "--exposure-drift",
                                         help="Auto-exposure in the log's images: camera k's gain is exp(A sin(2 pi "
                                              "t / 1.6 s + 2k)); 0.25 is +-28 %. The ground truth keeps the true "
                                              "exposure. For testing --frame-exposure of reconstruct."),
    pose_noise: str = typer.Option("", "--pose-noise", metavar="POS_M,ROT_DEG",
                                   help="Move every timestamp's camera rig and ego pose in the log by exactly POS_M "
                                        "metres and ROT_DEG degrees (random directions, seeded), as GPS/INS poses "
                                        "are off; e.g. 0.1,0.5. Images, lidar and ground truth stay exact; "
                                        "OUT/true_poses.json keeps the exact poses. For testing pose refinement."),
    track_noise: str = typer.Option("", "--track-noise", metavar="POS_M,ROT_DEG",
                                    help="Move every actor track keyframe in the log by POS_M metres and a yaw of "
                                         "ROT_DEG degrees (e.g. 0.2,2); the exact tracks go to OUT/true_poses.json."),
    rolling_shutter: float = typer.Option(0.0, "--rolling-shutter", metavar="READOUT_S",
                                          help="Rolling-shutter cameras: lines read top to bottom over READOUT_S "
                                               "seconds (e.g. 0.03), each rendered at its own exposure time; the "
                                               "frames say so (drive-log v1.2). 0: global shutter."),
    ego_speed: float = typer.Option(8.0, "--ego-speed", help="The ego's speed in m/s."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists."),
) -> None:
    """Generate a synthetic street drive with exact ground truth.

    Three cameras (front, front_left, front_right), a 32-beam lidar, parked and moving cars, a
    pedestrian. OUT/gt holds what the log lacks: the front camera with the ego path shifted
    +1 m, -1 m and +2 m to the left, the log with the moving car car_0 removed (RGB, depth,
    instance and semantic ids), and exact actor boxes and meshes. Deterministic for a seed.
    """
    from ..synth import SynthConfig
    from .options import noise_pair
    from .progress import run_synth

    pose_m, pose_deg = noise_pair("--pose-noise", pose_noise)
    track_m, track_deg = noise_pair("--track-noise", track_noise)
    cfg = SynthConfig(seconds=seconds, width=width, height=height, seed=seed, ground_truth=not no_gt,
                      antialias=antialias, exposure_drift=exposure_drift, pose_noise_m=pose_m,
                      pose_noise_deg=pose_deg, track_noise_m=track_m, track_noise_deg=track_deg,
                      rolling_shutter_s=rolling_shutter, ego_speed=ego_speed)
    log_dir = run_synth(out_dir, cfg, force, err)
    out.print(f"wrote {log_dir} (drive log) and {out_dir / 'gt'} (ground truth)", highlight=False)


@app.command()
def convert(
    format: str = typer.Argument(..., help="nerfstudio, kitti-odometry, kitti-tracking, dgp, nuscenes, waymo, "
                                           "argoverse2, pandaset, rosbag."),
    src: Path = typer.Argument(..., help="The dataset folder (see docs/datasets.md for each layout); for rosbag a "
                                         "ROS 1 .bag, a ROS 2 bag folder, a .db3 / .mcap file or a topics .yaml."),
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output drive-log folder (must not exist)."),
    cameras: Optional[list[str]] = typer.Option(None, "--cameras", help="Only these cameras (repeat or a,b,c)."),
    frames: Optional[str] = typer.Option(None, "--frames", help="Frame range START:END (Python slice)."),
    skip_missing: bool = typer.Option(False, "--skip-missing", help="Skip frames whose image is missing."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace OUT if it exists."),
    topics: Optional[Path] = typer.Option(None, "--topics", help="rosbag: a topics YAML file choosing cameras, "
                                                                 "lidar, boxes, frames (docs/datasets.md)."),
    start: Optional[float] = typer.Option(None, "--start", help="rosbag: seconds after the recording's first "
                                                                "message to start at.", callback=number("--start", ">= 0")),
    duration: Optional[float] = typer.Option(None, "--duration", help="rosbag: seconds to convert from --start.",
                                             callback=number("--duration", "> 0")),
) -> None:
    """Convert a public dataset into a drive log (written atomically, validated)."""
    from .convert_cmd import convert_command

    convert_command(format, src, out_dir, cameras, frames, skip_missing, force, console=err, topics=topics,
                    start=start, duration=duration)


@app.command()
def reconstruct(
    log: Optional[Path] = typer.Argument(None, help="Drive-log folder to reconstruct (with --resume: only when the "
                                                    "scene's log moved)."),
    output: Path = typer.Option(..., "--output", "-o", help="Scene folder to write (scene.json, model.pt, ...)."),
    preset: str = typer.Option("fast", "--preset", help="fast (CPU, 10 min), default, quality; tiny for smoke tests."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Stop after N steps (default: the preset's)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Stop after M minutes (default: the preset's).",
                                            callback=number("--minutes", "> 0")),
    holdout: Optional[str] = typer.Option(None, "--holdout", help="every:N (default every:8), none, or a file "
                                                                  "listing image paths to hold out."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    resume: bool = typer.Option(False, "--resume", help="Continue the scene in -o from its last checkpoint (a "
                                                        "scene whose run stopped before its first starts afresh)."),
    log_option: Optional[Path] = typer.Option(None, "--log", help="With --resume: the scene's drive log, when it "
                                                                  "moved (as LOG)."),
    lidar_prior_steps: Optional[int] = typer.Option(
        None, "--lidar-prior-steps", help="Steps of the lidar prior before photometric training: surfaces and "
                                          "colours from the lidar returns by point queries (60 take ~7 s on 2 "
                                          "cores). Default: 60 when --minutes is at most 5 (+1.7 dB held out at "
                                          "2 minutes), none for longer budgets (even at 10 minutes, with a coarser "
                                          "lidar depth); 0 turns it off. Logs without lidar skip it."),
    free_columns: Optional[float] = typer.Option(
        None, "--free-columns", help="Weight of the free-columns prior: the lidar's empty space near the ground "
                                     "taken to be open up to the scene box's top, so upper floors cannot bulge "
                                     "into the street (default 0.03 in every preset; 0: off; logs without "
                                     "lidar skip it).", callback=number("--free-columns", ">= 0")),
    frame_exposure: Optional[bool] = typer.Option(
        None, "--frame-exposure/--no-frame-exposure",
        help="Learn a gain and offset per colour channel for every training frame, for cameras whose exposure "
             "or white balance changes between frames (auto-exposure); held-out frames take the correction "
             "interpolated in time, other cameras none. +6.6 dB held out on a street whose exposure drifts "
             "+-28 %; -0.3-0.5 dB where every frame is exposed alike. Default (neither flag): auto, on when the "
             "training frames' brightness jumps from frame to frame by more than a measured threshold; the "
             "decision is printed (model.frame_exposure=auto|on|off; docs/reconstruction.md)."),
    settings: Optional[list[str]] = typer.Option(
        None, "--set", metavar="KEY=VALUE",
        help="Set any training setting by its dotted name, on top of the preset and the options above "
             "(repeatable), e.g. --set budget.minutes=20 --set model.samples=48. `simrecon config` lists every "
             "key with its value, unit and help (docs/config.md). With --resume: `budget.*` and the other training "
             "settings, not `model.*`, `holdout`, `priors.*` or the scene box."),
) -> None:
    """Train a neural scene from a drive log (background, sky, appearance, one field per actor).

    Training stops at the step or time budget, whichever comes first; Ctrl-C or SIGTERM writes a
    checkpoint that --resume continues. Under torchrun it trains on several processes (DDP).
    Every setting: `simrecon config` (and --set KEY=VALUE). See docs/reconstruction.md.
    """
    from .scene_cmds import reconstruct_command

    if log_option is not None:
        if not resume:
            raise UserError("--log: only with --resume (a new scene takes its drive log as LOG)")
        if log is not None and log != log_option:
            raise UserError(f"--log {log_option}: and LOG {log} differ; give the drive log once")
        if not log_option.exists():
            raise UserError(f"--log {log_option}: no such file or folder")
        log = log_option
    if log is not None and not log.exists():
        raise UserError(f"{log}: no such file or folder")
    reconstruct_command(log, output, preset, steps, minutes, holdout, device, resume, err, lidar_prior_steps,
                        free_columns, frame_exposure, settings=settings)


@app.command("config")
def config_(
    preset: str = typer.Option("fast", "--preset", help="The preset whose values to show: fast (reconstruct's "
                                                        "default), default, quality or tiny."),
    settings: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                                 help="Change settings first, as reconstruct --set does."),
    markdown: bool = typer.Option(False, "--markdown", help="Print docs/config.md instead: every setting with its "
                                                            "unit, default, the presets' values and help."),
) -> None:
    """List every training setting: dotted name, value, unit and what it does.

    The names are those `simrecon reconstruct --set KEY=VALUE` takes. See docs/config.md.
    """
    from .config_cmd import config_command

    config_command(preset, settings or [], markdown, out)


@app.command("eval")
def eval_(
    scene: Path = typer.Argument(..., help="Scene folder written by reconstruct."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    log: Optional[Path] = typer.Option(None, "--log", help="The scene's drive log, when it moved."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """PSNR / SSIM on the held-out frames, depth error against lidar; writes SCENE/eval.json."""
    from .scene_cmds import eval_command

    eval_command(_existing_log(scene), device, out, err, log=log, renderer=renderer)


@app.command()
def render(
    scene: Path = typer.Argument(..., help="Scene folder written by reconstruct."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    poses: Optional[Path] = typer.Option(None, "--poses", help="Cameras to render, in the drive-log frame "
                                                              "schema (frames with transform_matrix, "
                                                              "intrinsics, timestamp; no images)."),
    trajectory: bool = typer.Option(False, "--trajectory", help="Render the logged path of one camera as an "
                                                                "mp4 (and frames)."),
    camera: Optional[str] = typer.Option(None, "--camera", help="With --trajectory: which camera."),
    shift_left: float = typer.Option(0.0, "--shift-left", help="With --trajectory: move the ego this many "
                                                               "metres to its left (negative: right).",
                                     callback=number("--shift-left")),
    outputs: str = typer.Option("rgb,depth", "--outputs", help="Comma list of rgb, depth, instance."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace the output folder if it exists."),
    log: Optional[Path] = typer.Option(None, "--log", help="The scene's drive log, when it moved."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """Render a scene from cameras that were never there: a pose file or the (shifted) logged path."""
    from .scene_cmds import render_command

    path = render_command(_existing_log(scene), poses, output, outputs, trajectory, camera, shift_left, device,
                          force, err, log=log, renderer=renderer)
    out.print(f"wrote {path}", highlight=False)


@app.command()
def compose(
    scenario: Path = typer.Argument(..., help="Scenario YAML (docs/scenarios.md; examples in scenes/)."),
    output: Path = typer.Option(..., "--output", "--out", "-o", help="Output folder."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace the output folder if it exists."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """Render a scenario: per camera and time RGB, depth, instance and semantic ids, 2D/3D boxes, poses.

    A scenario edits a scene (remove, move, retime, insert actors; shift the ego; change the rig).
    With `lidar` in its outputs, also a lidar sweep per time in the drive-log format, PLY and per-point
    instance ids (docs/lidar.md). Deterministic: the same scenario renders bit-identically on CPU.
    """
    from .compose_cmd import compose_command

    compose_command(_existing_log(scenario), output, force, err, renderer)


@app.command()
def export(
    scenario: Path = typer.Argument(..., help="Scenario YAML."),
    format: str = typer.Option("simrecon", "--format", help="simrecon, kitti, coco, nerfstudio or mcap "
                                                           "(Foxglove; docs/export.md)."),
    output: Path = typer.Option(..., "--output", "--out", "-o", help="Output folder."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace the output folder if it exists."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """Render a scenario as a dataset; an interrupted export resumes without re-rendering finished frames."""
    from .compose_cmd import export_command

    export_command(_existing_log(scenario), format, output, force, err, renderer)


@app.command("export-run")
def export_run(
    run: Path = typer.Argument(..., help="A closed-loop run folder (simrecon drive ... -o RUN)."),
    output: Path = typer.Option(..., "--output", "--out", "-o", help="The MCAP file to write (e.g. run.mcap)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace the output file if it exists."),
) -> None:
    """Write a closed-loop run as one MCAP file for Foxglove: ego and actor boxes, the ego path, transforms,
    events and (when the run has them) the camera frames (docs/export.md)."""
    from ..export.run_mcap import run_to_mcap

    res = run_to_mcap(_existing_log(run), output, force)
    out.print(f"wrote {res.out}: {res.steps} steps, {res.images} camera frames, {res.events} events",
              highlight=False, soft_wrap=True)


@app.command()
def regress(
    suite: Path = typer.Argument(..., help="Suite YAML listing scenarios and thresholds."),
    update_golden: bool = typer.Option(False, "--update-golden", help="Write the renders as the new golden set."),
    output: Optional[Path] = typer.Option(None, "--output", "--out", "-o", help="Report folder (default "
                                                                               "regress-out/SUITE)."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """Render a suite, compare with golden renders; JUnit XML + HTML report; exit 1 on regression."""
    from .compose_cmd import regress_command

    code = regress_command(_existing_log(suite), update_golden, output, err, renderer)
    if code:
        raise typer.Exit(code)


@app.command()
def drive(
    scenario: Path = typer.Argument(..., help="Scenario YAML (docs/scenarios.md) or a scene folder (scene.json, or "
                                              "a synthetic drive log)."),
    policy: str = typer.Option(..., "--policy", help="replay, lane-follow, idle, 'exec:COMMAND' (a process "
                                                     "speaking JSON lines, docs/simulation.md), or module:attr / "
                                                     "file.py:attr (a callable obs -> action, or a class with "
                                                     "reset/act)."),
    output: Path = typer.Option(..., "--output", "--out", "-o", help="Run folder: metrics.json, trajectory.json, "
                                                                    "events.json (and frames/ with --frames)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Episode length in seconds (default: the "
                                                                      "scenario's time span + 2 s).",
                                             callback=number("--duration", "> 0")),
    dt: Optional[float] = typer.Option(None, "--dt", help="Simulation step in seconds (default 0.1).",
                                       callback=number("--dt", "> 0")),
    width: Optional[int] = typer.Option(None, "--width", "-W", help="Observed image width (default: the camera's)."),
    height: Optional[int] = typer.Option(None, "--height", "-H", help="Observed image height (default: the "
                                                                      "camera's)."),
    camera: Optional[list[str]] = typer.Option(None, "--camera", help="Observed camera (repeatable; default: the "
                                                                      "scenario's first)."),
    frames: bool = typer.Option(False, "--frames", help="Write the observed cameras' RGB as "
                                                        "frames/CAMERA/STEP.png."),
    settings: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                                 help="Any simulation setting by dotted name (repeatable), e.g. "
                                                      "--set world.end_on_off_road=true (docs/simulation.md); over "
                                                      "the scenario's drive: section."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace the run folder if simrecon wrote it."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
    mcap: bool = typer.Option(False, "--mcap", help="Also write RUN/run.mcap for Foxglove (as simrecon export-run; "
                                                    "the ros extra)."),
) -> None:
    """Drive a policy through a scenario in closed loop: bicycle-model ego, cameras rendered at its pose.

    Reports collisions, leaving the road, route completion, time to collision, comfort and a score
    (docs/simulation.md). A policy that raises or returns a bad action ends the run with a policy_error
    event; the run is still written.
    """
    from .drive_cmd import drive_command, sim_settings

    chosen = sim_settings(dt, duration, camera, width, height, settings or [])
    drive_command(_existing_log(scenario), policy, output, chosen, frames, force, err, renderer)
    if mcap:
        from ..export.run_mcap import run_to_mcap

        res = run_to_mcap(output, output / "run.mcap")
        err.print(f"wrote {res.out}: {res.steps} steps, {res.images} camera frames, {res.events} events",
                  highlight=False, soft_wrap=True)


@app.command("drive-suite")
def drive_suite(
    suite: Path = typer.Argument(..., help="Suite YAML: scenarios (each with optional vary:), tolerances, gates, "
                                           "set: (docs/simulation.md, Drive suites)."),
    policy: Optional[str] = typer.Option(None, "--policy", help="The candidate: any --policy of simrecon drive "
                                                                "(needed when the suite has scenarios:)."),
    baseline: Optional[str] = typer.Option(None, "--baseline", help="The release to compare with (a policy spec); "
                                                                   "without it, only the suite's gates apply."),
    detector: Optional[str] = typer.Option(None, "--detector", help="The candidate detector for the suite's "
                                                                   "perception: entries (module:attr or file.py:attr, "
                                                                   "image -> boxes)."),
    baseline_detector: Optional[str] = typer.Option(None, "--baseline-detector", help="The detector to compare "
                                                                                     "with."),
    output: Path = typer.Option(..., "--output", "--out", "-o", help="Report folder: summary.json, junit.xml, "
                                                                    "report.html, runs/WHO/CASE/."),
    settings: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                                 help="A simulation setting for every run (repeatable; over the "
                                                      "scenarios' drive: and the suite's set:)."),
    force: bool = typer.Option(False, "--force", "-f", help="Replace the report folder if simrecon wrote it."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """Release regression of driving policies: drive every case of a suite with the candidate and the baseline.

    A case fails when a metric got worse than the baseline's beyond its tolerance (score 0.02, route completion
    0.02, min TTC 0.25 s, any new collision, off-road or policy error by default) or misses a gate. Writes
    JUnit XML, an HTML report with bird's-eye plots and summary.json; exit 1 on a regression.
    """
    from .drive_cmd import drive_suite_command, sim_settings

    chosen = sim_settings(None, None, None, None, None, settings or [])
    code = drive_suite_command(_existing_log(suite), policy, baseline, output, chosen, force, err, renderer,
                               detector, baseline_detector)
    if code:
        raise typer.Exit(code)


@app.command()
def view(
    scene: Path = typer.Argument(..., help="Scene folder (scene.json) or a synthetic drive log."),
    host: str = typer.Option("127.0.0.1", "--host", help="Listen address; a non-loopback one needs --token "
                                                        "(else one is generated and printed)."),
    port: int = typer.Option(7007, "--port", help="The one port (page + websocket); 0 = any free port."),
    scenario: Optional[Path] = typer.Option(None, "--scenario", help="Preview this scenario's edits."),
    token: Optional[str] = typer.Option(None, "--token", help="Access token clients must present."),
    log: Optional[Path] = typer.Option(None, "--log", help="The scene's drive log, when it moved."),
    renderer: str = typer.Option("fast", "--renderer", help=RENDERER_HELP, callback=renderer_choice),
) -> None:
    """Browser viewer: fly through a scene, scrub time, toggle layers, edit actors, save scenarios.

    Works through an SSH tunnel (one port). See docs/viewer.md.
    """
    from .view_cmd import view_command

    view_command(_existing_log(scene), host, port, scenario, token, err, log=log, renderer=renderer)


@app.command()
def mesh(
    scene: Path = typer.Argument(..., help="Reconstructed scene folder."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder (meshes + JSON sidecars)."),
    actor: Optional[list[str]] = typer.Option(None, "--actor", help="Actor id to extract (repeatable)."),
    all_actors: bool = typer.Option(False, "--all-actors", help="Extract every actor."),
    background: bool = typer.Option(False, "--background", help="Also mesh the background inside --region."),
    region: Optional[str] = typer.Option(None, "--region", help="xmin,ymin,zmin,xmax,ymax,zmax in world metres."),
    resolution: int = typer.Option(128, "--resolution", help="Marching-cubes grid cells along the longest side."),
    format: str = typer.Option("glb", "--format", help="glb, ply or obj."),
    opacity: float = typer.Option(0.5, "--opacity", help="Surface where one sample step is this opaque.",
                                  callback=number("--opacity", "(0, 1)")),
    faces: int = typer.Option(20000, "--faces", help="Decimate each mesh to about this many faces."),
    clip: str = typer.Option("box", "--clip", help="box (only inside the tracked box), ground or none."),
    symmetric: Optional[bool] = typer.Option(
        None, "--symmetric/--no-symmetric",
        help="Mirror each actor's density left/right (a side never seen takes the seen side's surface). "
             "Default: on for vehicles (car, van, truck, bus, trailer), off otherwise."),
    prior: str = typer.Option(
        "auto", "--prior",
        help="auto: an actor seen in few training pixels (a car far ahead) borrows its shape from the best-seen "
             "actor of its class and size, scaled to its box (its colours stay its own); off: its own field only."),
    log: Optional[Path] = typer.Option(None, "--log", help="The scene's drive log, when it moved."),
) -> None:
    """Extract actors (and optionally the background) as coloured meshes in their box frame, in metres.

    Each mesh gets a JSON sidecar (class, size, forward axis) so it can be inserted into any scenario
    as `source: asset:<file>`. See docs/meshes.md.
    """
    from .mesh_cmd import mesh_command

    mesh_command(_existing_log(scene), output, actor, all_actors, background, resolution, format, region, err,
                 opacity=opacity, target_faces=faces, clip=clip, symmetric=symmetric, prior=prior, log=log)


@app.command("build-kernels")
def build_kernels(verbose: bool = typer.Option(False, "--verbose", "-v", help="Show compiler output.")) -> None:
    """Compile the fused hash-grid kernels now (else they compile on first use) and report backends."""
    try:
        from .kernels_cmd import build_kernels_command
    except ImportError as exc:
        raise UserError(f"the kernels are not part of this build: {exc}") from exc
    build_kernels_command(verbose=verbose)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-out"), "--output", "-o", help="Where the demo writes everything."),
    seconds: float = typer.Option(2.0, "--seconds", "-s", help="Length of the synthetic drive."),
    preset: str = typer.Option("fast", "--preset", help="Reconstruction preset (fast: 10 minutes on a CPU)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Reconstruction budget (default: the "
                                                                    "preset's).", callback=number("--minutes", "> 0")),
    no_reconstruct: bool = typer.Option(False, "--no-reconstruct", help="Stop after the log and its report."),
) -> None:
    """The main job on the bundled example, end to end.

    Synthesise a street drive, validate it, reconstruct it, evaluate it on held-out frames and
    against the generator's ground truth (ego shifted 2 m, a car removed), render a lane-shifted
    video, and write an HTML report. Re-running reuses every stage whose inputs are unchanged.
    """
    from .demo import run_demo

    report = run_demo(out_dir, seconds, out, err, preset_name=preset, minutes=minutes,
                      reconstruct=not no_reconstruct)
    out.print(f"report: {report}", highlight=False)


from .fleet_cmd import fleet_app  # noqa: E402  (typer and rich only: --help stays instant)

app.add_typer(fleet_app, name="fleet")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    # Idle OpenMP threads sleep instead of spinning: on a machine that is busy with anything else
    # (a viewer, a second job) spinning threads made training up to 8x slower. Set before torch loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ..data import LogError
    from ..train.trainer import TrainingDiverged, TrainingInterrupted

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("PIL").setLevel(logging.WARNING)
    command = typer.main.get_command(app)
    try:
        rv = command.main(args=argv if argv is not None else sys.argv[1:], prog_name="simrecon",
                          standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        return 130
    except (TrainingDiverged, TrainingInterrupted) as exc:
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2 if isinstance(exc, TrainingDiverged) else 130
    except LogError as exc:
        if len(exc.problems) == 1:
            err.print(f"error: {exc.problems[0]}", highlight=False, markup=False, soft_wrap=True)
            return 2
        for p in exc.problems:
            err.print(str(p), highlight=False, markup=False, soft_wrap=True)
        err.print(f"error: {len(exc.problems)} problem(s) in the drive log", highlight=False)
        return 2
    except (UserError, ValueError, KeyError, OSError) as exc:  # OSError: missing files, permissions, a full disk
        if isinstance(exc, KeyError):
            exc = exc.args[0] if exc.args else exc
        err.print(f"error: {exc}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except Exception as exc:
        # typer's (vendored) click signals exits and usage errors with exceptions; match them by shape
        # so this works whichever click typer carries.
        name = type(exc).__name__
        if name == "Exit" and hasattr(exc, "exit_code"):
            return int(exc.exit_code)
        if name == "Abort":
            err.print("interrupted", highlight=False)
            return 130
        if hasattr(exc, "format_message") and getattr(exc, "exit_code", None) == 2:
            ctx = getattr(exc, "ctx", None)
            where = f"simrecon {ctx.info_name} --help" if ctx is not None and ctx.parent is not None \
                else "simrecon --help"
            err.print(f"error: {exc.format_message()} (see: {where})", highlight=False, markup=False,
                      soft_wrap=True)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
