"""The lidar sensor model of a ROS recording, estimated from a PointCloud2 with a ``ring`` field, and each cloud's
beam / column layout (drive-log v1.1; docs/datasets.md "ROS bags and MCAP").

A spinning lidar's driver labels every point with its beam (``ring``); the recording has no sensor description, so
the model is estimated from the first cloud of the topic and marked ``estimated``: one beam per ring (in ring order)
at the median elevation of its points, as many columns as the fullest ring has points, counter-clockwise from
-180 degrees, spin rate from the clouds' period. A point's column is its azimuth's nearest step. Clouds without a
``ring`` field keep no layout (their sensor stays unknown, as with the other readers).
"""

from __future__ import annotations

import math

import numpy as np

from ..lidar_model import MAX_BEAMS, MAX_COLUMNS, MAX_RANGE_M, LidarSensor, SweepLayout
from ._ros_msgs import Cloud

DEFAULT_SPIN_HZ = 10.0


def estimate_sensor(first: Cloud, period_s: float | None) -> LidarSensor | None:
    """The sensor behind ``first`` (None without rings, or beyond the format's limits); ``period_s``: the median
    time between the topic's clouds (None: 10 Hz)."""
    if first.ring is None or not len(first.points):
        return None
    rings, counts = np.unique(first.ring, return_counts=True)
    columns = int(counts.max())
    if len(rings) > MAX_BEAMS or columns > MAX_COLUMNS:
        return None
    xyz = first.points[:, :3].astype(np.float64)
    elevation = np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))
    beams = tuple(float(np.median(elevation[first.ring == r])) for r in rings)
    rng = np.linalg.norm(xyz, axis=1)
    spin = 1.0 / period_s if period_s and period_s > 0 else DEFAULT_SPIN_HZ
    return LidarSensor(beams, columns, min_range_m=float(min(0.5, 0.9 * rng.min())) if rng.min() > 0 else 0.5,
                       max_range_m=float(min(MAX_RANGE_M, max(80.0, 1.05 * rng.max()))), spin_rate_hz=spin,
                       rotation="ccw", azimuth_start_deg=-180.0, estimated=True)


def cloud_layout(cloud: Cloud, sensor: LidarSensor, rings: np.ndarray) -> SweepLayout | None:
    """Each point's beam (its ring's rank in ``rings``), column (nearest azimuth step) and time; None when the
    cloud has a ring the sensor does not."""
    if cloud.ring is None:
        return None
    beam = np.searchsorted(rings, cloud.ring)
    if np.any(beam >= len(rings)) or np.any(rings[np.minimum(beam, len(rings) - 1)] != cloud.ring):
        return None
    xyz = cloud.points[:, :3].astype(np.float64)
    step = 2.0 * math.pi / sensor.columns
    azimuth = np.arctan2(xyz[:, 1], xyz[:, 0]) - math.radians(sensor.azimuth_start_deg)
    column = np.round(azimuth / step).astype(np.int64) % sensor.columns
    time = cloud.time.astype(np.float32) if cloud.time is not None else None
    return SweepLayout(beam.astype(np.int32), column.astype(np.int32), time)
