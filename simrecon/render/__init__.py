"""Rendering: rays from cameras and lidar, sampling, compositing of background, actors and sky."""

from .model import (PointDensities, ProposalSamples, RaySamples, RenderResult, SceneModel, SceneModelConfig,
                    TrainingInputs)
from .rays import Rays, camera_directions, camera_rays, lidar_rays

__all__ = ["PointDensities", "ProposalSamples", "RaySamples", "Rays", "RenderResult", "SceneModel",
           "SceneModelConfig", "TrainingInputs", "camera_directions", "camera_rays", "lidar_rays"]
