"""The synthetic vehicle's sensors: three forward cameras and a roof lidar (vehicle frame x fwd, y left, z up)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data.geometry import make_pose, rot_z
from ..data.model import Intrinsics


@dataclass(frozen=True)
class CameraMount:
    name: str
    position: tuple[float, float, float]  # in the vehicle frame, metres
    yaw_deg: float  # left of forward is positive
    hfov_deg: float = 80.0

    def camera_to_vehicle(self) -> np.ndarray:
        """4x4 with OpenGL camera axes: x right, y up, looking along -z (= the mount's forward)."""
        yaw = math.radians(self.yaw_deg)
        forward = rot_z(yaw) @ np.array([1.0, 0.0, 0.0])
        right = rot_z(yaw) @ np.array([0.0, -1.0, 0.0])
        up = np.array([0.0, 0.0, 1.0])
        return make_pose(np.stack([right, up, -forward], axis=1), np.array(self.position))

    def intrinsics(self, width: int, height: int) -> Intrinsics:
        f = 0.5 * width / math.tan(math.radians(self.hfov_deg) / 2)
        return Intrinsics(f, f, width / 2, height / 2, width, height, model="PINHOLE")


CAMERAS = (
    CameraMount("front", (1.6, 0.0, 1.55), 0.0),
    CameraMount("front_left", (1.5, 0.4, 1.55), 55.0),
    CameraMount("front_right", (1.5, -0.4, 1.55), -55.0),
)

LIDAR_TO_VEHICLE = make_pose(np.eye(3), np.array([0.0, 0.0, 1.9]))
