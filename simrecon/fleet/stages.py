"""The work of one (log, stage): the same library calls the single-log commands make (docs/fleet.md).

Each ``run_<kind>(task)`` reads the log and writes under ``OUT/<log>/`` only, through the library's atomic
writers (a stage's outputs are complete or absent), and returns the stage's figures. Bad input raises
``ValueError`` (``StageError`` for a verdict such as a failed regression) and is not retried.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Callable

from ..data.io import atomic_write_text
from .lidar_stage import run_lidar
from .mesh_stage import run_mesh
from .spec import StageSpec
from .state import StageFigures

SCENE = "scene"  # OUT/<log>/scene: the reconstruction
CONVERTED = "log"  # OUT/<log>/log: the drive log a convert stage writes
GOLDEN = "golden-renders"  # OUT/<log>/golden-renders: the golden renders of regress stages (unless golden: DIR)
SCENE_KEY = "scene.fleet-key"  # OUT/<log>/scene.fleet-key: the reconstruct key the scene is trained with


class StageError(ValueError):
    """A stage that ran and says no (a log with problems, a regression): one line, not retried."""


@dataclasses.dataclass(frozen=True)
class StageTask:
    """Everything one task needs; plain values so that it travels to any worker of a cluster."""

    out: str  # the fleet's output folder, absolute (shared storage on a cluster)
    log: str  # the log's folder name in ``out``
    log_dir: str  # the drive log to read, absolute
    source: str  # what the spec names: the drive log, or the raw dataset of a convert stage
    convert: str | None  # the dataset format of ``source`` for a convert stage
    stage: StageSpec
    reconstructed: bool  # a reconstruct stage comes earlier: rendering stages render its scene, not the log
    attempt: int = 1

    @property
    def log_out(self) -> Path:
        return Path(self.out) / self.log

    @property
    def scene_dir(self) -> Path:
        return self.log_out / SCENE

    def target(self) -> Path:
        """What rendering stages render: the reconstruction, or the log itself (a synthetic log renders exactly)."""
        return self.scene_dir if self.reconstructed else Path(self.log_dir)


def run_convert(task: StageTask) -> StageFigures:
    from ..data.readers import read, write_conversion

    opts = task.stage.options
    conv = read(task.convert or "", task.source, cameras=opts.cameras, frames=opts.frames,
                skip_missing=opts.skip_missing)
    log = write_conversion(conv, task.log_out / CONVERTED, overwrite=True)
    return StageFigures(frames=len(log.frames))


def run_validate(task: StageTask) -> StageFigures:
    from ..data import validate_log

    opts = task.stage.options
    log, problems = validate_log(Path(task.log_dir), skip_missing=opts.skip_missing, decode=not opts.quick)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise StageError(f"{problems[0]}{more}")
    return StageFigures(frames=len(log.frames))


def _train_config(opts):
    """The preset with the stage's budget and settings on top; (config, overrides for a resumed run)."""
    from ..config_io import set_field
    from ..train import preset
    from ..train.config import parse_settings

    cfg = preset(opts.preset)
    overrides: dict = {}
    if opts.steps is not None:
        overrides["budget.steps"] = opts.steps
    if opts.minutes is not None:
        overrides["budget.minutes"] = opts.minutes
    if opts.device != "auto":
        overrides["device"] = opts.device
    if opts.holdout is not None:
        cfg.holdout = opts.holdout
    overrides.update(parse_settings(cfg, list(opts.set), where="reconstruct.set"))
    for key, value in overrides.items():
        set_field(cfg, key, value, "reconstruct.set")
    return cfg, {k: v for k, v in overrides.items() if k.startswith("budget.") or k == "device"}


