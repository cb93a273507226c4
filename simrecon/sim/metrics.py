"""How well a drive went: the metrics of an episode, its score, and the per-step reward of the environment.

Score (in the spirit of NAVSIM's PDM score and HUGSIM's HD-Score: hard gates times a weighted mean)::

    score = [no collision] x [never off road]
            x (w_p * route_completion + w_t * [min_ttc >= ttc_threshold] + w_c * [comfortable])
            / (w_p + w_t + w_c)

with ``comfortable`` = max |longitudinal acceleration| <= max_long_accel, max |lateral acceleration| <=
max_lat_accel and max |jerk| <= max_jerk, and the weights and limits of ``ScoreConfig`` (default 5, 5, 2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..config_io import doc
from .world import Event, StepRecord


@dataclass
class ScoreConfig:
    """The score's thresholds and weights."""

    ttc_threshold: float = doc(1.0, "time to collision below this fails the TTC term", unit="s")
    max_long_accel: float = doc(4.0, "comfort: largest absolute longitudinal acceleration", unit="m/s^2")
    max_lat_accel: float = doc(4.0, "comfort: largest absolute lateral acceleration", unit="m/s^2")
    max_jerk: float = doc(4.0, "comfort: largest absolute longitudinal jerk", unit="m/s^3")
    weight_progress: float = doc(5.0, "weight of route completion in the score's mean", unit="factor")
    weight_ttc: float = doc(5.0, "weight of the TTC term in the score's mean", unit="factor")
    weight_comfort: float = doc(2.0, "weight of the comfort term in the score's mean", unit="factor")

    def check(self) -> None:
        for name in ("ttc_threshold", "max_long_accel", "max_lat_accel", "max_jerk", "weight_progress", "weight_ttc",
                     "weight_comfort"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"score.{name}: must be a number >= 0, got {v!r}")
        if self.weight_progress + self.weight_ttc + self.weight_comfort <= 0:
            raise ValueError("score.weight_progress: the score's weights add up to 0")


@dataclass
class RewardConfig:
    """The environment's reward per step: the sum of these terms."""

    progress: float = doc(1.0, "per metre of new progress along the route", unit="1/m")
    collision: float = doc(-50.0, "per actor newly hit", unit="1/collision")
    off_road: float = doc(-5.0, "per second outside the drivable area", unit="1/s")
    comfort: float = doc(-0.1, "per second, times the accelerations' excess over the score's comfort limits "
                               "(longitudinal plus lateral)", unit="1/(m/s^2 s)")

    def check(self) -> None:
        for name in ("progress", "collision", "off_road", "comfort"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"reward.{name}: must be a finite number, got {v!r}")


@dataclass
class DriveMetrics:
    """The metrics of one episode (JSON: ``to_json``; ``None`` where there is nothing to report)."""

    collision: bool  # the ego's box overlapped an actor's
    collision_actor: str | None  # the first actor hit
    collision_time: float | None  # s, the log's clock: the first step at which the boxes overlapped
    off_road: bool  # a corner of the ego's box left the drivable area
    off_road_time: float | None  # s
    route_completion: float  # 0..1, the furthest point reached along the route / its length
    min_ttc: float | None  # s, smallest time to collision at constant velocities; None: none within the horizon
    max_long_accel: float  # m/s^2, largest |longitudinal acceleration|
    max_lat_accel: float  # m/s^2, largest |speed^2 x curvature|
    max_jerk: float  # m/s^3, largest |change of longitudinal acceleration| / dt
    distance_m: float  # metres driven
    duration_s: float  # simulated seconds
    steps: int
    ended: str  # route_complete, collision, off_road, policy_error or time
    policy_error: str | None  # the policy's failure, if it failed
    ttc_ok: bool  # min_ttc >= ttc_threshold (or none)
    comfort_ok: bool
    score: float  # 0..1, see the module docstring

    def to_json(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def comfort(history: list[StepRecord], dt: float) -> tuple[float, float, float]:
    """(max |longitudinal accel|, max |lateral accel|, max |jerk|) over the simulated steps (jerk from the
    second step: the start's acceleration is not known)."""
    steps = history[1:]
    lon = np.array([r.state.accel for r in steps])
    lat = np.array([r.state.lateral_accel for r in steps])
    jerk = np.diff(lon) / dt if len(lon) > 1 else np.zeros(0)
    peak = lambda a: float(np.max(np.abs(a))) if len(a) else 0.0  # noqa: E731
    return peak(lon), peak(lat), peak(jerk)


def drive_metrics(history: list[StepRecord], events: list[Event], dt: float, ended: str,
                  cfg: ScoreConfig | None = None) -> DriveMetrics:
    """The metrics of an episode from its records (``World.history``) and events."""
    cfg = cfg or ScoreConfig()
    first = {}
    for e in events:
        first.setdefault(e.kind, e)
    hit, off, err = first.get("collision"), first.get("off_road"), first.get("policy_error")
    lon, lat, jerk = comfort(history, dt)
    ttc = min((r.ttc for r in history), default=math.inf)
    xy = np.array([[r.state.x, r.state.y] for r in history])
    ttc_ok = ttc >= cfg.ttc_threshold
    comfort_ok = lon <= cfg.max_long_accel and lat <= cfg.max_lat_accel and jerk <= cfg.max_jerk
    progress = float(history[-1].progress)
    weights = cfg.weight_progress + cfg.weight_ttc + cfg.weight_comfort
    mean = (cfg.weight_progress * progress + cfg.weight_ttc * ttc_ok + cfg.weight_comfort * comfort_ok) / weights
    score = float(mean) * (hit is None) * (off is None)
    return DriveMetrics(
        collision=hit is not None, collision_actor=hit.actor if hit else None,
        collision_time=hit.time if hit else None, off_road=off is not None, off_road_time=off.time if off else None,
        route_completion=progress, min_ttc=float(ttc) if math.isfinite(ttc) else None, max_long_accel=lon,
        max_lat_accel=lat, max_jerk=jerk,
        distance_m=float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1))) if len(xy) > 1 else 0.0,
        duration_s=history[-1].time - history[0].time, steps=history[-1].step, ended=ended,
        policy_error=err.message if err else None, ttc_ok=bool(ttc_ok), comfort_ok=bool(comfort_ok), score=score)


def step_reward(prev: StepRecord, rec: StepRecord, events: list[Event], dt: float, cfg: RewardConfig,
                score: ScoreConfig) -> float:
    """The reward of the step from ``prev`` to ``rec`` (RewardConfig's terms)."""
    excess = (max(0.0, abs(rec.state.accel) - score.max_long_accel)
              + max(0.0, abs(rec.state.lateral_accel) - score.max_lat_accel))
    hits = sum(1 for e in events if e.kind == "collision")
    return float(cfg.progress * (rec.route_s - prev.route_s) + cfg.collision * hits
                 + cfg.off_road * dt * (not rec.on_road) + cfg.comfort * dt * excess)
