"""What a run decides about the log before it builds the model: per-frame exposure (``model.frame_exposure``,
train/exposure_auto.py) and the camera-only recipe (``priors.camera_only.mode``, train/camera_only.py).

A fresh run turns each ``auto`` into ``on`` or ``off``, logs one line per decision with its reason (the measured
value and the threshold for exposure), and writes the resolved values into the configuration it records in
scene.json, so that a resumed run, eval and render see what training used. A resumed run keeps what it started
with: exposure as its checkpoint holds it, the recipe as scene.json records it (``auto`` there is a scene from
before the recipe, which ran without it).
"""

from __future__ import annotations

from ..logs import get_logger
from .camera_only import camera_only_decision
from .config import TrainConfig
from .exposure_auto import exposure_decision

log = get_logger("simrecon.train.trainer")


def decide(cfg: TrainConfig, data, state: dict | None, rank: int) -> None:
    """Resolve ``cfg.model.frame_exposure`` and ``cfg.priors.camera_only.mode`` in place for a run on ``data`` (a
    ``TrainData``); ``state``: the checkpoint a resumed run continues (None: a fresh run)."""
    if state is not None:
        exposure, why_e = "exposure.log_gain" in state.get("model", {}), "resumed: as the checkpoint has it"
        recipe = cfg.priors.camera_only.mode == "on"
        why_c = "resumed: as scene.json records it"
    else:
        exposure, why_e = exposure_decision(cfg.model.frame_exposure, data)
        recipe, why_c = camera_only_decision(cfg.priors.camera_only, data.has_lidar)
    cfg.model.frame_exposure = "on" if exposure else "off"
    cfg.priors.camera_only.mode = "on" if recipe else "off"
    if rank == 0:
        log.info("per-frame exposure %s (%s)", cfg.model.frame_exposure, why_e)
        log.info("camera-only recipe %s (%s)", cfg.priors.camera_only.mode, why_c)
