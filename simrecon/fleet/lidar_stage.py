"""The fleet's ``lidar`` stage: the log's lidar sweeps rendered from its scene along the logged sensor path, written
in the drive-log lidar format, and scored against the recorded sweeps (``scene.lidar_eval``, docs/lidar.md).

Each sweep of a sensor with a model (drive-log v1.1 ``lidar_sensors``) is rendered at its logged sensor pose and
time with the logged actors (``render_lidar``, as ``simrecon compose`` renders its lidar output). OUT/<log>/<stage>/
holds ``lidar/<k>.npy`` (float32 [N, 3|4], sensor frame), ``lidar/<k>.index.npy`` (int32 [N, 2] beam, column),
``lidar.json`` (the sweeps as drive-log ``lidar`` entries with their ``lidar_sensors``) and ``metrics.json`` (the
whole-sweep metrics over the sweeps that recorded a beam/column layout). The folder is built under a temporary
name and renamed when complete.

A log without lidar sweeps, or whose sweeps have no sensor model (a v1 log: which ray is which is unknown), has
nothing to render: the stage is done with ``figures.skipped`` saying why, and writes nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .state import StageFigures


def _skip_reason(log) -> str | None:
    if not log.lidar:
        return "the log has no lidar sweeps"
    if not any(s.sensor in log.lidar_sensors for s in log.lidar):
        return ("the log's lidar sweeps have no sensor model (drive-log v1.1 lidar_sensors), so they cannot be "
                "rendered ray for ray")
    return None


def _chosen(log, limit: int | None) -> list:
    """The sweeps to render: those with a sensor model, at most ``limit`` of them evenly spread."""
    sweeps = [s for s in log.lidar if s.sensor in log.lidar_sensors]
    if limit is not None and len(sweeps) > limit:
        picks = np.unique(np.linspace(0, len(sweeps) - 1, limit).round().astype(int))
        sweeps = [sweeps[i] for i in picks]
    return sweeps


def _open(task, log, renderer: str):
    """The reconstruction when a reconstruct stage came before, else the synthetic log's exact scene."""
    from ..compose.scenes import open_scene
    from ..scene import load_scene

    if task.reconstructed:
        return load_scene(task.scene_dir, device=task.stage.options.device, log=log.root, renderer=renderer)
    return open_scene(task.target(), renderer)


def _write_sweep(folder: Path, k: int, got) -> dict:
    """Write one rendered sweep (``LidarOutput``) as drive-log points + index sidecar; its ``lidar`` entry (less
    pose, time and sensor)."""
    from ..data.lidar_io import write_points, write_sidecar

    points = got.points().astype(np.float32)
    if got.intensity is not None:
        points = np.concatenate([points, got.intensity[got.returned, None].astype(np.float32)], axis=1)
    layout = got.layout()
    stem = f"lidar/{k:06d}"
    write_points(folder / f"{stem}.npy", points)
    write_sidecar(folder / f"{stem}.index.npy", "index_path",
                  np.stack([layout.beam, layout.column], axis=1).astype(np.int32))
    return {"file_path": f"{stem}.npy", "index_path": f"{stem}.index.npy"}


def _render(scene, log, sweeps: list, folder: Path):
    """Render ``sweeps`` into ``folder``; (their lidar entries, the SweepMetrics or None)."""
    from ..data.scene_api import logged_placements
    from ..scene.lidar_eval import SweepComparison, recorded_range_image

    cmp, entries = SweepComparison(), []
    (folder / "lidar").mkdir(parents=True, exist_ok=True)
    for k, s in enumerate(sweeps):
        sensor = log.lidar_sensors[s.sensor]
        got = scene.render_lidar(sensor, s.s2w, s.timestamp, logged_placements(log, s.timestamp))
        entry = _write_sweep(folder, k, got)
        entries.append({**entry, "sensor": s.sensor, "timestamp": float(s.timestamp),
                        "transform_matrix": np.asarray(s.s2w).tolist(), "recorded": s.file_path})
        want = recorded_range_image(s, log.root, sensor)
        if want is not None:
            cmp.add(got, *want)
    return entries, (cmp.summary() if cmp.sweeps else None)


def run_lidar(task) -> StageFigures:
    """The ``lidar`` stage of ``task`` (a ``StageTask``): rendered sweeps and their metrics in OUT/<log>/<stage>."""
    from ..data import load_log
    from ..data.outdir import check_target, swap_in, temp_beside, written_by_simrecon

    opts = task.stage.options
    log = load_log(task.log_dir)
    out = task.log_out / task.stage.name
    reason = _skip_reason(log)
    if reason is not None:
        if out.is_dir() and written_by_simrecon(out):  # an earlier run's sweeps of a log that has changed
            shutil.rmtree(out)
        return StageFigures(skipped=reason)
    scene = _open(task, log, opts.renderer)
    sweeps = _chosen(log, opts.sweeps)
    check_target(out, force=True)  # replaces an earlier run's sweeps, never a folder simrecon did not write
    tmp = temp_beside(out)
    try:
        entries, metrics = _render(scene, log, sweeps, tmp)
        used = sorted({s.sensor for s in sweeps})
        doc = {"simrecon_version": 1.1, "lidar_sensors": {n: log.lidar_sensors[n].to_json() for n in used},
               "lidar": entries}
        (tmp / "lidar.json").write_text(json.dumps(doc, indent=1))
        scored = {"rendered_sweeps": len(entries), **(metrics.to_json() if metrics else {"sweeps": 0})}
        (tmp / "metrics.json").write_text(json.dumps(scored, indent=1))
        swap_in(tmp, out, "fleet lidar")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if metrics is None:
        return StageFigures(lidar_sweeps=len(entries))
    return StageFigures(lidar_sweeps=len(entries), lidar_range_m=_round(metrics.median_range_error_m),
                        lidar_drop_accuracy=_round(metrics.drop_accuracy), lidar_chamfer_m=_round(metrics.chamfer_m))


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 5)
