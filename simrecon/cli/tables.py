"""Rich tables describing a drive log (``simrecon info``, the demo)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.table import Table

from ..data.model import DriveLog
from ..report import actor_rows, camera_rows


def _lidar_counts(log: DriveLog) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = defaultdict(list)
    for s in log.lidar:
        path = log.root / s.file_path
        if path.suffix.lower() == ".npy":
            counts[s.sensor].append(int(np.load(path, mmap_mode="r").shape[0]))  # header only
        else:
            counts[s.sensor].append(len(s.load(log.root)))
    return counts


def print_log_tables(console: Console, log: DriveLog) -> None:
    console.print(f"[bold]{log.root}[/]: {log.summary()}", highlight=False)
    cams = Table("camera", "resolution", "model", "frames", "time span", title="Cameras")
    for row in camera_rows(log):
        cams.add_row(*row)
    console.print(cams)
    if log.lidar:
        lid = Table("sensor", "sweeps", "points per sweep (mean)", "time span", title="Lidar")
        counts = _lidar_counts(log)
        for sensor, n in sorted(counts.items()):
            times = [s.timestamp for s in log.lidar if s.sensor == sensor]
            lid.add_row(sensor, str(len(n)), f"{np.mean(n):.0f}", f"{min(times):.2f} - {max(times):.2f} s")
        console.print(lid)
    else:
        console.print("Lidar: none")
    if log.actors:
        act = Table("class", "count", "static", "moving", title="Actors")
        for row in actor_rows(log):
            act.add_row(*row)
        console.print(act)
    else:
        console.print("Actors: none")
    if log.ego is not None and len(log.ego) > 1:
        path = np.linalg.norm(np.diff(log.ego.poses[:, :3, 3], axis=0), axis=1).sum()
        t0, t1 = log.ego.span
        console.print(f"Ego: {len(log.ego)} poses over {t1 - t0:.2f} s, {path:.1f} m travelled", highlight=False)
