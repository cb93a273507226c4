"""Every setting of a simulation, grouped (``simrecon drive --set GROUP.KEY=VALUE``), and how to get the scenario
``Plan`` a simulation runs on from a scenario file, a scene folder or a scene object."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..compose.scenario import Plan, ScenarioSpec, load_scenario, resolve
from ..compose.scenes import open_scene
from ..config_io import doc
from ..data.scene_api import RenderableScene
from .dynamics import ACTION_MODES, VehicleConfig
from .exec_policy import ExecConfig
from .metrics import RewardConfig, ScoreConfig
from .policies import PolicyConfig
from .sensors import SensorConfig
from .world import WorldConfig


@dataclass
class SimConfig:
    """A closed-loop simulation: the episode, the ego, what it observes, the built-in drivers, score and reward."""

    world: WorldConfig = doc(WorldConfig, "the episode: step, length, drivable area, what ends it")
    vehicle: VehicleConfig = doc(VehicleConfig, "the ego vehicle: geometry and limits")
    sensors: SensorConfig = doc(SensorConfig, "the observation: cameras, size, outputs, route ahead")
    policy: PolicyConfig = doc(PolicyConfig, "gains of the built-in drivers (replay, lane-follow, idle)")
    exec: ExecConfig = doc(ExecConfig, "exec:COMMAND policies: the process's time limits and what it is sent")
    score: ScoreConfig = doc(ScoreConfig, "the score's thresholds and weights")
    reward: RewardConfig = doc(RewardConfig, "the environment's reward terms")
    action: str = doc("rate", "action mode: rate = [acceleration, steering rate], angle = [acceleration, steering "
                              "angle]", unit="mode")

    def check(self) -> None:
        if self.action not in ACTION_MODES:
            raise ValueError(f"action: expected one of {', '.join(ACTION_MODES)}, got {self.action!r}")
        self.world.check()
        self.vehicle.check()
        self.policy.check()
        self.exec.check()
        self.score.check()
        self.reward.check()


def open_plan(source, renderer: str = "fast", scene: RenderableScene | None = None) -> Plan:
    """The plan of ``source``: a ``Plan`` as is; a scenario file (docs/scenarios.md); a scene folder (a
    reconstruction with scene.json, or a synthetic drive log), driven as logged with all its cameras; or a
    ``RenderableScene``. ``scene`` overrides the scene a scenario file names."""
    if isinstance(source, Plan):
        return source
    if isinstance(source, RenderableScene) and not isinstance(source, (str, Path)):
        return resolve(ScenarioSpec(scene="<scene>"), source, Path("<scene>"), Path("."))
    path = Path(source)
    if path.is_dir():
        opened = scene if scene is not None else open_scene(path, renderer)
        return resolve(ScenarioSpec(scene=str(path)), opened, path, path.resolve())
    return load_scenario(path, scene=scene, renderer=renderer)
