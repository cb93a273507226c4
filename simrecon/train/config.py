"""Training configuration and the presets (fast: CPU demo; default; quality).

``TrainConfig`` groups its settings by what they decide: ``budget`` (when training stops, logs and saves),
``sampling`` (the rays of a step and the scene box), ``losses`` (their weights), ``schedule`` (learning rates),
``priors`` (the lidar prior and the free-columns prior); ``model``, ``holdout``, ``seed`` and ``device`` stay at
the top. Every field carries its help and unit (``config_io.doc``): ``simrecon config`` and docs/config.md list
them by dotted name (``budget.steps``), the names ``simrecon reconstruct --set KEY=VALUE`` takes.

Scenes written before the groups keep their settings flat (``{"steps": 100, "lr": 0.01, "lidar_prior": {..}}``):
``TrainConfig.from_json`` moves those keys into their groups (``FLAT_KEYS``), and ``--set`` takes the old names.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config_io import FieldDoc, check_finite, describe, doc, from_dict, sections, set_field, to_dict
from ..fields import ActorFieldConfig, BackgroundFieldConfig, ProposalFieldConfig
from ..logs import get_logger
from ..render import SceneModelConfig
from ..render.exposure import exposure_mode, legacy_exposure
from ..scene.folder import SCENE_FILE, SceneInfo
from .camera_only import CameraOnlyConfig
from .free_columns import FreeColumnsConfig
from .head_fit import HeadFitConfig
from .lidar_prior import LidarPriorConfig

log = get_logger("simrecon.config")


@dataclass
class BudgetConfig:
    steps: int = doc(20000, "stop at this step, or at budget.minutes, whichever comes first", unit="steps")
    minutes: float = doc(60.0, "stop after this much wall time (the lidar prior's included), or at budget.steps",
                         unit="min")
    log_every: int = doc(25, "a metrics.jsonl record (and a progress update) every this many steps", unit="steps")
    checkpoint_every: int = doc(500, "write checkpoint.pt, what --resume continues from, every this many steps",
                                unit="steps")


@dataclass
class SamplingConfig:
    batch_rays: int = doc(4096, "camera rays per step (over all ranks)", unit="rays")
    lidar_rays: int = doc(1024, "lidar rays per step when the log has lidar (0: none)", unit="rays")
    lidar_head_rays: int = doc(256, "rays per step of the training sweeps, returned or dropped, that the learned lidar "
                                    "heads (model.lidar_heads) learn from; rendered without gradient (0: heads not "
                                    "trained)", unit="rays")
    error_sampling: float = doc(0.5, "share of the camera rays drawn by the running error map (train/error_map.py), "
                                     "the rest uniformly", unit="fraction")
    error_tiles: int = doc(32, "error-map tiles across an image's width (square tiles)", unit="tiles")
    near_frac: float = doc(0.02, "near plane as a fraction of the scene box's mean half extent (~0.6 m on a street)",
                           unit="fraction")
    box_lidar_range: float = doc(40.0, "lidar returns within this range of the sensor shape the full-resolution "
                                       "scene box (80: -0.8 dB)", unit="m")
    # On a 15 s drive (box 153 m long) 12 instead of 23: +0.8 dB at +2 m, lidar error -29 % (benchmarks/RESULTS.md)
    box_aspect_cap: float = doc(12.0, "logs with lidar: the box's short axes grow to 0.3 of the longest, to at most "
                                      "this half extent", unit="m")
    rolling_shutter: bool = doc(True, "pose each camera ray at its own line's exposure time where the log gives the "
                                      "camera's readout (drive-log v1.2 rolling_shutter); eval renders held-out "
                                      "frames the same way", unit="-")


@dataclass
class LossesConfig:
    # Lidar: the weights along a lidar ray must sit at the return. With the lidar prior on, the expected-range L1
    # is replaced by priors.lidar_prior.beyond_weight (see LidarPriorConfig and TrainConfig.lidar_loss_weights).
    depth_weight: float = doc(0.03, "lidar: L1 of the expected range against the measured one (normalised units; "
                                    "0.1-1.0 measured worse); off with the lidar prior", unit="factor")
    empty_weight: float = doc(0.02, "lidar: weight along the ray before the return (less a margin)", unit="factor")
    # Lidar and cameras disagree by a few centimetres on real logs (calibration, timing, moving actors), and a
    # return's range noise grows with range: weight within this margin of the return is never penalised.
    lidar_margin: float = doc(0.02, "lidar: the margin around a return that the empty and beyond terms leave free, "
                                    "as a fraction of the range (plus 10 % of the near plane)", unit="fraction")
    # 0.005 bounds the weight on both sides of the return, as the prior's runs do: without it the empty-space
    # term alone pushed the surfaces ~5 cm behind the returns (benchmarks/RESULTS.md, 2026-12-07)
    beyond_weight: float = doc(0.005, "lidar: weight past the return (plus a margin); with the lidar prior "
                                      "priors.lidar_prior.beyond_weight instead", unit="factor")
    floater_weight: float = doc(0.02, "lidar: rays opaque over the nearer half of the way to the return "
                                      "(background and proposal)", unit="factor")
    opacity_weight: float = doc(0.01, "lidar: the ray's opacity must reach 1 (the ray ends at the return)",
                                unit="factor")
    interlevel_weight: float = doc(1.0, "the proposal's weights must cover the background's (interlevel loss)",
                                   unit="factor")
    # The heads' inputs are detached from the fields: these scale only the heads' own gradients (0 turns one off).
    intensity_weight: float = doc(1.0, "learned lidar intensity: squared error on returned rays (intensity in 0..1)",
                                  unit="factor")
    drop_weight: float = doc(1.0, "learned ray drop: binary cross-entropy of returned vs dropped rays (logs with a "
                                  "beam/column layout)", unit="factor")


@dataclass
class ScheduleConfig:
    lr: float = doc(1e-2, "Adam learning rate at the start (the MLPs; tables and exposure scale it)",
                    unit="step size")
    lr_final: float = doc(1e-3, "learning rate at the budget's end (steps or minutes): exponential decay from lr",
                          unit="step size")
    lr_hold: float = doc(0.0, "share of the budget that holds lr before the decay starts", unit="fraction")
    table_lr_scale: float = doc(1.0, "the hash tables learn at lr times this (the MLPs at lr)", unit="factor")
    # 0.1 finds a +-28 % drift as well as 1.0 does and lost 0.7 dB less on the default street's worst seed
    # (benchmarks/RESULTS.md)
    exposure_lr_scale: float = doc(0.1, "the per-frame exposure (model.frame_exposure) learns at lr times this",
                                   unit="factor")


@dataclass
class PriorsConfig:
    lidar_prior: LidarPriorConfig = doc(LidarPriorConfig, "surfaces and colours from the lidar, by point queries "
                                                          "before the first step (train/lidar_prior.py)")
    free_columns: FreeColumnsConfig = doc(FreeColumnsConfig, "open air above the lidar's free space near the "
                                                             "ground, up to the box's top (train/free_columns.py)")
    camera_only: CameraOnlyConfig = doc(CameraOnlyConfig, "the recipe for logs without lidar: a distortion loss "
                                                          "on the camera rays (train/camera_only.py)")


@dataclass
class TrainConfig:
    model: SceneModelConfig = doc(SceneModelConfig, "the scene model: fields, samples along a ray, sky, exposure "
                                                    "(render/model.py)")
    budget: BudgetConfig = doc(BudgetConfig, "when training stops, and how often it logs and saves")
    sampling: SamplingConfig = doc(SamplingConfig, "the rays of a training step, the near plane and the scene box")
    losses: LossesConfig = doc(LossesConfig, "weights of the losses beside the photometric one")
    schedule: ScheduleConfig = doc(ScheduleConfig, "learning rates and their decay over the budget")
    head_fit: HeadFitConfig = doc(HeadFitConfig, "the learned lidar heads' last fit on the final fields "
                                                 "(train/head_fit.py)")
    priors: PriorsConfig = doc(PriorsConfig, "priors from the lidar besides its ray losses, and the camera-only "
                                             "recipe for logs without it")
    holdout: str = doc("every:8", "frames kept out of training for eval: every:N (the middle frame of each N), "
                                  "none, or a file listing image paths", unit="-")
    seed: int = doc(0, "seed of the initial weights and the rays drawn (rank r: seed + r)", unit="-")
    device: str = doc("auto", "auto, cpu or cuda (auto: cuda when there is one)", unit="-")

    def check(self) -> None:
        """Refuse settings training cannot run with (ValueError naming them): every number finite, budgets and
        sizes positive, learning rates > 0."""
        b, s, w, r = self.budget, self.sampling, self.losses, self.schedule
        counts = {"budget.steps": b.steps, "sampling.batch_rays": s.batch_rays, "budget.log_every": b.log_every,
                  "budget.checkpoint_every": b.checkpoint_every}
        bad = next((k for k, v in counts.items() if v < 1), None)
        if bad is not None:
            raise ValueError(f"config.{bad}: must be >= 1 (got {counts[bad]})")
        if s.lidar_rays < 0:
            raise ValueError(f"config.sampling.lidar_rays: must be >= 0 (got {s.lidar_rays})")
        if s.lidar_head_rays < 0:
            raise ValueError(f"config.sampling.lidar_head_rays: must be >= 0 (got {s.lidar_head_rays})")
        self.head_fit.check()
        for key, value in (("budget.minutes", b.minutes), ("sampling.near_frac", s.near_frac),
                           ("sampling.box_lidar_range", s.box_lidar_range)):
            if not value > 0:
                raise ValueError(f"config.{key}: must be a finite number > 0 (got {value})")
        for f in dataclasses.fields(w):
            if not getattr(w, f.name) >= 0:
                raise ValueError(f"config.losses.{f.name}: must be a finite number >= 0 (got {getattr(w, f.name)})")
        if not 0.0 <= r.lr_hold < 1.0 or min(r.lr, r.lr_final, r.table_lr_scale, r.exposure_lr_scale) <= 0:
            raise ValueError(f"config.schedule: lr, lr_final, table_lr_scale and exposure_lr_scale must be > 0 and "
                             f"lr_hold in [0, 1), got {r.lr}, {r.lr_final}, {r.table_lr_scale}, "
                             f"{r.exposure_lr_scale} and {r.lr_hold}")
        if not 0.0 <= s.error_sampling <= 1.0 or s.error_tiles < 1:
            raise ValueError(f"config.sampling: error_sampling must be in [0, 1] and error_tiles >= 1, got "
                             f"{s.error_sampling} and {s.error_tiles}")
        if not s.box_aspect_cap > 0:
            raise ValueError(f"config.sampling.box_aspect_cap: must be > 0 (metres), got {s.box_aspect_cap}")
        self.priors.lidar_prior.check("config.priors.lidar_prior")
        self.priors.free_columns.check("config.priors.free_columns")
        self.priors.camera_only.check("config.priors.camera_only")
        exposure_mode(self.model.frame_exposure, "config.model.frame_exposure")
        self.model.poses.check("config.model.poses")
        self.model.tracks.check("config.model.tracks")
        self.model.lidar_heads.check("config.model.lidar_heads")
        check_finite(self, "config")  # last: the checks above name their fields in their own words

    def lidar_loss_weights(self) -> tuple[float, float]:
        """(depth_weight, beyond_weight) that training uses. With the lidar prior the expected-range L1 is off: it
        undid the prior's surfaces within 25 steps (docs/reconstruction.md), and the weight past the return
        takes its place; this holds for the whole run, resumes included."""
        prior = self.priors.lidar_prior
        if prior.steps_for(self.budget.minutes) > 0:
            return 0.0, prior.beyond_weight
        return self.losses.depth_weight, self.losses.beyond_weight

    def to_json(self) -> dict:
        return to_dict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        """Inverse of ``to_json`` (``config_io.from_dict``: unknown keys warned and dropped, missing keys at their
        defaults, wrong types a ValueError naming the field); the flat keys of scenes written before the groups
        are moved into them first (``regroup``), and a switch-valued ``model.frame_exposure`` (true / false) is read
        as on / off."""
        data = regroup(data)
        if isinstance(data, dict) and "model" in data:
            data = {**data, "model": legacy_exposure(data["model"])}
        return from_dict(cls, data, "config")


# The settings before the groups, flat at the top of scene.json's config, and where each is now.
FLAT_KEYS: dict[str, str] = {
    "steps": "budget.steps", "minutes": "budget.minutes", "log_every": "budget.log_every",
    "checkpoint_every": "budget.checkpoint_every",
    "batch_rays": "sampling.batch_rays", "lidar_rays": "sampling.lidar_rays",
    "error_sampling": "sampling.error_sampling", "error_tiles": "sampling.error_tiles",
    "near_frac": "sampling.near_frac", "box_lidar_range": "sampling.box_lidar_range",
    "box_aspect_cap": "sampling.box_aspect_cap",
    "depth_weight": "losses.depth_weight", "empty_weight": "losses.empty_weight",
    "beyond_weight": "losses.beyond_weight", "floater_weight": "losses.floater_weight",
    "opacity_weight": "losses.opacity_weight", "interlevel_weight": "losses.interlevel_weight",
    "lr": "schedule.lr", "lr_final": "schedule.lr_final", "lr_hold": "schedule.lr_hold",
    "table_lr_scale": "schedule.table_lr_scale", "exposure_lr_scale": "schedule.exposure_lr_scale",
    "lidar_prior": "priors.lidar_prior", "free_columns": "priors.free_columns",
}

# Settings a resumed run cannot change, by dotted prefix, and why.
FIXED_ON_RESUME: dict[str, str] = {
    "model": "the model keeps the parts it started with",
    "holdout": "the held-out frames are fixed at the start",
    "priors": "the priors are set up before the first step",
    "sampling.box_lidar_range": "the scene box is fixed at the start",
    "sampling.box_aspect_cap": "the scene box is fixed at the start",
}


def regroup(data: Any, where: str = "config") -> Any:
    """``data`` (a config as scene.json keeps it) with the old flat keys (``FLAT_KEYS``) moved into their groups; a
    flat key whose grouped one is given too is dropped with a warning. ``data`` itself is left as it was."""
    if not isinstance(data, dict) or not any(k in FLAT_KEYS for k in data):
        return data
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items() if k not in FLAT_KEYS}
    for key, value in data.items():
        if key not in FLAT_KEYS:
            continue
        group, name = FLAT_KEYS[key].split(".")
        section = out.setdefault(group, {})
        if not isinstance(section, dict):
            continue  # from_dict names the group
        if name in section:
            log.warning("ignoring %s.%s: %s.%s is given", where, key, where, FLAT_KEYS[key])
        else:
            section[name] = value
    return out


def setting_name(key: str) -> str:
    """A setting's dotted name, old flat names mapped to their group's: ``steps`` -> ``budget.steps``,
    ``lidar_prior.steps`` -> ``priors.lidar_prior.steps``."""
    head, dot, rest = key.strip().partition(".")
    return FLAT_KEYS[head] + dot + rest if head in FLAT_KEYS else key.strip()


def apply_setting(cfg: TrainConfig, key: str, value: Any, where: str, text: bool = False,
                  resume: bool = False) -> tuple[str, Any]:
    """Set ``key`` (dotted, or an old flat name) on ``cfg`` (``config_io.set_field``; ``text``: a command-line
    string); with ``resume`` the settings of ``FIXED_ON_RESUME`` are refused. Returns (dotted name, value set);
    a ValueError starting with ``where`` otherwise."""
    name = setting_name(key)
    value = set_field(cfg, name, value, where, text=text)
    fixed = next((p for p in FIXED_ON_RESUME if name == p or name.startswith(p + ".")), None) if resume else None
    if fixed is not None:
        raise ValueError(f"{where} {name}: cannot change when resuming ({FIXED_ON_RESUME[fixed]})")
    return name, value


def parse_settings(cfg: TrainConfig, items: list[str], resume: bool = False, where: str = "--set") -> dict:
    """``KEY=VALUE`` items (``simrecon reconstruct --set``) applied to ``cfg`` in order; returns them as
    {dotted name: value}. One-line ValueErrors name the item."""
    settings: dict = {}
    for item in items:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise ValueError(f"{where} {item!r}: expected KEY=VALUE, e.g. budget.minutes=20 (simrecon config "
                             f"lists the keys)")
        name, value = apply_setting(cfg, key, raw, where, text=True, resume=resume)
        settings[name] = value
    return settings


def scene_config(scene_dir: Path, info: SceneInfo) -> TrainConfig:
    """The training configuration ``scene.json`` records, checked; errors name the file and the field."""
    try:
        cfg = TrainConfig.from_json(info.config)
        cfg.check()
    except ValueError as exc:
        raise ValueError(f"{Path(scene_dir) / SCENE_FILE}: {exc}") from None
    return cfg


PRESETS = ("fast", "default", "quality", "tiny")


def preset(name: str) -> TrainConfig:
    """``fast`` (CPU, 10 minutes), ``default`` (GPU-sized), ``quality`` (bigger, longer), ``tiny`` (smoke tests)."""
    if name == "fast":
        model = SceneModelConfig(
            background=BackgroundFieldConfig(num_levels=16, log2_hashmap_size=19, max_resolution=2048),
            proposal=ProposalFieldConfig(num_levels=5, log2_hashmap_size=16, max_resolution=128),
            proposal_samples=48, samples=24, actor_samples=12, sky_texture=32)
        return TrainConfig(model=model, budget=BudgetConfig(steps=100000, minutes=10.0),
                           sampling=SamplingConfig(batch_rays=2048, lidar_rays=1024))
    if name == "tiny":  # smoke tests and CI: seconds, not quality
        model = SceneModelConfig(
            background=BackgroundFieldConfig(num_levels=4, log2_hashmap_size=12, max_resolution=64, hidden=16,
                                             color_layers=1),
            proposal=ProposalFieldConfig(num_levels=2, log2_hashmap_size=10, max_resolution=32, hidden=8),
            actor=ActorFieldConfig(num_levels=2, log2_hashmap_size=8, max_resolution=16, hidden=8),
            proposal_samples=16, samples=8, actor_samples=4, sky_texture=8)
        # 10 minutes, as fast: no automatic lidar prior (tests that want it ask for it)
        return TrainConfig(model=model, budget=BudgetConfig(steps=20, minutes=10.0, log_every=1, checkpoint_every=5),
                           sampling=SamplingConfig(batch_rays=256, lidar_rays=128, lidar_head_rays=128),
                           head_fit=HeadFitConfig(rays=1024, steps=10, batch=512))
    if name == "default":
        return TrainConfig(model=SceneModelConfig(sky_texture=32), budget=BudgetConfig(minutes=60.0, steps=30000))
    if name == "quality":
        model = SceneModelConfig(
            background=BackgroundFieldConfig(log2_hashmap_size=21, max_resolution=8192, hidden=128),
            proposal_samples=128, samples=64, actor_samples=24, sky_texture=32)
        return TrainConfig(model=model, budget=BudgetConfig(minutes=180.0, steps=100000),
                           sampling=SamplingConfig(batch_rays=8192, lidar_rays=2048))
    raise ValueError(f"--preset: expected fast, default, quality or tiny, got {name!r}")


def format_value(value: Any) -> str:
    """A setting's value as ``--set`` takes it: JSON for numbers and switches, strings as they are."""
    return value if isinstance(value, str) else json.dumps(value)


