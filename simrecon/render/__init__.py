"""Rendering: rays from cameras and lidar, sampling, compositing of background, actors and sky."""

from .model import SceneModel, SceneModelConfig
from .rays import Rays, camera_directions, camera_rays, lidar_rays

__all__ = ["Rays", "SceneModel", "SceneModelConfig", "camera_directions", "camera_rays", "lidar_rays"]
