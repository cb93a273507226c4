"""The synthetic street as a RenderableScene: exact renders for any camera, time and actor layout.

It is the reference every neural scene is scored against, and the analytic scene on which the
composer's labels can be checked exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..data.io import load_log
from ..data.model import DriveLog, Intrinsics
from ..data.lidar_model import LidarSensor
from ..data.scene_api import OUTPUTS, ActorPlacement, LidarOutput, RenderOutput
from .generate import SynthConfig
from .lidar import trace_sweep
from .render import render_camera, world_with
from .scene import build_street


class GroundTruthScene:
    """Exact renderer of a log written by ``simrecon synth`` (rebuilt from its ``synth_config``)."""

    def __init__(self, log: DriveLog, cfg: SynthConfig):
        self._log = log
        self.cfg = cfg
        self.street = build_street(cfg.seconds, cfg.fps, cfg.seed, cfg.ego_speed)
        self._actors = {a.id: a for a in self.street.actors}

    @classmethod
    def from_log(cls, log_dir: str | Path) -> "GroundTruthScene":
        """Open ``OUT/log`` of a synthetic drive; refuses logs the generator did not write."""
        log = load_log(log_dir)
        raw = json.loads((Path(log_dir) / "transforms.json").read_text()) if Path(log_dir).is_dir() else {}
        if "synth_config" not in raw:
            raise ValueError(f"{log_dir}: transforms.json: synth_config: missing; not a synthetic log")
        return cls(log, SynthConfig(**raw["synth_config"]))

    @property
    def log(self) -> DriveLog:
        return self._log

    def _placed(self, placements: Mapping[str, ActorPlacement]) -> list:
        placed = []
        for k, name in enumerate(placements, start=1):
            p = placements[name]
            if p.source not in self._actors:
                raise KeyError(f"no actor {p.source!r} in the synthetic street")
            placed.append((self._actors[p.source], np.asarray(p.pose, dtype=float), k))
        return placed

    def render_lidar(self, sensor: LidarSensor, s2w: np.ndarray, time: float,
                     placements: Mapping[str, ActorPlacement]) -> LidarOutput:
        """The generator's sweep (synth/lidar.py) for any sensor, pose, time and actor layout: exact ranges,
        intensity and ray drop; the same pose and time as a logged sweep give that sweep."""
        sweep = trace_sweep(world_with(self.street, self._placed(placements)), sensor, s2w, time, self.cfg.seed)
        return LidarOutput(sensor, sweep.range_m, sweep.returned, sweep.intensity, sweep.instance, list(placements))

    def render(self, c2w: np.ndarray, intrinsics: Intrinsics, time: float,
               placements: Mapping[str, ActorPlacement], outputs: Sequence[str] = OUTPUTS) -> RenderOutput:
        names = list(placements)
        placed = self._placed(placements)
        view = render_camera(world_with(self.street, placed), np.asarray(c2w, dtype=float), intrinsics,
                             self.cfg.seed, self.cfg.antialias)
        return RenderOutput(
            rgb=view.rgb.astype(np.float32) / 255.0 if "rgb" in outputs else None,
            depth=view.depth if "depth" in outputs else None,
            instance=view.instance.astype(np.int32) if "instance" in outputs else None,
            instance_names=names,
        )
