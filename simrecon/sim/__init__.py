"""Closed-loop simulation on any ``RenderableScene`` (docs/simulation.md): a kinematic-bicycle ego driven by a
policy through a scenario, its cameras rendered at its simulated pose, collisions, road departure, route progress
and a score; the Gymnasium environment ``simrecon/Drive-v0`` (registered on import when gymnasium is installed)."""

from .config import SimConfig, open_plan
from .drive import DriveResult, drive, run_episode
from .dynamics import EgoState, VehicleConfig
from .geometry import Box2D, DrivableArea, boxes_overlap, time_to_collision
from .metrics import DriveMetrics, RewardConfig, ScoreConfig, drive_metrics
from .policies import PolicyConfig, load_policy
from .route import Route
from .sensors import SensorConfig, Sensors
from .world import Event, World, WorldConfig

ENV_ID = "simrecon/Drive-v0"

try:
    import gymnasium as _gym
except ImportError:  # the sim extra is not installed: everything but DriveEnv works
    _gym = None
if _gym is not None and ENV_ID not in _gym.registry:
    _gym.register(id=ENV_ID, entry_point="simrecon.sim.env:DriveEnv")

__all__ = ["Box2D", "DrivableArea", "DriveMetrics", "DriveResult", "ENV_ID", "EgoState", "Event", "PolicyConfig",
           "RewardConfig", "Route", "ScoreConfig", "SensorConfig", "Sensors", "SimConfig", "VehicleConfig", "World",
           "WorldConfig", "boxes_overlap", "drive", "drive_metrics", "load_policy", "open_plan", "run_episode",
           "time_to_collision"]
