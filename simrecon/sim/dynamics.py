"""The ego vehicle: a kinematic bicycle model driven by [acceleration, steering rate] (docs/simulation.md).

State (world frame, metres, radians, seconds): the rear axle's position ``x, y``, heading ``yaw`` (from +x,
left-positive), ``speed`` along the heading (never negative: no reverse gear) and the front wheels' steering
angle ``steer``. Over one step of ``dt`` the inputs are held constant: the steering angle moves at the commanded
rate (clipped to its limits), the speed at the commanded acceleration (clipped; it stops at 0 and at the top
speed), and the rear axle follows an arc of curvature ``tan(steer_mid) / wheelbase`` where ``steer_mid`` is the
steering angle averaged over the step. The arc is integrated in closed form over the distance travelled, so a
constant steering angle gives an exact circle of radius ``wheelbase / tan(steer)`` and zero steering an exact
straight line, whatever the speed profile.

The logged vehicle frame (x forward, y left, z up) is placed with ``rear_axle_x`` (where its rear axle is along
x) and the ego's box with ``box_center_x`` and ``length / width / height``: the drive-log format has no ego size,
so these come from the configuration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config_io import doc

ACTION_MODES = ("rate", "angle")


@dataclass
class VehicleConfig:
    """The ego vehicle's geometry and limits."""

    wheelbase: float = doc(2.8, "distance between the axles: the bicycle model's L", unit="m")
    length: float = doc(4.6, "length of the ego's box (vehicle x)", unit="m")
    width: float = doc(1.9, "width of the ego's box (vehicle y)", unit="m")
    height: float = doc(1.6, "height of the ego's box (vehicle z)", unit="m")
    rear_axle_x: float = doc(0.0, "the rear axle along the logged vehicle frame's x axis (0: the frame's origin is "
                                  "the rear axle, as in nuScenes and Waymo)", unit="m")
    box_center_x: float = doc(1.4, "the ego box's centre along the vehicle frame's x axis", unit="m")
    max_steer: float = doc(0.6, "steering angle limit, either way", unit="rad")
    max_steer_rate: float = doc(0.8, "steering rate limit, either way", unit="rad/s")
    max_accel: float = doc(3.0, "acceleration limit", unit="m/s^2")
    max_brake: float = doc(8.0, "deceleration limit (a positive number)", unit="m/s^2")
    max_speed: float = doc(40.0, "top speed", unit="m/s")

    def check(self) -> None:
        for name in ("wheelbase", "length", "width", "height", "max_steer", "max_steer_rate", "max_accel",
                     "max_brake", "max_speed"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"vehicle.{name}: must be a positive number, got {v!r}")
        if self.max_steer >= math.pi / 2:
            raise ValueError(f"vehicle.max_steer: must be below pi/2 rad, got {self.max_steer}")

    @property
    def size(self) -> np.ndarray:
        """[length, width, height] of the ego's box, metres."""
        return np.array([self.length, self.width, self.height], dtype=float)


@dataclass(frozen=True)
class EgoState:
    """The ego at one instant. ``accel``, ``yaw_rate`` and ``curvature`` describe the step that led here."""

    x: float  # rear axle, world metres
    y: float
    yaw: float  # radians in (-pi, pi], left-positive from +x
    speed: float  # m/s along the heading, >= 0
    steer: float  # front wheel angle, rad, left-positive
    accel: float = 0.0  # m/s^2, (speed - previous speed) / dt
    yaw_rate: float = 0.0  # rad/s over the last step
    curvature: float = 0.0  # 1/m of the last step's arc

    @property
    def lateral_accel(self) -> float:
        """Centripetal acceleration at the end of the last step, m/s^2 (speed^2 x curvature)."""
        return self.speed * self.speed * self.curvature

    def vector(self) -> np.ndarray:
        """[speed m/s, accel m/s^2, yaw rate rad/s, steering rad]: the ``ego`` observation."""
        return np.array([self.speed, self.accel, self.yaw_rate, self.steer], dtype=np.float32)


def wrap_angle(a: float) -> float:
    """``a`` in (-pi, pi]."""
    return float(math.pi - (math.pi - a) % (2 * math.pi))


