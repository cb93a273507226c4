"""Training: fit a scene model to a drive log (checkpoints, resume, time budget, DDP)."""

from .config import TrainConfig, preset
from ..scene.folder import SceneInfo, read_scene_info
from .trainer import StopSignal, Trainer, TrainingDiverged, TrainingInterrupted, TrainResult, TrainState, reconstruct

__all__ = ["SceneInfo", "StopSignal", "TrainConfig", "TrainResult", "TrainState", "Trainer", "TrainingDiverged",
           "TrainingInterrupted", "preset", "read_scene_info", "reconstruct"]
