"""Synthetic street generator: a drive log with exact ground truth for views the log never recorded."""

from .generate import REMOVED_ACTOR, SHIFTS, SynthConfig, count_units, generate
from .gt_scene import GroundTruthScene

__all__ = ["REMOVED_ACTOR", "SHIFTS", "GroundTruthScene", "SynthConfig", "count_units", "generate"]