def action_bounds(cfg: VehicleConfig, mode: str = "rate") -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of an action: [acceleration m/s^2, steering rate rad/s] (``rate``) or [acceleration m/s^2,
    steering angle rad] (``angle``)."""
    if mode not in ACTION_MODES:
        raise ValueError(f"action mode: expected one of {', '.join(ACTION_MODES)}, got {mode!r}")
    steer = cfg.max_steer_rate if mode == "rate" else cfg.max_steer
    return np.array([-cfg.max_brake, -steer]), np.array([cfg.max_accel, steer])


def travel(v0: float, accel: float, dt: float, v_max: float) -> tuple[float, float]:
    """(speed after ``dt``, distance covered) at constant ``accel`` from ``v0``, the speed held in [0, v_max]."""
    if v0 > v_max:
        return v_max, v_max * dt
    v1 = v0 + accel * dt
    if v1 < 0.0:  # stops within the step and stays stopped
        return 0.0, v0 * v0 / (2.0 * -accel)
    if v1 > v_max:  # reaches the top speed within the step
        t_hit = (v_max - v0) / accel
        return v_max, 0.5 * (v0 + v_max) * t_hit + v_max * (dt - t_hit)
    return v1, 0.5 * (v0 + v1) * dt


def arc(x: float, y: float, yaw: float, curvature: float, s: float) -> tuple[float, float, float]:
    """The end (x, y, yaw) of an arc of ``curvature`` (1/m, left-positive) and length ``s`` from (x, y, yaw);
    exact, and stable for a vanishing curvature (a straight line)."""
    phi = curvature * s
    sinc = float(np.sinc(phi / math.pi))  # sin(phi) / phi
    cosc = math.sin(phi / 2) * float(np.sinc(phi / (2 * math.pi)))  # (1 - cos(phi)) / phi
    c, sn = math.cos(yaw), math.sin(yaw)
    return x + s * (c * sinc - sn * cosc), y + s * (sn * sinc + c * cosc), yaw + phi


def step(state: EgoState, action, cfg: VehicleConfig, dt: float, mode: str = "rate") -> EgoState:
    """The state ``dt`` seconds on with ``action`` held: [acceleration, steering rate] or [acceleration, steering
    angle] (``mode``), each clipped to the vehicle's limits (an angle target is approached at most at the steering
    rate limit)."""
    low, high = action_bounds(cfg, mode)
    accel, steer_cmd = np.clip(np.asarray(action, dtype=float).reshape(2), low, high)
    if mode == "rate":
        steer1 = state.steer + steer_cmd * dt
    else:
        limit = cfg.max_steer_rate * dt
        steer1 = state.steer + float(np.clip(steer_cmd - state.steer, -limit, limit))
    steer1 = float(np.clip(steer1, -cfg.max_steer, cfg.max_steer))
    curvature = math.tan(0.5 * (state.steer + steer1)) / cfg.wheelbase
    v1, s = travel(state.speed, float(accel), dt, cfg.max_speed)
    x1, y1, yaw1 = arc(state.x, state.y, state.yaw, curvature, s)
    return EgoState(x1, y1, wrap_angle(yaw1), v1, steer1, (v1 - state.speed) / dt, (yaw1 - state.yaw) / dt,
                    curvature)


def rear_axle_pose(state: EgoState) -> np.ndarray:
    """[4, 4] the rear axle's frame (x along the heading, z up) in the world, at height 0."""
    c, s = math.cos(state.yaw), math.sin(state.yaw)
    pose = np.eye(4)
    pose[:2, :2] = [[c, -s], [s, c]]
    pose[:2, 3] = [state.x, state.y]
    return pose


def offset_along(pose: np.ndarray, dx: float) -> np.ndarray:
    """``pose`` moved by ``dx`` metres along its own x axis."""
    out = pose.copy()
    out[:3, 3] = pose[:3, 3] + dx * pose[:3, 0]
    return out


def heading(pose: np.ndarray) -> float:
    """The yaw of a pose's x axis projected on the ground plane, radians."""
    return math.atan2(pose[1, 0], pose[0, 0])
