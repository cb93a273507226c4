"""The actors as the world samples them: replayed along their (edited) tracks, or reactive.

Reactive actors (``actors.reactive``) keep their paths but not their timing: each vehicle has its own clock on its
track, which runs at the logged rate while the road ahead is clear. When the ego's box is ahead of a vehicle, in
its lane (its width plus ``lane_margin`` either side, along its heading) and within ``range``, the vehicle follows
the Intelligent Driver Model (``idm.py``) behind the ego, its desired speed the logged one; its clock then runs
slower (speed / logged speed), so it brakes and falls behind its log, and catches up (never faster than its log)
once the ego is out of the way. Pedestrians, cyclists and parked vehicles replay as logged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config_io import doc
from .geometry import Box2D
from .idm import idm_accel

VELOCITY_DT = 0.05  # s, half the window of the actors' finite-difference velocities


@dataclass
class ActorsConfig:
    """How the scenario's actors move."""

    reactive: bool = doc(False, "vehicles brake for the ego in their lane ahead (IDM) instead of replaying "
                                "through it; they keep their paths", unit="switch")
    classes: list = doc(["car", "truck", "bus", "van", "trailer", "vehicle", "motorcycle", "construction_vehicle",
                         "emergency_vehicle"], "actor classes that react", unit="classes")
    idm_max_accel: float = doc(1.5, "reactive IDM: maximum acceleration", unit="m/s^2")
    idm_comfort_brake: float = doc(2.0, "reactive IDM: comfortable deceleration", unit="m/s^2")
    idm_headway: float = doc(1.5, "reactive IDM: desired time headway", unit="s")
    idm_min_gap: float = doc(2.0, "reactive IDM: bumper-to-bumper gap when stopped", unit="m")
    max_brake: float = doc(6.0, "reactive actors' hardest deceleration", unit="m/s^2")
    lane_margin: float = doc(0.5, "the ego is in an actor's lane when its box comes this close to the actor's width "
                                  "laid along the actor's heading", unit="m")
    range: float = doc(50.0, "an ego farther ahead than this is ignored", unit="m")

    def check(self) -> None:
        for name in ("idm_max_accel", "idm_comfort_brake", "idm_headway", "idm_min_gap", "max_brake", "range"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"actors.{name}: must be a positive number, got {v!r}")
        if isinstance(self.lane_margin, bool) or not (isinstance(self.lane_margin, (int, float))
                                                      and math.isfinite(self.lane_margin) and self.lane_margin >= 0):
            raise ValueError(f"actors.lane_margin: must be a number >= 0, got {self.lane_margin!r}")


@dataclass(frozen=True)
class ActorState:
    """An actor at one instant: box-to-world ``pose`` [4, 4], ``size`` [3] (m), ground ``velocity`` [2] (m/s)."""

    id: str
    source: str  # the scene actor it is drawn as
    cls: str
    size: np.ndarray
    pose: np.ndarray
    velocity: np.ndarray

    def box(self) -> Box2D:
        return Box2D.from_pose(self.pose, self.size)


def _state(a, t: float, rate: float = 1.0) -> ActorState | None:
    """``a`` (PlannedActor-like) at its track time ``t``, moving ``rate`` times as fast as logged."""
    pose = a.pose_at(t)
    if pose is None:
        return None
    before, after = a.pose_at(t - VELOCITY_DT), a.pose_at(t + VELOCITY_DT)
    p0, t0 = (pose, t) if before is None else (before, t - VELOCITY_DT)
    p1, t1 = (pose, t) if after is None else (after, t + VELOCITY_DT)
    vel = (p1[:2, 3] - p0[:2, 3]) / (t1 - t0) if t1 > t0 else np.zeros(2)
    return ActorState(a.id, a.source, a.cls, np.asarray(a.size, float), np.asarray(pose, float), vel * rate)


def ego_ahead(actor: ActorState, ego: Box2D, ego_velocity: np.ndarray, cfg: ActorsConfig) -> tuple[float, float] | None:
    """(gap m from the actor's front to the ego's box, the ego's speed along the actor's heading m/s) when the ego
    is ahead in the actor's lane within range; else None."""
    yaw = math.atan2(actor.pose[1, 0], actor.pose[0, 0])
    c, s = math.cos(yaw), math.sin(yaw)
    rel = ego.corners() - actor.pose[:2, 3]
    along, across = rel @ np.array([c, s]), rel @ np.array([-s, c])
    half_len, half_wid = actor.size[0] / 2, actor.size[1] / 2 + cfg.lane_margin
    gap = float(along.min()) - half_len
    if along.max() <= half_len or across.min() > half_wid or across.max() < -half_wid or gap > cfg.range:
        return None
    return max(gap, 0.0), float(ego_velocity @ np.array([c, s]))


@dataclass
class Traffic:
    """The plan's actors; ``at(t)`` gives them at world time ``t`` (reactive ones at their own clocks)."""

    actors: list = field(default_factory=list)  # PlannedActor-like: id, source, cls, size, pose_at(t)
    cfg: ActorsConfig = field(default_factory=ActorsConfig)
    clock: dict = field(default_factory=dict)  # reactive actor id -> its track time (s)
    speed: dict = field(default_factory=dict)  # reactive actor id -> its speed (m/s)

    def reset(self, t0: float) -> None:
        self.clock, self.speed = {}, {}
        if not self.cfg.reactive:
            return
        for a in self.actors:
            now = _state(a, t0)
            if a.cls in self.cfg.classes and now is not None and float(np.linalg.norm(now.velocity)) > 0.1:
                self.clock[a.id], self.speed[a.id] = t0, float(np.linalg.norm(now.velocity))

    def at(self, t: float) -> list[ActorState]:
        out = []
        for a in self.actors:
            if a.id in self.clock:
                logged = _state(a, self.clock[a.id])
                v_log = float(np.linalg.norm(logged.velocity)) if logged is not None else 0.0
                state = _state(a, self.clock[a.id], self.speed[a.id] / v_log if v_log > 0.1 else 1.0)
            else:
                state = _state(a, t)
            if state is not None:
                out.append(state)
        return out

    def advance(self, t: float, dt: float, ego: Box2D, ego_velocity: np.ndarray) -> None:
        """Move the reactive actors' clocks from world time ``t`` on by ``dt``, with the ego at ``ego`` (at ``t``):
        behind the ego, IDM; on a clear road, the logged speed, or catching up at ``idm_max_accel`` when behind
        the log. A clock never runs ahead of the world's."""
        c = self.cfg
        for a in self.actors:
            if a.id not in self.clock:
                continue
            now = _state(a, self.clock[a.id])
            if now is None:  # before or past its track: its clock runs on
                self.clock[a.id] = min(self.clock[a.id] + dt, t + dt)
                continue
            v_log, v = float(np.linalg.norm(now.velocity)), self.speed[a.id]
            lead = ego_ahead(now, ego, ego_velocity, c)
            if lead is not None:
                acc = idm_accel(v, v_log, lead, c.idm_max_accel, c.idm_comfort_brake, c.idm_headway, c.idm_min_gap,
                                max_brake=c.max_brake)
                v_new = float(np.clip(v + acc * dt, 0.0, v_log))
            elif self.clock[a.id] < t - 1e-9:
                v_new = min(v_log, v + c.idm_max_accel * dt)
            else:
                v_new = v_log
            self.speed[a.id] = v_new
            rate = 0.5 * (v + v_new) / v_log if v_log > 0.1 else 1.0
            self.clock[a.id] = min(self.clock[a.id] + dt * rate, t + dt)
