"""Rendering: rays from cameras and lidar, sampling, compositing of background, actors and sky."""

from .model import (ActorView, BackgroundView, PointDensities, ProposalSamples, RaySamples, RenderResult, SceneModel,
                    SceneModelConfig, TrainingInputs)
from .query import BoxOwners, PointQuery, boxes_holding
from .rays import Rays, camera_directions, camera_rays, lidar_rays

__all__ = ["ActorView", "BackgroundView", "BoxOwners", "PointDensities", "PointQuery", "ProposalSamples", "RaySamples", "Rays", "RenderResult", "SceneModel",
           "SceneModelConfig", "TrainingInputs", "boxes_holding", "camera_directions", "camera_rays", "lidar_rays"]
