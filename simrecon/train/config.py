"""Training configuration and the presets (fast: CPU demo; default; quality)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..fields import ActorFieldConfig, BackgroundFieldConfig, ProposalFieldConfig
from ..logs import get_logger
from ..render import SceneModelConfig
from .free_columns import FreeColumnsConfig
from .lidar_prior import LidarPriorConfig

log = get_logger(__name__)


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
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        """Inverse of ``to_json``. Keys this version does not know (a scene written by another version) are
        dropped with a warning; missing keys take their defaults; a value of the wrong type is a ValueError
        naming it (``config.model.background.hidden: expected an integer, got '16'``)."""
        if not isinstance(data, dict):
            raise ValueError(f"config: expected an object, got {type(data).__name__}")
        m = _section(data, "model", "config")
        model = SceneModelConfig(
            background=_known(BackgroundFieldConfig, _section(m, "background", "config.model"), "model.background"),
            proposal=_known(ProposalFieldConfig, _section(m, "proposal", "config.model"), "model.proposal"),
            actor=_known(ActorFieldConfig, _section(m, "actor", "config.model"), "model.actor"),
            **_fields(SceneModelConfig, {k: v for k, v in m.items() if k not in ("background", "proposal", "actor")},
                      "model"),
        )
        prior = _known(LidarPriorConfig, _section(data, "lidar_prior", "config"), "lidar_prior")
        columns = _known(FreeColumnsConfig, _section(data, "free_columns", "config"), "free_columns")
        rest = {k: v for k, v in data.items() if k not in ("model", "lidar_prior", "free_columns")}
        return cls(model=model, lidar_prior=prior, free_columns=columns, **_fields(cls, rest, ""))


def check_finite(obj: object, where: str) -> None:
    """ValueError naming the first float field of the dataclass ``obj`` (nested ones included) that is NaN or
    infinite: ``where.field: must be a finite number (got nan)``. A NaN passes every ``x > 0`` style test that
    is written as ``x <= 0: refuse``, so this runs before them."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        name = f"{where}.{f.name}"
        if dataclasses.is_dataclass(value):
            check_finite(value, name)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name}: must be a finite number (got {value})")


def _typed(f: dataclasses.Field, value: object, name: str) -> object:
    """``value`` for the field ``f`` when it has the type of the field's default (an int for a float field
    too); a ValueError naming it otherwise (a scene.json edited by hand, or corrupt)."""
    default = f.default
    if default is dataclasses.MISSING or default is None:
        return value
    kind = type(default)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():  # e.g. steps = 1e5 set in Python
        return int(value)
    if not ok:
        expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
            kind, kind.__name__)
        raise ValueError(f"{name}: expected {expected}, got {value!r}"[:200])
    return value


def _section(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ValueError(f"{where}.{key}: expected an object, got {value!r}"[:200])
    return dict(value)


def _fields(cls, data: dict, where: str) -> dict:
    """The entries of ``data`` that are fields of the dataclass ``cls``, type-checked against their defaults;
    one warning names the others."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        keys = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        log.warning("scene config: ignoring settings this version does not know: %s", keys)
    return {k: _typed(fields[k], v, f"config.{where + '.' if where else ''}{k}") for k, v in data.items()
            if k in fields}


def _known(cls, data: dict, where: str):
    return cls(**_fields(cls, data, where))


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
