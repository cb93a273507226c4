"""The composer's lidar output: a sweep of the log's lidar per scenario time, seen from the (edited) ego's pose.

The sensor is the log's first lidar sensor: its model from ``lidar_sensors`` (format v1.1; a v1 log gets
``DEFAULT_SENSOR``, marked estimated) and its mount on the vehicle from its first sweep (sensor-to-world times
the inverse of the logged ego pose then). At each scenario time the sweep is rendered through the scene's
``render_lidar`` (``data.scene_api.LidarScene``) with the scenario's actors: removed actors return nothing (the
background behind them does), inserted and moved ones return points where they now are, mesh assets included
(ray cast, ``mesh/render.py``). Each point carries the
scenario-wide instance id (0: background) and its semantic id; intensity only where the scene models it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..data.geometry import invert_pose
from ..data.lidar_model import LidarSensor, SweepLayout, uniform_sensor
from ..data.scene_api import ActorPlacement, LidarScene
from .labels import semantic_id
from .scenario import LIDAR_OUTPUT, Plan, ScenarioError

DEFAULT_SENSOR = replace(uniform_sensor(32, 1024), estimated=True)  # a 32-beam spinning lidar, 10 Hz, 0.5-80 m


@dataclass
class LidarPlan:
    """Which sensor the scenario's sweeps come from and where it sits on the vehicle."""

    name: str
    sensor: LidarSensor
    sensor_to_vehicle: np.ndarray  # [4, 4]


@dataclass
class ComposedSweep:
    """One rendered sweep with its labels."""

    index: int  # time index into plan.times
    time: float
    points: np.ndarray  # [N, 3|4] float32 in the sensor frame (x, y, z[, intensity]); 4 columns when intensity known
    layout: SweepLayout  # beam and column of each point
    instance: np.ndarray  # [N] uint16: 0 background, k = plan.actors[k - 1]
    semantic: np.ndarray  # [N] uint8 (labels.SEMANTIC_CLASSES)
    sensor_to_world: np.ndarray  # [4, 4]
    record: dict  # JSON-ready: timestamp, poses, rays and returns, boxes in the sensor frame


def lidar_plan(plan: Plan) -> LidarPlan:
    """The sweeps' sensor; a ``ScenarioError`` naming ``outputs`` when the scenario cannot have lidar."""
    log = plan.log
    base = getattr(plan.scene, "base", plan.scene)  # mesh assets ride on a base scene (mesh/render.py)
    if not isinstance(plan.scene, LidarScene) or not isinstance(base, LidarScene):
        raise ScenarioError(plan.file, "outputs", f"{LIDAR_OUTPUT}: the scene {plan.scene_path} does not render lidar")
    names = list(log.lidar_sensors) or [s.sensor for s in log.lidar]
    if not names or not any(s.sensor == names[0] for s in log.lidar):
        raise ScenarioError(plan.file, "outputs", f"{LIDAR_OUTPUT}: the log {log.root} has no lidar sweeps, so no "
                                                  "lidar mount is known")
    first = next(s for s in log.lidar if s.sensor == names[0])
    mount = invert_pose(plan.logged_ego_fn(first.timestamp)) @ first.s2w
    return LidarPlan(names[0], log.lidar_sensors.get(names[0], DEFAULT_SENSOR), mount)


def _boxes(plan: Plan, placed: list, s2w: np.ndarray, instance: np.ndarray) -> list[dict]:
    w2s = invert_pose(s2w)
    counts = np.bincount(instance, minlength=len(plan.actors) + 1)
    out = []
    for a, pose in placed:
        box = w2s @ pose
        out.append({"id": a.id, "instance_id": a.instance_id, "class": a.cls, "semantic_id": semantic_id(a.cls),
                    "size": [float(x) for x in a.size], "box_sensor": {"pose": box.tolist()},
                    "points": int(counts[a.instance_id])})
    return out


def render_sweep(plan: Plan, lp: LidarPlan, k: int) -> ComposedSweep:
    """The sweep at ``plan.times[k]`` from the ego's (edited) pose, with the scenario's actors."""
    t = float(plan.times[k])
    ego = plan.ego_fn(t)
    s2w = ego @ lp.sensor_to_vehicle
    placed = [(a, pose) for a in plan.actors for pose in [a.pose_at(t)] if pose is not None]
    placements = {a.id: ActorPlacement(a.source, pose) for a, pose in placed}
    out = plan.scene.render_lidar(lp.sensor, s2w, t, placements)
    ids = {a.id: a.instance_id for a in plan.actors}
    lut = np.zeros(len(out.instance_names) + 1, np.uint16)
    lut[1:] = [ids[name] for name in out.instance_names]
    instance = lut[out.instance[out.returned]]
    sem_lut = np.zeros(len(plan.actors) + 1, np.uint8)
    sem_lut[1:] = [semantic_id(a.cls) for a in plan.actors]
    pts = out.points()
    if out.intensity is not None:
        pts = np.concatenate([pts, out.intensity[out.returned, None]], axis=1)
    record = {"scenario": plan.name, "index": k, "timestamp": t, "sensor": lp.name,
              "sensor_to_world": s2w.tolist(), "ego_to_world": ego.tolist(),
              "sensor_to_vehicle": lp.sensor_to_vehicle.tolist(), "rays": int(len(out.returned)),
              "returns": int(out.returned.sum()), "intensity": out.intensity is not None,
              "objects": _boxes(plan, placed, s2w, instance)}
    return ComposedSweep(k, t, pts.astype(np.float32), out.layout(), instance, sem_lut[instance], s2w, record)
