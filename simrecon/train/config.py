"""Training configuration and the presets (fast: CPU demo; default; quality)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..config_io import check_finite, from_dict, to_dict
from ..fields import ActorFieldConfig, BackgroundFieldConfig, ProposalFieldConfig
from ..render import SceneModelConfig
from ..scene.folder import SCENE_FILE, SceneInfo
from .free_columns import FreeColumnsConfig
from .lidar_prior import LidarPriorConfig


@dataclass
class TrainConfig:
    model: SceneModelConfig = field(default_factory=SceneModelConfig)
    steps: int = 20000  # stop at this step ...
    minutes: float = 60.0  # ... or after this much wall time, whichever comes first
    batch_rays: int = 4096  # camera rays per step (over all ranks)
    lidar_rays: int = 1024  # lidar rays per step when the log has lidar
    lidar_prior: LidarPriorConfig = field(default_factory=LidarPriorConfig)  # surfaces and colours from lidar first
    free_columns: FreeColumnsConfig = field(default_factory=FreeColumnsConfig)  # open air above the lidar's free space
    lr: float = 1e-2
    lr_final: float = 1e-3  # exponential decay over the budget (steps or minutes) ...
    lr_hold: float = 0.0  # ... after holding lr for this share of it
    table_lr_scale: float = 1.0  # hash tables learn at lr * this (MLPs at lr)
    # per-frame exposure (model.frame_exposure) learns at lr * this. 0.1 finds a +-28 % drift as well as 1.0 does
    # and lost 0.7 dB less on the default street's worst seed (benchmarks/RESULTS.md)
    exposure_lr_scale: float = 0.1
    box_lidar_range: float = 40.0  # metres: lidar returns that shape the full-resolution box (80: -0.8 dB)
    # metres (logs with lidar): the box's short axes grow to 0.3 of the longest, to at most this half extent. On a
    # 15 s drive (box 153 m long) 12 instead of 23: +0.8 dB at +2 m, lidar error -29 % (benchmarks/RESULTS.md)
    box_aspect_cap: float = 12.0
    near_frac: float = 0.02  # near plane as a fraction of the scene scale (~0.6 m on a street)
    # Lidar: the weights along a lidar ray must sit at the return. With the lidar prior on, the expected-range L1
    # is replaced by lidar_prior.beyond_weight (see LidarPriorConfig and lidar_loss_weights).
    depth_weight: float = 0.03  # expected lidar range vs measured (normalised units); 0.1-1.0 measured worse
    empty_weight: float = 0.02  # no weight before the return
    beyond_weight: float = 0.0  # no weight past the return
    floater_weight: float = 0.02  # lidar: rays opaque over the nearer half of the way to the return (trainer)
    opacity_weight: float = 0.01  # lidar: the ray ends at the return
    interlevel_weight: float = 1.0
    error_sampling: float = 0.5  # share of camera rays drawn by the running error map (train/error_map.py)
    error_tiles: int = 32  # error-map tiles across an image's width (square tiles)
    holdout: str = "every:8"
    log_every: int = 25
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"

    def check(self) -> None:
        """Refuse settings training cannot run with (ValueError naming them): every number finite, budgets and
        sizes positive, learning rates > 0."""
        counts = {"steps": self.steps, "batch_rays": self.batch_rays, "log_every": self.log_every,
                  "checkpoint_every": self.checkpoint_every}
        bad = next((k for k, v in counts.items() if v < 1), None)
        if bad is not None:
            raise ValueError(f"config.{bad}: must be >= 1 (got {counts[bad]})")
        if self.lidar_rays < 0:
            raise ValueError(f"config.lidar_rays: must be >= 0 (got {self.lidar_rays})")
        for key in ("minutes", "near_frac", "box_lidar_range"):
            if not getattr(self, key) > 0:
                raise ValueError(f"config.{key}: must be a finite number > 0 (got {getattr(self, key)})")
        for key in ("depth_weight", "empty_weight", "beyond_weight", "floater_weight", "opacity_weight",
                    "interlevel_weight"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"config.{key}: must be a finite number >= 0 (got {getattr(self, key)})")
        if not 0.0 <= self.lr_hold < 1.0 or min(self.lr, self.lr_final, self.table_lr_scale,
                                                 self.exposure_lr_scale) <= 0:
            raise ValueError(f"config: lr, lr_final, table_lr_scale and exposure_lr_scale must be > 0 and lr_hold in "
                             f"[0, 1), got {self.lr}, {self.lr_final}, {self.table_lr_scale}, "
                             f"{self.exposure_lr_scale} and {self.lr_hold}")
        if not 0.0 <= self.error_sampling <= 1.0 or self.error_tiles < 1:
            raise ValueError(f"config: error_sampling must be in [0, 1] and error_tiles >= 1, got "
                             f"{self.error_sampling} and {self.error_tiles}")
        if not self.box_aspect_cap > 0:
            raise ValueError(f"config: box_aspect_cap must be > 0 (metres), got {self.box_aspect_cap}")
        self.lidar_prior.check()
        self.free_columns.check()
        check_finite(self, "config")  # last: the checks above name their fields in their own words

    def lidar_loss_weights(self) -> tuple[float, float]:
        """(depth_weight, beyond_weight) that training uses. With the lidar prior the expected-range L1 is off: it
        undid the prior's surfaces within 25 steps (docs/reconstruction.md), and the weight past the return
        takes its place; this holds for the whole run, resumes included."""
        if self.lidar_prior.steps_for(self.minutes) > 0:
            return 0.0, self.lidar_prior.beyond_weight
        return self.depth_weight, self.beyond_weight

    def to_json(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        """Inverse of ``to_json`` (``config_io.from_dict``: unknown keys warned and dropped, missing keys at their
        defaults, wrong types a ValueError naming the field)."""
        return from_dict(cls, data, "config")


def scene_config(scene_dir: Path, info: SceneInfo) -> TrainConfig:
    """The training configuration ``scene.json`` records, checked; errors name the file and the field."""
    try:
        cfg = TrainConfig.from_json(info.config)
        cfg.check()
    except ValueError as exc:
        raise ValueError(f"{Path(scene_dir) / SCENE_FILE}: {exc}") from None
    return cfg


def preset(name: str) -> TrainConfig:
    """``fast`` (CPU, 10 minutes), ``default`` (GPU-sized), ``quality`` (bigger, longer), ``tiny`` (smoke tests)."""
    if name == "fast":
        model = SceneModelConfig(
            background=BackgroundFieldConfig(num_levels=16, log2_hashmap_size=19, max_resolution=2048),
            proposal=ProposalFieldConfig(num_levels=5, log2_hashmap_size=16, max_resolution=128),
            proposal_samples=48, samples=24, actor_samples=12, sky_texture=32)
        return TrainConfig(model=model, steps=100000, minutes=10.0, batch_rays=2048, lidar_rays=1024)
    if name == "tiny":  # smoke tests and CI: seconds, not quality
        model = SceneModelConfig(
            background=BackgroundFieldConfig(num_levels=4, log2_hashmap_size=12, max_resolution=64, hidden=16,
                                             color_layers=1),
            proposal=ProposalFieldConfig(num_levels=2, log2_hashmap_size=10, max_resolution=32, hidden=8),
            actor=ActorFieldConfig(num_levels=2, log2_hashmap_size=8, max_resolution=16, hidden=8),
            proposal_samples=16, samples=8, actor_samples=4, sky_texture=8)
        # 10 minutes, as fast: no automatic lidar prior (tests that want it ask for it)
        return TrainConfig(model=model, steps=20, minutes=10.0, batch_rays=256, lidar_rays=128, log_every=1,
                           checkpoint_every=5)
    if name == "default":
        return TrainConfig(model=SceneModelConfig(sky_texture=32), minutes=60.0, steps=30000)
    if name == "quality":
        model = SceneModelConfig(
            background=BackgroundFieldConfig(log2_hashmap_size=21, max_resolution=8192, hidden=128),
            proposal_samples=128, samples=64, actor_samples=24, sky_texture=32)
        return TrainConfig(model=model, minutes=180.0, steps=100000, batch_rays=8192, lidar_rays=2048)
    raise ValueError(f"--preset: expected fast, default, quality or tiny, got {name!r}")
