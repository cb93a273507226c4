"""``DriveEnv``: a scenario as a Gymnasium environment (``gymnasium.make("simrecon/Drive-v0", scenario=PATH)``).

Observation (a ``Dict`` space, keys from ``Sensors.spec``): ``<camera>/rgb`` uint8 [H, W, 3] (and
``<camera>/depth``, ``<camera>/instance`` when asked for), ``ego`` float32 [speed m/s, acceleration m/s^2, yaw
rate rad/s, steering angle rad], ``route`` float32 [N, 2]: the next N route points in the ego's vehicle frame
(x forward, y left, metres). Action: ``Box`` [acceleration m/s^2, steering rate rad/s] (``action="angle"``:
steering angle rad); actions outside it are clipped, non-finite ones refused. Reward: ``metrics.step_reward``.
``terminated``: collision / off road / route complete as configured; ``truncated``: the episode's time ran out.
``info``: time, progress, ttc, on_road, the step's events, and at the end ``metrics`` (``DriveMetrics``).
Deterministic: the same seed (and actions) gives the same episode.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"simrecon.sim.env needs gymnasium: pip install 'simrecon[sim]' ({exc})") from None

from .config import SimConfig, configure, open_plan
from .dynamics import action_bounds
from .metrics import drive_metrics, step_reward
from .policies import as_action
from .sensors import SensorConfig, Sensors
from .world import World

ENV_ID = "simrecon/Drive-v0"


def _configured(config: SimConfig | None, **options) -> SimConfig:
    """``config`` (copied) with the keyword options that are not None applied."""
    cfg = copy.deepcopy(config) if config is not None else SimConfig()
    where = {"dt": cfg.world, "duration_s": cfg.world, "cameras": cfg.sensors, "width": cfg.sensors,
             "height": cfg.sensors, "outputs": cfg.sensors, "images": cfg.sensors, "route_points": cfg.sensors}
    for key, value in options.items():
        if value is None:
            continue
        if key == "action":
            cfg.action = value
        else:
            setattr(where[key], key, list(value) if key in ("cameras", "outputs") else value)
    cfg.check()
    return cfg


class DriveEnv(gym.Env):
    """Closed-loop driving in a scenario (see the module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, scenario=None, *, plan=None, scene=None, config: SimConfig | None = None, dt=None,
                 duration_s=None, cameras=None, width=None, height=None, outputs=None, images=None, action=None,
                 route_points=None, renderer: str = "fast", render_mode: str | None = None):
        """``scenario``: a scenario file or scene folder (``config.open_plan``); or ``plan`` (a Plan); or
        ``scene`` (a RenderableScene or scene folder; with ``scenario``: the scene it renders on). The settings:
        ``config``, then the scenario's ``drive:`` section, then the keyword options."""
        options = dict(dt=dt, duration_s=duration_s, cameras=cameras, width=width, height=height, outputs=outputs,
                       images=images, action=action, route_points=route_points)
        _configured(config, **options)  # bad options are refused before the scene opens
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode: expected rgb_array or None, got {render_mode!r}")
        self.render_mode = render_mode
        if plan is None:
            source = scenario if scenario is not None else scene
            if source is None:
                raise ValueError("DriveEnv: give a scenario (file or scene folder), a plan or a scene")
            plan = open_plan(source, renderer, scene=scene if scenario is not None else None)
        self.plan = plan
        self.cfg = _configured(configure(config, plan), **options)  # config, the scenario's drive:, the options
        self.world = World(plan, self.cfg.world, self.cfg.vehicle, self.cfg.action, actors=self.cfg.actors)
        self.sensors = Sensors(plan, self.cfg.sensors)
        low, high = action_bounds(self.cfg.vehicle, self.cfg.action)
        self.action_space = spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)
        self.observation_space = spaces.Dict({key: spaces.Box(low=lo, high=hi, shape=shape, dtype=dtype)
                                              for key, (shape, dtype, lo, hi) in self.sensors.spec().items()})
        self._obs: dict[str, np.ndarray] | None = None
        self._view: Sensors | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self.world.reset(self.np_random)
        self._obs = self.sensors.observe(self.world)
        return self._obs, self._info([])

    def step(self, action) -> tuple[dict, float, bool, bool, dict]:
        a = np.clip(as_action(action), self.action_space.low, self.action_space.high)
        prev = self.world.record
        outcome = self.world.step(a)
        reward = step_reward(prev, outcome.record, outcome.events, self.world.dt, self.cfg.reward, self.cfg.score)
        self._obs = self.sensors.observe(self.world)
        info = self._info(outcome.events)
        if outcome.terminated or outcome.truncated:
            info["metrics"] = self.metrics().to_json()
        return self._obs, reward, outcome.terminated, outcome.truncated, info

    def metrics(self):
        """The ``DriveMetrics`` of the episode so far."""
        w = self.world
        return drive_metrics(w.history, w.events, w.dt, w.ended or "running", self.cfg.score)

    def _info(self, events) -> dict[str, Any]:
        rec = self.world.record
        return {"time": rec.time, "progress": rec.progress, "ttc": rec.ttc, "on_road": rec.on_road,
                "events": [e.to_json() for e in events]}

    def render(self) -> np.ndarray | None:
        """``rgb_array``: the first observed camera's RGB now (rendered for this when not observed)."""
        if self.render_mode is None or not self.world.history:
            return None
        if self._obs is not None and self.sensors.cameras and "rgb" in self.sensors.cfg.outputs:
            return self._obs[f"{self.sensors.cameras[0].name}/rgb"]
        if self._view is None:
            s = self.cfg.sensors
            first = list(s.cameras)[:1]
            self._view = Sensors(self.plan, SensorConfig(True, first, s.width, s.height, ["rgb"]))
        return next(iter(self._view.render(self.world).values()))