def run_reconstruct(task: StageTask) -> StageFigures:
    """Train the log's scene; a scene left by a killed or failed attempt with the same settings resumes from its
    checkpoint, one trained with other settings is replaced."""
    from ..scene.folder import MODEL_FILE, SCENE_FILE, read_scene_info
    from ..train import reconstruct

    cfg, overrides = _train_config(task.stage.options)
    scene, key_file, key = task.scene_dir, task.log_out / SCENE_KEY, task.stage.key()
    same = key_file.is_file() and key_file.read_text().strip() == key
    if (scene / SCENE_FILE).is_file() and same:
        info = read_scene_info(scene)
        if info.status == "complete" and (scene / MODEL_FILE).is_file():
            return StageFigures(steps=info.step, train_minutes=round(info.elapsed / 60, 2))
        result = reconstruct(Path(task.log_dir), scene, cfg, resume=True, overrides=overrides)
    else:
        if scene.exists():  # trained with other settings (the spec changed): this stage owns the folder
            shutil.rmtree(scene)
        atomic_write_text(key_file, key + "\n")
        result = reconstruct(Path(task.log_dir), scene, cfg, overrides=overrides)
    info = read_scene_info(scene)
    return StageFigures(steps=result.step, train_minutes=round(info.elapsed / 60, 2))


def _open(task: StageTask, renderer: str):
    """The scene rendering stages draw: the reconstruction (with this log), or the synthetic log itself."""
    from ..compose.scenes import open_scene
    from ..scene import load_scene

    if task.reconstructed:
        return load_scene(task.scene_dir, log=Path(task.log_dir), renderer=renderer)
    return open_scene(task.target(), renderer)


def run_eval(task: StageTask) -> StageFigures:
    from ..scene.evaluate import evaluate
    from ..scene import load_scene

    opts = task.stage.options
    scene = load_scene(task.scene_dir, device=opts.device, log=Path(task.log_dir), renderer=opts.renderer)
    result = evaluate(scene)
    atomic_write_text(task.scene_dir / "eval.json", json.dumps(result, indent=1))
    lidar = result.get("lidar_depth", {}).get("mean_abs_m")
    return StageFigures(psnr=result.get("psnr"), ssim=result.get("ssim"), lidar_error_m=lidar)


def _plans(task: StageTask, scenarios: list[str], renderer: str) -> list[tuple[str, object]]:
    """(output name, plan) of each scenario file, resolved against this log's scene."""
    from ..compose.scenario import load_scenario

    names = [Path(s).stem for s in scenarios]
    if len(set(names)) != len(names):
        raise StageError(f"{task.stage.name}.scenarios: two scenario files named alike ({', '.join(names)}): "
                         "their outputs would collide")
    scene = _open(task, renderer)
    plans = []
    for name, file in zip(names, scenarios):
        plan = load_scenario(file, scene=scene)
        plan.scene_path = task.target()
        plans.append((name, plan))
    return plans


def _thumbnail(task: StageTask, folder: Path) -> str | None:
    found = next((p for p in sorted(folder.rglob("*.png")) if "rgb" in p.as_posix()), None)
    return found.relative_to(task.out).as_posix() if found is not None else None


def run_compose(task: StageTask, fmt: str = "simrecon") -> StageFigures:
    from ..export import export

    opts = task.stage.options
    fmt = getattr(opts, "format", fmt)
    frames, root = 0, task.log_out / task.stage.name
    for name, plan in _plans(task, list(opts.scenarios), opts.renderer):
        frames += export(plan, fmt, root / name, force=True).frames
    return StageFigures(rendered=frames, thumbnail=_thumbnail(task, root))


def _suite_copy(task: StageTask) -> Path:
    """The stage's regression suite, rewritten for this log: its scenarios render on this log's scene, against
    golden renders of this log (``golden``/<log>, default OUT/<log>/golden-renders)."""
    opts = task.stage.options
    suite = Path(opts.suite)
    golden = str(Path(opts.golden) / task.log if opts.golden else task.log_out / GOLDEN)
    return _scene_suite_copy(task, suite, ("scenarios",), {"golden": golden}, ("golden_scene",))


def run_regress(task: StageTask) -> StageFigures:
    from ..export.regress import regress

    opts = task.stage.options
    out = task.log_out / task.stage.name
    result = regress(_suite_copy(task), update_golden=opts.update_golden, out=out, renderer=opts.renderer)
    return _suite_figures(result.cases, "scenario(s)", result.html)