def config_markdown() -> str:
    """docs/config.md: every setting of ``TrainConfig`` by section, with its unit, default, the presets that change
    it and its help (``simrecon config --markdown``)."""
    presets = {name: {d.name: d.value for d in describe(preset(name))} for name in PRESETS}
    lines = [_MARKDOWN_HEAD]
    for group, rows in sections(TrainConfig):
        title, about = (group.name, group.help) if group is not None else ("Top level", "what is not in a group")
        lines += [f"## {title}", "", about[:1].upper() + about[1:] + ".", ""]
        if rows:
            lines += ["| setting | unit | default | presets | help |", "| --- | --- | --- | --- | --- |"]
            lines += [_markdown_row(d, presets) for d in rows] + [""]
    return "\n".join(lines)


def _markdown_row(d: FieldDoc, presets: dict[str, dict]) -> str:
    changed = ", ".join(f"{p} {format_value(v[d.name])}" for p, v in presets.items() if v[d.name] != d.default)
    cells = [f"`{d.name}`", d.unit, f"`{format_value(d.default)}`", changed, d.help]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


_MARKDOWN_HEAD = """# Training configuration

Every setting of a reconstruction, by its dotted name, with its unit, its default, the presets that change it
and what it does. Generated by `simrecon config --markdown > docs/config.md` from the help and unit each field
declares (`simrecon/train/config.py` and the configurations it holds); tests/test_config_docs.py checks that
it lists every field. `simrecon config --preset NAME` prints the same with a preset's values.

- `simrecon reconstruct LOG -o SCENE --set KEY=VALUE` (repeatable) sets any of them, e.g.
  `--set budget.minutes=20 --set model.samples=48 --set priors.lidar_prior.steps=60`. Values are checked as
  `scene.json` is: a key that does not exist or a value of the wrong type is one line naming it (exit code 2).
- With `--resume`, `budget.*` (extend a finished run) and the other training settings may change; `model.*`,
  `holdout`, `priors.*` and the scene box (`sampling.box_lidar_range`, `sampling.box_aspect_cap`) may not.
- Scenes written before the groups keep these settings flat in `scene.json` (`"steps"`, `"lr"`,
  `"lidar_prior"`, ...): they load as they were written, and `--set` takes the old names too (`steps=100`
  is `budget.steps=100`, `lidar_prior.steps=60` is `priors.lidar_prior.steps=60`).
- Units: `-` for names, switches and seeds; `fraction` for a share in [0, 1]; `factor` for a dimensionless
  multiplier (loss weights, learning-rate scales); `normalised` for lengths in the scene's normalised units.
"""
