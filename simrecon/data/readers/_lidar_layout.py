"""Readers' lidar sensor models: each lidar's model estimated from its first sweep (``data/lidar_estimate.py``)
and every sweep written with its beam / column layout (drive-log v1.1).

A reader hands over, per output sweep path, a loader of ``RawSweep`` (points and, where the source has them,
ring labels and per-point times). ``attach_layouts`` estimates each sensor once, records it in
``log.lidar_sensors`` and replaces the sweeps' loaders with ones returning ``(points, layout)``. A sensor whose
points form no beams keeps plain points, with the reason in the conversion's warnings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..lidar_estimate import BeamModel, estimate
from ._common import Conversion, load_sweep

log = logging.getLogger(__name__)


@dataclass
class RawSweep:
    """One sweep as a source stores it."""

    points: np.ndarray  # [N, 4] float32 x, y, z, intensity in [0, 1], in the sensor frame
    ring: np.ndarray | None = None  # [N] the source's beam label of each point
    time: np.ndarray | None = None  # [N] seconds after the sweep's timestamp at which each point was measured


def _period(times: list[float]) -> float | None:
    return float(np.median(np.diff(sorted(times)))) if len(times) > 1 else None


def _loader(raw: Callable[[], RawSweep], model: BeamModel):
    def load():
        got = raw()
        pts = model.leveled(got.points)
        return pts, model.layout(pts[:, :3], got.ring, got.time)

    return load


def attach_layouts(conv: Conversion, raw: dict[str, Callable[[], RawSweep]], scan_order: bool = False) -> None:
    """Estimate each lidar of ``conv.log`` from its first sweep in ``raw`` (output path -> loader) and make the
    sweeps' loaders in ``conv.lidar`` write their layout; ``scan_order``: the source stores points beam after beam."""
    by_sensor: dict[str, list] = {}
    for sweep in conv.log.lidar:
        if sweep.file_path in raw:
            by_sensor.setdefault(sweep.sensor, []).append(sweep)
    for name, sweeps in by_sensor.items():
        sweeps.sort(key=lambda s: s.timestamp)
        first = load_sweep(raw[sweeps[0].file_path], sweeps[0].file_path)
        found = estimate(first.points[:, :3], first.ring, _period([s.timestamp for s in sweeps]), scan_order)
        models = conv.log.extra.setdefault("source", {}).setdefault("lidar_models", {})
        if found.model is None:
            models[name] = f"not estimated: {found.reason}"
            log.info("lidar %s: no sensor model (%s); sweeps are written without beam / column indices", name,
                     found.reason)
            for s in sweeps:
                conv.lidar[s.file_path] = (lambda f=raw[s.file_path]: f().points)
            continue
        model = found.model
        conv.log.lidar_sensors[name] = model.sensor
        for s in sweeps:
            s.s2w = s.s2w @ model.pose_fix()
            conv.lidar[s.file_path] = _loader(raw[s.file_path], model)
        models[name] = f"estimated from {model.how}: {model.sensor.beams} beams x {model.sensor.columns} columns"