def _suite_figures(cases: list, what: str, report: Path) -> StageFigures:
    """Passed / failed counts of a suite's ``cases``; a StageError naming the failed ones and the report."""
    bad = [c.name for c in cases if not c.passed]
    if bad:
        raise StageError(f"{len(bad)} of {len(cases)} {what} regressed ({', '.join(bad[:5])}); report {report}")
    return StageFigures(regress_passed=len(cases), regress_failed=0)


def _sim_settings(opts) -> list:
    """The drive stage's settings as (dotted name, value): its ``set`` items, then ``duration``; over each
    scenario's own ``drive:`` section, as ``simrecon drive --set`` is."""
    from ..config_io import set_field
    from ..sim import SimConfig
    from ..sim.config import apply_settings

    probe, out = SimConfig(), []
    for item in opts.set:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise StageError(f"drive.set {item!r}: expected KEY=VALUE, e.g. world.end_on_off_road=true")
        out.append((key.strip(), set_field(probe, key.strip(), raw, "drive.set", text=True)))
    if getattr(opts, "duration", None) is not None:
        out.append(("world.duration_s", opts.duration))
    apply_settings(SimConfig(), out, "drive.set")
    return out


def run_drive(task: StageTask) -> StageFigures:
    from ..sim import drive, open_plan

    opts = task.stage.options
    settings, root = _sim_settings(opts), task.log_out / task.stage.name
    plans = _plans(task, list(opts.scenarios), opts.renderer) if opts.scenarios else \
        [("logged", open_plan(task.target(), opts.renderer, scene=_open(task, opts.renderer)))]
    scores, collisions = [], 0
    for name, plan in plans:
        result = drive(plan, opts.policy, root / name, force=True, renderer=opts.renderer, settings=settings)
        scores.append(result.metrics.score)
        collisions += int(result.metrics.collision)
    return StageFigures(drive_score=round(sum(scores) / len(scores), 4), collisions=collisions)


def run_drive_suite(task: StageTask) -> StageFigures:
    """The stage's drive suite on this log's scene (``scene:`` replaced), its report in OUT/<log>/<stage>; the
    stage fails when a case regressed."""
    from ..export.drive_suite import drive_suite

    opts = task.stage.options
    copy = _scene_suite_copy(task, Path(opts.suite), ("scenarios", "perception"))
    result = drive_suite(copy, opts.policy, task.log_out / task.stage.name, opts.baseline, force=True,
                         settings=_sim_settings(opts), renderer=opts.renderer, detector=opts.detector,
                         baseline_detector=opts.baseline_detector)
    return _suite_figures(result.cases, "case(s)", task.log_out / task.stage.name / "report.html")


def _scene_suite_copy(task: StageTask, suite: Path, lists: tuple[str, ...], updates: dict | None = None,
                      paths: tuple[str, ...] = ()) -> Path:
    """A copy of ``suite`` next to this log's outputs: the scenario paths of its ``lists`` entries and its
    ``paths`` keys made absolute, its scene this log's, ``updates`` set."""
    import yaml

    from ..data.safe_load import loads_yaml

    doc = loads_yaml(suite.read_text(encoding="utf-8"), suite)
    if not isinstance(doc, dict) or not any(isinstance(doc.get(key), list) for key in lists):
        raise StageError(f"{suite}: {lists[0]}: expected a suite with a list of {lists[0]}")
    for key in lists:
        for entry in doc.get(key) or []:
            if isinstance(entry, dict) and isinstance(entry.get("scenario"), str):
                entry["scenario"] = str((suite.parent / entry["scenario"]).resolve())
    for key in paths:
        if isinstance(doc.get(key), str):
            doc[key] = str((suite.parent / doc[key]).resolve())
    doc["scene"] = str(task.target().resolve())
    doc.update(updates or {})
    copy = task.log_out / f"{task.stage.name}-suite.yaml"
    atomic_write_text(copy, yaml.safe_dump(doc, sort_keys=False))
    return copy


RUNNERS: dict[str, Callable[[StageTask], StageFigures]] = {
    "convert": run_convert, "validate": run_validate, "reconstruct": run_reconstruct, "eval": run_eval,
    "compose": run_compose, "export": run_compose, "regress": run_regress, "drive": run_drive,
    "drive-suite": run_drive_suite, "mesh": run_mesh, "lidar": run_lidar,
}
