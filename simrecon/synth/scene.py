"""Procedural street layout: road, sidewalks, lamp posts, building blocks, parked and moving cars, a pedestrian.

World frame: z up, the street runs along +x, the ego drives in the lane centred at y = -1.75
(right-hand traffic). Everything is a union of oriented boxes so ground truth is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.geometry import make_pose, rot_z

# Materials pick the procedural texture (shading.py).
MAT_PLAIN, MAT_SIDEWALK, MAT_FACADE, MAT_CAR_BODY, MAT_CABIN = 0, 1, 2, 3, 4

# Semantic classes written with GT renders (0 = sky / nothing).
SEMANTIC = {"sky": 0, "road": 1, "sidewalk": 2, "building": 3, "pole": 4, "car": 10, "pedestrian": 11}

LANE_WIDTH = 3.5
ROAD_HALF = 7.0  # the road spans y in [-7, 7]: two lanes each way
SIDEWALK_OUTER = 10.5
EGO_LANE_Y = -1.75


@dataclass
class Part:
    """A box of an object, in the object's frame (x forward, y left, z up)."""

    center: np.ndarray  # [3]
    half: np.ndarray  # [3] half extents
    material: int
    color: np.ndarray  # [3] base colour, linear 0..1


@dataclass
class SynthActor:
    """A rigid actor: its parts in its box frame and its box-to-world track."""

    id: str
    cls: str
    size: np.ndarray  # [3] length, width, height of the tight box around the parts
    parts: list[Part]
    times: np.ndarray  # [T]
    poses: np.ndarray  # [T, 4, 4] box-to-world
    static: bool = False

    def pose_at(self, t: float, slack: float = 0.0) -> np.ndarray | None:
        """Box-to-world at time t (motion is piecewise linear with constant heading: exact); up to ``slack``
        seconds beyond the track's ends the end segments' motion continues (a rolling-shutter frame's first and
        last lines)."""
        if self.static:
            return self.poses[0]
        if t < self.times[0] - 1e-9 - slack or t > self.times[-1] + 1e-9 + slack:
            return None
        if len(self.times) == 1:
            return self.poses[0]
        i = int(np.clip(np.searchsorted(self.times, t, side="right"), 1, len(self.times) - 1))
        a = (t - self.times[i - 1]) / (self.times[i] - self.times[i - 1])
        pose = self.poses[i - 1].copy()
        pose[:3, 3] = (1 - a) * self.poses[i - 1][:3, 3] + a * self.poses[i][:3, 3]
        return pose


@dataclass
class StaticBox:
    """A background box in world coordinates with a yaw about z."""

    center: np.ndarray
    half: np.ndarray
    material: int
    color: np.ndarray
    semantic: int
    yaw: float = 0.0


@dataclass
class Street:
    static: list[StaticBox]
    actors: list[SynthActor]
    ego_times: np.ndarray  # [T]
    ego_poses: np.ndarray  # [T, 4, 4] vehicle-to-world
    moving_actor_ids: list[str] = field(default_factory=list)


def _car_parts(rng: np.random.Generator, length: float, width: float, height: float) -> list[Part]:
    """Body, cabin and four wheels inside a [length, width, height] box centred at the origin."""
    palette = np.array([[0.75, 0.1, 0.1], [0.1, 0.25, 0.7], [0.85, 0.85, 0.82], [0.15, 0.15, 0.17],
                        [0.2, 0.5, 0.25], [0.85, 0.6, 0.1], [0.55, 0.57, 0.6]])
    color = palette[rng.integers(len(palette))]
    z0 = -height / 2
    wheel_r = 0.33
    body_h = 0.55 * height - 0.15
    body = Part(np.array([0.0, 0.0, z0 + 0.15 + body_h / 2 + 0.1]), np.array([length / 2, width / 2, body_h / 2]),
                MAT_CAR_BODY, color)
    cabin_h = height - (0.25 + body_h)
    cabin = Part(np.array([-0.08 * length, 0.0, height / 2 - cabin_h / 2]),
                 np.array([0.29 * length, width / 2 - 0.08, cabin_h / 2]), MAT_CABIN, color)
    wheels = [
        Part(np.array([sx * (length / 2 - 0.75), sy * (width / 2 - 0.12), z0 + wheel_r]),
             np.array([wheel_r, 0.12, wheel_r]), MAT_PLAIN, np.array([0.06, 0.06, 0.07]))
        for sx in (-1, 1) for sy in (-1, 1)
    ]
    return [body, cabin] + wheels


