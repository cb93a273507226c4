"""The lidar sensor model of a ROS recording, estimated from a PointCloud2 with a ``ring`` field, and each cloud's
beam / column layout (drive-log v1.1; docs/datasets.md "ROS bags and MCAP").

A spinning lidar's driver labels every point with its beam (``ring``); the recording has no sensor description, so
the model is estimated from the first cloud of the topic (``data/lidar_estimate.py``, "rings") and marked
``estimated``: one beam per ring (in ring order) at the median elevation of its points, the columns from the
azimuth step between a ring's neighbouring points (at least the fullest ring's point count), counter-clockwise
from -180 degrees, spin rate from the clouds' period. A point's column is its azimuth's nearest step. Clouds
without a ``ring`` field keep no layout (their sensor stays unknown).
"""

from __future__ import annotations

from ..lidar_estimate import BeamModel, from_rings
from ..lidar_model import SweepLayout
from ._ros_msgs import Cloud


def estimate_sensor(first: Cloud, period_s: float | None) -> BeamModel | None:
    """The sensor behind ``first`` (None without rings, or beyond the format's limits); ``period_s``: the median
    time between the topic's clouds (None: 10 Hz)."""
    if first.ring is None or not len(first.points):
        return None
    return from_rings(first.points[:, :3], first.ring, period_s).model


def cloud_layout(cloud: Cloud, model: BeamModel) -> SweepLayout | None:
    """Each point's beam (its ring's rank in the model's rings), column (nearest azimuth step) and time; None when
    the cloud has no rings or a ring the sensor does not."""
    if cloud.ring is None:
        return None
    return model.layout(cloud.points[:, :3], cloud.ring, cloud.time)
