"""Lidar sweeps rendered against recorded ones (``simrecon eval``, ``benchmarks/lidar.py``).

A recorded sweep with a beam/column layout (drive-log v1.1) is a range image: the cells that hold a point
returned, the others were dropped. The scene renders the same sensor at the sweep's pose and time with the
logged actors; per sweep we compare range where both returned, returned vs dropped per ray (accuracy, and F1 of
the dropped class), the two point sets (Chamfer), and intensity where both know it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..data.lidar_model import LidarSensor
from ..data.scene_api import LidarOutput, logged_placements

CHAMFER_CHUNK = 4096  # points per distance block (memory: CHAMFER_CHUNK x other points floats)


def chamfer(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance (metres) between point sets [N, 3] and [M, 3]; NaN if one is
    empty."""
    if not len(a) or not len(b):
        return float("nan")
    ta, tb = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)

    def nearest(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # the direct difference, not |x|^2 + |y|^2 - 2xy: at 50 m ranges that loses millimetres in float32
        return torch.cat([torch.cdist(x[i:i + CHAMFER_CHUNK], y, compute_mode="donot_use_mm_for_euclid_dist")
                          .amin(1) for i in range(0, len(x), CHAMFER_CHUNK)])

    return float((nearest(ta, tb).mean() + nearest(tb, ta).mean()) / 2)


@dataclass
class SweepComparison:
    """Counts and errors of one or more rendered sweeps against the recorded (or true) ones."""

    sweeps: int = 0
    rays: int = 0
    agree: int = 0  # rays returned in both or dropped in both
    dropped_both: int = 0  # true positives of "dropped"
    dropped_only_rendered: int = 0  # false positives
    dropped_only_recorded: int = 0  # false negatives
    range_errors: list = field(default_factory=list)  # per sweep: |rendered - recorded| (m) where both returned
    chamfers: list = field(default_factory=list)  # per sweep (m)
    intensity_errors: list = field(default_factory=list)  # per sweep: rendered - recorded where both known

    def add(self, got: LidarOutput, want_range: np.ndarray, want_returned: np.ndarray,
            want_intensity: np.ndarray | None, want_points: np.ndarray) -> None:
        both = got.returned & want_returned
        self.range_errors.append(np.abs(got.range_m[both] - want_range[both]))
        self.chamfers.append(chamfer(got.points(), want_points))
        if got.intensity is not None and want_intensity is not None:
            self.intensity_errors.append(got.intensity[both] - want_intensity[both])
        self.agree += int((got.returned == want_returned).sum())
        self.dropped_both += int((~got.returned & ~want_returned).sum())
        self.dropped_only_rendered += int((~got.returned & want_returned).sum())
        self.dropped_only_recorded += int((got.returned & ~want_returned).sum())
        self.rays += len(want_returned)
        self.sweeps += 1

    def summary(self) -> "SweepMetrics":
        err = np.concatenate(self.range_errors) if self.range_errors else np.zeros(0)
        inten = np.concatenate(self.intensity_errors) if self.intensity_errors else None
        f1_den = 2 * self.dropped_both + self.dropped_only_rendered + self.dropped_only_recorded
        return SweepMetrics(
            sweeps=self.sweeps, rays=self.rays,
            median_range_error_m=float(np.median(err)) if len(err) else None,
            mean_range_error_m=float(np.mean(err)) if len(err) else None,
            chamfer_m=float(np.nanmean(self.chamfers)) if any(np.isfinite(self.chamfers)) else None,
            drop_accuracy=self.agree / self.rays if self.rays else None,
            drop_f1=2 * self.dropped_both / f1_den if f1_den else None,
            intensity_rmse=float(np.sqrt(np.mean(inten ** 2))) if inten is not None and len(inten) else None)


@dataclass
class SweepMetrics:
    sweeps: int
    rays: int
    median_range_error_m: float | None  # where both returned
    mean_range_error_m: float | None
    chamfer_m: float | None  # symmetric mean nearest-neighbour distance of the point sets
    drop_accuracy: float | None  # share of rays returned in both or dropped in both
    drop_f1: float | None  # F1 of the "dropped" class
    intensity_rmse: float | None  # None: the rendered or the recorded sweeps carry no intensity
    # how the rendered sweeps decide drops: "learned" (the scene's drop head, docs/lidar.md), "geometric" (opacity
    # and range only) or None (not a neural scene: the exact synthetic street)
    drop_model: str | None = None

    def to_json(self) -> dict:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def recorded_range_image(sweep, root, sensor: LidarSensor) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                                                     np.ndarray] | None:
    """(range [R] m, returned [R], intensity [R] or None, points [N, 3]) of a recorded sweep in ``sensor``'s ray
    order; None when the sweep has no beam/column layout."""
    layout = sweep.load_layout(root)
    if layout is None:
        return None
    pts = sweep.load(root)
    flat = layout.beam.astype(np.int64) * sensor.columns + layout.column
    rng = np.full(sensor.rays, np.inf, np.float32)
    rng[flat] = np.linalg.norm(pts[:, :3], axis=1)
    returned = np.zeros(sensor.rays, bool)
    returned[flat] = True
    intensity = None
    if np.any(pts[:, 3] != 0):
        intensity = np.zeros(sensor.rays, np.float32)
        intensity[flat] = pts[:, 3]
    return rng, returned, intensity, pts[:, :3]


def score_sweeps(scene, sweeps: list, max_sweeps: int = 4) -> SweepMetrics | None:
    """Render ``scene`` at up to ``max_sweeps`` of the log's recorded ``sweeps`` (those whose sensor has a v1.1
    model and a layout) and compare; None when no sweep qualifies."""
    log = scene.log
    cmp = SweepComparison()
    for s in sweeps:
        sensor = log.lidar_sensors.get(s.sensor)
        if sensor is None or cmp.sweeps >= max_sweeps:
            continue
        want = recorded_range_image(s, log.root, sensor)
        if want is None:
            continue
        got = scene.render_lidar(sensor, s.s2w, s.timestamp, logged_placements(log, s.timestamp))
        cmp.add(got, *want)
    if not cmp.sweeps:
        return None
    out = cmp.summary()
    out.drop_model = drop_model_of(scene)
    return out


def drop_model_of(scene) -> str | None:
    """How ``scene``'s sweeps decide drops: "learned", "geometric", or None for a scene without a neural model."""
    heads = getattr(getattr(scene, "model", None), "lidar_heads", False)
    if heads is False:
        return None
    return "learned" if heads is not None and heads.drop_net is not None else "geometric"