def _pedestrian_parts(rng: np.random.Generator) -> list[Part]:
    shirt = np.array([[0.8, 0.3, 0.2], [0.2, 0.6, 0.7], [0.9, 0.8, 0.3]])[rng.integers(3)]
    return [
        Part(np.array([0.0, 0.0, -0.45]), np.array([0.12, 0.2, 0.45]), MAT_PLAIN, np.array([0.15, 0.17, 0.3])),
        Part(np.array([0.0, 0.0, 0.3]), np.array([0.15, 0.25, 0.3]), MAT_PLAIN, shirt),
        Part(np.array([0.0, 0.0, 0.77]), np.array([0.1, 0.09, 0.13]), MAT_PLAIN, np.array([0.85, 0.65, 0.5])),
    ]


def _linear_track(times: np.ndarray, start: np.ndarray, velocity: np.ndarray, yaw: float) -> np.ndarray:
    return np.stack([make_pose(rot_z(yaw), start + t * velocity) for t in times])


def build_street(seconds: float, fps: float, seed: int, ego_speed: float = 8.0) -> Street:
    """Deterministic street for ``seed`` covering the ego's drive of ``seconds`` at ``fps``."""
    rng = np.random.default_rng(seed)
    n = max(2, int(round(seconds * fps)))
    times = np.arange(n) / fps
    ego_poses = _linear_track(times, np.array([0.0, EGO_LANE_Y, 0.0]), np.array([ego_speed, 0.0, 0.0]), 0.0)
    x_end = ego_speed * times[-1]
    x_lo, x_hi = -40.0, x_end + 110.0

    static: list[StaticBox] = []
    for side in (1, -1):
        # Sidewalk slab (15 cm kerb) along the whole street.
        yc = side * (ROAD_HALF + SIDEWALK_OUTER) / 2
        static.append(StaticBox(np.array([(x_lo + x_hi) / 2, yc, 0.075]),
                                np.array([(x_hi - x_lo) / 2, (SIDEWALK_OUTER - ROAD_HALF) / 2, 0.075]),
                                MAT_SIDEWALK, np.array([0.62, 0.61, 0.58]), SEMANTIC["sidewalk"]))
        # Lamp posts give thin, parallax-rich structure.
        for x in np.arange(x_lo + 5 + (side > 0) * 7.5, x_hi, 15.0):
            static.append(StaticBox(np.array([x, side * 7.6, 2.15]), np.array([0.08, 0.08, 2.0]), MAT_PLAIN,
                                    np.array([0.25, 0.27, 0.3]), SEMANTIC["pole"]))
        # Building blocks with facades facing the street.
        x = x_lo
        palette = np.array([[0.72, 0.52, 0.4], [0.8, 0.76, 0.66], [0.55, 0.36, 0.3], [0.65, 0.68, 0.7],
                            [0.86, 0.82, 0.7], [0.45, 0.5, 0.55]])
        while x < x_hi:
            length = rng.uniform(9.0, 17.0)
            height = rng.uniform(7.0, 19.0)
            front = SIDEWALK_OUTER + rng.uniform(0.3, 1.5)
            depth = 10.0
            static.append(StaticBox(np.array([x + length / 2, side * (front + depth / 2), height / 2]),
                                    np.array([length / 2, depth / 2, height / 2]), MAT_FACADE,
                                    palette[rng.integers(len(palette))], SEMANTIC["building"]))
            x += length + rng.uniform(0.0, 3.0)

    actors: list[SynthActor] = []
    car_size = np.array([4.4, 1.8, 1.5])
    # Parked cars along the left kerb, alternately facing each way (static actors).
    for i, px in enumerate(np.arange(6.0, x_end + 60.0, 13.0)):
        yaw = 0.0 if i % 2 == 0 else np.pi
        pose = make_pose(rot_z(yaw), np.array([px + rng.uniform(-1.5, 1.5), 5.3, car_size[2] / 2]))
        actors.append(SynthActor(f"parked_{i}", "car", car_size.copy(), _car_parts(rng, *car_size),
                                 times[:1], pose[None], static=True))
    # An oncoming car in the adjacent lane (the one the GT removes) and one ahead in the right lane.
    start = np.array([x_end + 30.0, LANE_WIDTH / 2, car_size[2] / 2])
    actors.append(SynthActor("car_0", "car", car_size.copy(), _car_parts(rng, *car_size), times,
                             _linear_track(times, start, np.array([-7.0, 0.0, 0.0]), np.pi)))
    start = np.array([12.0, -1.5 * LANE_WIDTH, car_size[2] / 2])
    actors.append(SynthActor("car_1", "car", car_size.copy(), _car_parts(rng, *car_size), times,
                             _linear_track(times, start, np.array([ego_speed + 1.0, 0.0, 0.0]), 0.0)))
    ped_size = np.array([0.3, 0.5, 1.8])
    start = np.array([14.0, -8.6, 0.15 + ped_size[2] / 2])
    actors.append(SynthActor("ped_0", "pedestrian", ped_size, _pedestrian_parts(rng), times,
                             _linear_track(times, start, np.array([1.4, 0.0, 0.0]), 0.0)))
    return Street(static, actors, times, ego_poses, moving_actor_ids=["car_0", "car_1", "ped_0"])
