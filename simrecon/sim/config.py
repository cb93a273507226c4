"""Every setting of a simulation, grouped (``simrecon drive --set GROUP.KEY=VALUE``), and how to get the scenario
``Plan`` a simulation runs on from a scenario file, a scene folder or a scene object."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..compose.scenario import Plan, ScenarioSpec, load_scenario, resolve
from ..compose.scenes import open_scene
from ..config_io import doc, set_field
from ..data.scene_api import RenderableScene
from .dynamics import ACTION_MODES, VehicleConfig
from .exec_policy import ExecConfig
from .metrics import RewardConfig, ScoreConfig
from .policies import PolicyConfig
from .sensors import SensorConfig
from .traffic import ActorsConfig
from .world import WorldConfig


@dataclass
class SimConfig:
    """A closed-loop simulation: the episode, the ego, what it observes, the built-in drivers, score and reward."""

    world: WorldConfig = doc(WorldConfig, "the episode: step, length, drivable area, what ends it")
    vehicle: VehicleConfig = doc(VehicleConfig, "the ego vehicle: geometry and limits")
    actors: ActorsConfig = doc(ActorsConfig, "the scenario's actors: replayed, or reactive (IDM behind the ego)")
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
        self.actors.check()
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


def flat_settings(mapping: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """``{"world": {"dt": 0.2}, "sensors.width": 160}`` -> ``[("world.dt", 0.2), ("sensors.width", 160)]``."""
    out: list[tuple[str, Any]] = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        out += flat_settings(value, name + ".") if isinstance(value, dict) else [(name, value)]
    return out


def apply_settings(cfg: SimConfig, settings: dict | list[tuple[str, Any]], where: str) -> SimConfig:
    """``cfg`` with ``settings`` (dotted names, or nested mappings, to values) set and checked; a bad name or
    value is a one-line ValueError starting with ``where``."""
    items = flat_settings(settings) if isinstance(settings, dict) else list(settings)
    for key, value in items:
        try:
            set_field(cfg, key, value, where)
        except ValueError as exc:
            raise ValueError(str(exc).replace("simrecon config lists them", "docs/simulation.md lists them")) from None
    try:
        cfg.check()
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    return cfg


def configure(cfg: SimConfig | None, plan: Plan, settings: dict | list | None = None) -> SimConfig:
    """The settings of a drive of ``plan``: ``cfg`` (copied; default ``SimConfig()``), then the scenario's
    ``drive:`` section, then ``settings`` (the command line's ``--set``)."""
    out = copy.deepcopy(cfg) if cfg is not None else SimConfig()
    if plan.spec.drive:
        apply_settings(out, plan.spec.drive, f"{plan.file}: drive")
    if settings:
        apply_settings(out, settings, "--set")
    out.check()
    return out
