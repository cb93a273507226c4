"""The simulated world, step by step: the ego (bicycle model), the scenario's actors (replayed at the current time,
or reactive: traffic.py; static ones stay), the route and the drivable area, and the events (collision,
off_road, route_complete, policy_error).

Built from a scenario ``Plan`` (``simrecon.compose``): its edited ego path at its first time is the start, the
same path sampled up to its last time is the route, its actors with their edits are the traffic. The drivable
area, by default, is the corridor of the route and of the moving vehicles' paths, ``road_margin`` metres either
side of each path (extended straight by ``road_extend`` at both ends): the drive log has no map, and where the
ego and traffic drove is drivable. The ego is on the road while all four corners of its box are in that area.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config_io import doc
from ..data.geometry import rot_z
from .dynamics import EgoState, VehicleConfig, action_bounds, heading, offset_along, rear_axle_pose, step
from .geometry import Box2D, DrivableArea, boxes_overlap, extend_polyline, time_to_collision
from .route import Route
from .traffic import ActorsConfig, ActorState, Traffic

VEHICLE_CLASSES = ["car", "truck", "bus", "van", "trailer", "vehicle", "motorcycle", "construction_vehicle",
                   "emergency_vehicle"]
EVENT_KINDS = ("collision", "off_road", "route_complete", "policy_error")


@dataclass
class WorldConfig:
    """The episode: its step, length, drivable area, what ends it, and the start."""

    dt: float = doc(0.1, "simulation step", unit="s")
    duration_s: float = doc(0.0, "episode length (0: the scenario's time span plus slack_s)", unit="s")
    slack_s: float = doc(2.0, "time added to the scenario's span by duration_s = 0, to make up for a slow start",
                         unit="s")
    road_margin: float = doc(2.5, "drivable corridor: this far either side of the route and the moving vehicles' "
                                  "paths", unit="m")
    road_extend: float = doc(10.0, "the corridor's paths continue straight this far beyond both ends", unit="m")
    vehicle_classes: list = doc(VEHICLE_CLASSES, "actor classes whose paths widen the drivable corridor",
                                unit="classes")
    end_on_collision: bool = doc(True, "a collision ends the episode", unit="switch")
    end_on_off_road: bool = doc(False, "leaving the drivable area ends the episode", unit="switch")
    end_on_route_complete: bool = doc(True, "reaching the route's end ends the episode", unit="switch")
    goal_tolerance: float = doc(1.0, "the route is complete this close to its end (along it)", unit="m")
    ttc_horizon: float = doc(5.0, "time to collision is looked for this far ahead (beyond: none)", unit="s")
    start_noise_lateral: float = doc(0.0, "standard deviation of a random sideways start offset (reset seed)",
                                     unit="m")
    start_noise_yaw: float = doc(0.0, "standard deviation of a random start heading offset (reset seed)", unit="rad")
    start_noise_speed: float = doc(0.0, "standard deviation of a random start speed offset (reset seed)", unit="m/s")
    road_polygons: list = doc([], "polygons [[x, y], ...] (world frame) added to the drivable area, e.g. a car park "
                                  "the logged paths do not cover", unit="m")

    def check(self) -> None:
        for name in ("dt", "road_margin", "goal_tolerance", "ttc_horizon"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"world.{name}: must be a positive number, got {v!r}")
        for name in ("duration_s", "slack_s", "road_extend", "start_noise_lateral", "start_noise_yaw",
                     "start_noise_speed"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"world.{name}: must be a number >= 0, got {v!r}")
        if self.dt > 10:
            raise ValueError(f"world.dt: at most 10 s, got {self.dt}")
        for k, poly in enumerate(self.road_polygons):
            try:
                p = np.asarray(poly, dtype=float)
            except (TypeError, ValueError):
                p = np.zeros((0, 0))
            if p.ndim != 2 or p.shape[1] != 2 or len(p) < 3 or not np.all(np.isfinite(p)):
                raise ValueError(f"world.road_polygons[{k}]: expected at least 3 finite [x, y] points")


@dataclass(frozen=True)
class Event:
    """Something that happened: ``kind`` (EVENT_KINDS) at ``time`` (s, the log's clock) after ``step`` steps."""

    kind: str
    time: float
    step: int
    actor: str | None = None  # collision: the actor hit
    message: str = ""

    def to_json(self) -> dict:
        return {"kind": self.kind, "time": self.time, "step": self.step, "actor": self.actor,
                "message": self.message}


@dataclass
class StepRecord:
    """The world after a step (step 0: the start)."""

    step: int
    time: float  # s
    state: EgoState
    pose: np.ndarray  # [4, 4] ego vehicle-to-world
    box_pose: np.ndarray  # [4, 4] ego box-to-world (centre of the box)
    actors: list[ActorState]
    contacts: list[str]  # actors whose boxes overlap the ego's
    on_road: bool
    route_s: float  # m along the route (the furthest reached)
    progress: float  # route_s / route length, 0..1; 1 within goal_tolerance of the end
    ttc: float  # s, math.inf when no collision within the horizon


@dataclass
class StepOutcome:
    record: StepRecord
    events: list[Event]
    terminated: bool  # collision, off road or route complete (as configured), or a policy error
    truncated: bool  # the episode's time ran out


def _corridors(route: Route, traffic: Traffic, classes: list, extend: float) -> list[np.ndarray]:
    """The route's polyline and every moving vehicle's path (sampled at the route's times), extended."""
    lines = [route.points]
    for a in traffic.actors:
        if a.cls not in classes:
            continue
        pts = [p[:2, 3] for p in (a.pose_at(float(t)) for t in route.times) if p is not None]
        if len(pts) >= 2 and np.max(np.linalg.norm(np.asarray(pts) - pts[0], axis=1)) > 1.0:
            lines.append(np.asarray(pts))
    return [extend_polyline(line, extend) for line in lines]


class World:
    """One scenario as a closed-loop episode: ``reset`` then ``step(action)`` until terminated or truncated."""

    def __init__(self, plan, cfg: WorldConfig | None = None, vehicle: VehicleConfig | None = None,
                 action_mode: str = "rate", polygons: list | None = None, actors: ActorsConfig | None = None):
        """``plan``: a ``simrecon.compose.Plan``. ``polygons`` [K, 2] (world metres) add to the drivable area;
        ``actors``: how the scenario's actors move (replayed by default)."""
        self.cfg = cfg or WorldConfig()
        self.vehicle = vehicle or VehicleConfig()
        self.cfg.check()
        self.vehicle.check()
        action_bounds(self.vehicle, action_mode)  # an unknown mode is refused here, not at the first step
        self.plan, self.action_mode = plan, action_mode
        self.t0, t_last = float(plan.times[0]), float(plan.times[-1])
        duration = self.cfg.duration_s if self.cfg.duration_s > 0 else (t_last - self.t0) + self.cfg.slack_s
        self.n_steps = max(1, int(math.floor(duration / self.cfg.dt + 1e-9)))
        ego = plan.log.ego
        extra = ego.timestamps if ego is not None else ()
        self.route = Route.from_fn(plan.ego_fn, self.t0, t_last, extra, self.vehicle.rear_axle_x)
        self.traffic = Traffic(list(plan.actors), actors or ActorsConfig())
        self.traffic.cfg.check()
        lines = _corridors(self.route, self.traffic, list(self.cfg.vehicle_classes), self.cfg.road_extend)
        self.area = DrivableArea(lines, self.cfg.road_margin, [np.asarray(p, float) for p in
                                                               list(polygons or []) + list(self.cfg.road_polygons)])
        self.history: list[StepRecord] = []
        self.events: list[Event] = []
        self.done = True
        self.ended: str | None = None  # why the episode ended: an event kind, or "time"

    @property
    def dt(self) -> float:
        return self.cfg.dt

    @property
    def record(self) -> StepRecord:
        """The world now."""
        return self.history[-1]

    @property
    def state(self) -> EgoState:
        return self.history[-1].state

    @property
    def time(self) -> float:
        return self.history[-1].time

    def time_of(self, k: int) -> float:
        return self.t0 + k * self.cfg.dt

    def start_state(self, rng: np.random.Generator | None = None) -> EgoState:
        """The scenario's ego at its first time (rear axle, logged speed), offset at random as configured."""
        pose = offset_along(self.plan.ego_fn(self.t0), self.vehicle.rear_axle_x)
        x, y, yaw = float(pose[0, 3]), float(pose[1, 3]), heading(pose)
        speed = self.route.speed_at_time(self.t0)
        c = self.cfg
        if rng is not None and (c.start_noise_lateral or c.start_noise_yaw or c.start_noise_speed):
            lat, dyaw, dv = rng.normal(size=3) * [c.start_noise_lateral, c.start_noise_yaw, c.start_noise_speed]
            x, y, yaw = x - lat * math.sin(yaw), y + lat * math.cos(yaw), yaw + dyaw
            speed = max(0.0, speed + dv)
        return EgoState(x, y, yaw, min(speed, self.vehicle.max_speed), 0.0)

    def reset(self, rng: np.random.Generator | None = None) -> StepRecord:
        self.history, self.events, self.done, self.ended = [], [], False, None
        self.traffic.reset(self.t0)
        rec = self._observe(0, self.start_state(rng), route_s=0.0)
        self.history.append(rec)
        return rec

    def ego_poses(self, state: EgoState, route_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(vehicle-to-world, ego box-to-world) [4, 4] of ``state``: height and tilt of the route at ``route_s``."""
        z, tilt = self.route.ground_at(route_s)
        axle = rear_axle_pose(state)
        axle[:3, :3] = rot_z(state.yaw) @ tilt
        axle[2, 3] = z
        vehicle = offset_along(axle, -self.vehicle.rear_axle_x)
        box = offset_along(vehicle, self.vehicle.box_center_x)
        box[:3, 3] += 0.5 * self.vehicle.height * box[:3, 2]
        return vehicle, box

    def _observe(self, k: int, state: EgoState, route_s: float) -> StepRecord:
        """The record of step ``k``: actors, contacts, road, progress and time to collision."""
        t = self.time_of(k)
        s_now, _ = self.route.project((state.x, state.y))
        length = self.route.length
        reached = float(np.clip(max(route_s, s_now), 0.0, length))
        pose, box_pose = self.ego_poses(state, float(np.clip(s_now, 0.0, length)))
        ego_box = Box2D.from_pose(box_pose, self.vehicle.size)
        actors = self.traffic.at(t)
        contacts = [a.id for a in actors if boxes_overlap(ego_box, a.box())]
        on_road = bool(np.all(self.area.contains(ego_box.corners())))
        v_ego = state.speed * np.array([math.cos(state.yaw), math.sin(state.yaw)])
        ttc = min((time_to_collision(ego_box, v_ego, a.box(), a.velocity, self.cfg.ttc_horizon) for a in actors),
                  default=math.inf)
        complete = reached >= length - self.cfg.goal_tolerance
        progress = 1.0 if complete or length <= 1e-9 else reached / length
        return StepRecord(k, t, state, pose, box_pose, actors, contacts, on_road, reached, progress, ttc)

    def _events(self, prev: StepRecord, rec: StepRecord) -> list[Event]:
        out = [Event("collision", rec.time, rec.step, a) for a in rec.contacts if a not in prev.contacts]
        if prev.on_road and not rec.on_road:
            out.append(Event("off_road", rec.time, rec.step))
        if self._complete(rec) and not self._complete(prev):
            out.append(Event("route_complete", rec.time, rec.step))
        return out

    def _complete(self, rec: StepRecord) -> bool:
        return rec.progress >= 1.0

    def step(self, action) -> StepOutcome:
        """Advance one ``dt`` with ``action`` (see ``dynamics.step``); the world after it and what happened."""
        if self.done:
            raise RuntimeError("the episode has ended: reset the world first")
        prev = self.history[-1]
        heading_now = np.array([math.cos(prev.state.yaw), math.sin(prev.state.yaw)])
        self.traffic.advance(prev.time, self.cfg.dt, Box2D.from_pose(prev.box_pose, self.vehicle.size),
                             prev.state.speed * heading_now)
        state = step(prev.state, action, self.vehicle, self.cfg.dt, self.action_mode)
        rec = self._observe(prev.step + 1, state, prev.route_s)
        self.history.append(rec)
        events = self._events(prev, rec)
        self.events += events
        kinds = {e.kind for e in events}
        terminated = (("collision" in kinds and self.cfg.end_on_collision)
                      or ("off_road" in kinds and self.cfg.end_on_off_road)
                      or ("route_complete" in kinds and self.cfg.end_on_route_complete))
        truncated = not terminated and rec.step >= self.n_steps
        self.done = terminated or truncated
        if terminated:
            self.ended = next(k for k in ("collision", "off_road", "route_complete") if k in kinds)
        elif truncated:
            self.ended = "time"
        return StepOutcome(rec, events, terminated, truncated)

    def fail(self, message: str) -> Event:
        """End the episode with a ``policy_error`` event (the policy raised or returned a bad action)."""
        rec = self.history[-1]
        event = Event("policy_error", rec.time, rec.step, None, message)
        self.events.append(event)
        self.done, self.ended = True, "policy_error"
        return event
