"""Neural fields of a driving scene: background, sky, per-actor fields, proposal density, appearance."""

from .actor import ActorField, ActorFieldConfig, evaluate_actor_fields
from .background import BackgroundField, BackgroundFieldConfig
from .contraction import SceneBox
from .lidar_heads import LidarHeadOutput, LidarHeads, LidarHeadsConfig
from .proposal import ProposalField, ProposalFieldConfig
from .sky import SkyField

__all__ = ["ActorField", "ActorFieldConfig", "BackgroundField", "BackgroundFieldConfig", "LidarHeadOutput",
           "LidarHeads", "LidarHeadsConfig", "ProposalField",
           "ProposalFieldConfig", "SceneBox", "SkyField", "evaluate_actor_fields"]
