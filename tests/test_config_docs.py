"""Configuration as documentation: every setting carries its help and unit, ``describe`` and docs/config.md list
them all, ``--set`` reaches any of them by dotted name, and scenes written before the groups still load."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from simrecon.cli.main import main
from simrecon.config_io import describe, doc, set_field
from simrecon.train import TrainConfig, preset, read_scene_info, reconstruct
from simrecon.train.config import FLAT_KEYS, PRESETS, apply_setting, config_markdown, parse_settings

DOCS = Path(__file__).resolve().parents[1] / "docs"

# The settings as scene.json kept them before the groups (flat), every one at a value that is not its default.
OLD_FLAT = {
    "model": {"samples": 12, "background": {"hidden": 24}},
    "steps": 123, "minutes": 4.5, "batch_rays": 512, "lidar_rays": 64,
    "lidar_prior": {"steps": 7, "points": 1024}, "free_columns": {"weight": 0.05, "cell": 0.8},
    "lr": 0.02, "lr_final": 0.002, "lr_hold": 0.25, "table_lr_scale": 2.0, "exposure_lr_scale": 0.5,
    "box_lidar_range": 60.0, "box_aspect_cap": 20.0, "near_frac": 0.03,
    "depth_weight": 0.1, "empty_weight": 0.05, "beyond_weight": 0.01, "floater_weight": 0.04, "opacity_weight": 0.02,
    "interlevel_weight": 0.5, "error_sampling": 0.25, "error_tiles": 16, "holdout": "none",
    "log_every": 5, "checkpoint_every": 50, "seed": 3, "device": "cpu",
}
# Groups' settings added after the groups: they never had a flat name (not in FLAT_KEYS).
AFTER_THE_GROUPS = {"camera_only", "lidar_head_rays", "intensity_weight", "drop_weight", "rolling_shutter",
                    "lidar_margin"}
GROUPED = {
    "budget": {"steps": 123, "minutes": 4.5, "log_every": 5, "checkpoint_every": 50},
    "sampling": {"batch_rays": 512, "lidar_rays": 64, "error_sampling": 0.25, "error_tiles": 16, "near_frac": 0.03,
                 "box_lidar_range": 60.0, "box_aspect_cap": 20.0, "rolling_shutter": True, "lidar_head_rays": 256},
    "losses": {"depth_weight": 0.1, "empty_weight": 0.05, "beyond_weight": 0.01, "floater_weight": 0.04,
               "opacity_weight": 0.02, "interlevel_weight": 0.5, "intensity_weight": 1.0, "drop_weight": 1.0,
               "lidar_margin": 0.02},
    "schedule": {"lr": 0.02, "lr_final": 0.002, "lr_hold": 0.25, "table_lr_scale": 2.0, "exposure_lr_scale": 0.5},
}


def _config_classes(cls: type, seen: dict | None = None) -> dict[type, str]:
    """Every configuration dataclass reachable from ``cls`` (by its fields' defaults), with a dotted path to it."""
    seen = {cls: ""} if seen is None else seen
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        if dataclasses.is_dataclass(default) and type(default) not in seen:
            seen[type(default)] = f"{seen[cls]}{f.name}."
            _config_classes(type(default), seen)
    return seen


def _leaves(data: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in data.items():
        out.update(_leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_every_field_of_every_config_carries_a_one_line_help_and_its_unit():
    classes = _config_classes(TrainConfig)
    names = {c.__name__ for c in classes}
    assert {"BudgetConfig", "SamplingConfig", "LossesConfig", "ScheduleConfig", "PriorsConfig", "LidarPriorConfig",
            "FreeColumnsConfig", "SceneModelConfig", "BackgroundFieldConfig", "ProposalFieldConfig",
            "ActorFieldConfig"} <= names
    for cls, path in classes.items():
        for f in dataclasses.fields(cls):
            where = f"{cls.__name__}.{f.name} ({path}{f.name})"
            help_text = f.metadata.get("help", "")
            assert help_text.strip() and "\n" not in help_text and len(help_text) < 200, where
            if not dataclasses.is_dataclass(getattr(cls(), f.name)):  # a group has a help line, its fields units
                assert f.metadata.get("unit", "").strip(), where


def test_doc_makes_fields_with_their_defaults_and_factories():
    @dataclasses.dataclass
    class Inner:
        x: float = doc(1.5, "an x", unit="m")

    @dataclasses.dataclass
    class Outer:
        inner: Inner = doc(Inner, "the inner one")
        items: list = doc([1, 2], "some items", unit="-")

    a, b = Outer(), Outer()
    assert a.inner.x == 1.5 and a.inner is not b.inner and a.items == [1, 2] and a.items is not b.items
    assert dataclasses.fields(Inner)[0].metadata == {"help": "an x", "unit": "m"}
    rows = describe(Outer, groups=True)
    assert [(d.name, d.type, d.unit) for d in rows] == [("inner", "group", ""), ("inner.x", "float", "m"),
                                                         ("items", "list", "-")]


@pytest.mark.parametrize("name", PRESETS)
def test_describe_lists_every_setting_with_its_value_and_default(name):
    cfg = preset(name)
    rows = describe(cfg)
    saved = _leaves(cfg.to_json())
    assert [d.name for d in rows] == list(saved)  # every leaf of scene.json's config, in its order
    defaults = _leaves(TrainConfig().to_json())
    for d in rows:
        assert d.value == saved[d.name] and d.default == defaults[d.name], d.name
        assert d.help and d.unit and d.type == type(d.default).__name__, d.name
    groups = {d.name for d in describe(cfg, groups=True) if d.type == "group"}
    assert {"model", "model.background", "budget", "sampling", "losses", "schedule", "priors",
            "priors.lidar_prior", "priors.free_columns"} <= groups


def test_docs_config_md_lists_every_setting_and_is_up_to_date():
    text = (DOCS / "config.md").read_text()
    for d in describe(TrainConfig, groups=True):
        assert f"`{d.name}`" in text or f"## {d.name}" in text, f"docs/config.md lacks {d.name}"
        assert d.help.replace("|", "\\|") in text or d.help[:1].upper() + d.help[1:] in text, d.name
    assert text.strip() == config_markdown().strip(), \
        "docs/config.md is stale: regenerate with `simrecon config --markdown > docs/config.md`"
    assert "(config.md)" in (DOCS / "reconstruction.md").read_text()


def test_an_old_flat_config_loads_with_the_same_values(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = TrainConfig.from_json(OLD_FLAT)
    assert "ignoring" not in caplog.text
    saved = cfg.to_json()
    for group, values in GROUPED.items():
        assert saved[group] == values, group
    assert cfg.priors.lidar_prior.steps == 7 and cfg.priors.lidar_prior.points == 1024
    assert cfg.priors.lidar_prior.lr == 1e-2  # the prior's other settings at their defaults
    assert cfg.priors.free_columns.weight == 0.05 and cfg.priors.free_columns.cell == 0.8
    assert (cfg.model.samples, cfg.model.background.hidden, cfg.holdout, cfg.seed, cfg.device) == (12, 24, "none", 3,
                                                                                                 "cpu")
    assert set(saved) == {"model", "budget", "sampling", "losses", "schedule", "head_fit", "priors", "holdout", "seed",
                          "device"}
    assert saved["head_fit"] == TrainConfig().to_json()["head_fit"]  # a group added later: at its defaults
    assert TrainConfig.from_json(saved).to_json() == saved  # and it is written back grouped
    assert OLD_FLAT["steps"] == 123 and "budget" not in OLD_FLAT  # the caller's dict is left as it was
    cfg.check()


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_written_flat_loads_as_itself(name):
    grouped = preset(name).to_json()
    flat = {k: v for k, v in grouped.items() if k not in ("budget", "sampling", "losses", "schedule", "priors",
                                                          "head_fit")}
    for group in ("budget", "sampling", "losses", "schedule", "priors"):
        flat.update(grouped[group])
    assert set(flat) - {"model", "holdout", "seed", "device"} - AFTER_THE_GROUPS == set(FLAT_KEYS)
    # A flat scene.json predates the settings added after the groups: they load at their defaults.
    old = {k: v for k, v in flat.items() if k not in AFTER_THE_GROUPS}
    defaults = TrainConfig().to_json()
    expect = json.loads(json.dumps(grouped))
    expect["head_fit"] = defaults["head_fit"]  # a group added after the flat settings: at its defaults
    for group in ("budget", "sampling", "losses", "schedule", "priors"):
        for key in AFTER_THE_GROUPS & set(expect[group]):
            expect[group][key] = defaults[group][key]
    assert TrainConfig.from_json(old).to_json() == expect


def test_an_unknown_key_is_warned_and_dropped_and_a_grouped_key_wins(caplog):
    with caplog.at_level(logging.WARNING):
        cfg = TrainConfig.from_json({"steps": 5, "floater_until": 0.2, "budget": {"minutes": 2.0},
                                     "lr": 0.5, "schedule": {"lr": 0.03}})
    assert "config.floater_until" in caplog.text and "floater_until" not in json.dumps(cfg.to_json())
    assert cfg.budget.steps == 5 and cfg.budget.minutes == 2.0  # the flat key joins the group given
    assert cfg.schedule.lr == 0.03 and "ignoring config.lr: config.schedule.lr is given" in caplog.text
    with pytest.raises(ValueError, match=r"^config\.budget\.steps: expected an integer, got 'many'$"):
        TrainConfig.from_json({"steps": "many"})


def test_the_checks_name_the_dotted_fields():
    for key, value, message in [("budget.steps", 0, "config.budget.steps: must be >= 1 (got 0)"),
                                ("sampling.lidar_rays", -1, "config.sampling.lidar_rays: must be >= 0"),
                                ("losses.empty_weight", -0.1, "config.losses.empty_weight: must be a finite number"),
                                ("schedule.lr_hold", 1.0, "config.schedule: lr, lr_final"),
                                ("priors.lidar_prior.points", 0, "config.priors.lidar_prior: needs"),
                                ("priors.free_columns.cell", 0.0, "config.priors.free_columns: needs")]:
        cfg = TrainConfig()
        set_field(cfg, key, value, "test")
        with pytest.raises(ValueError) as info:
            cfg.check()
        assert str(info.value).startswith(message), (key, str(info.value))


def test_the_flat_names_map_to_settings_that_exist():
    cfg = TrainConfig()
    for old, new in FLAT_KEYS.items():
        assert "." in new and new.split(".")[-1] == old
        if not dataclasses.is_dataclass(getattr(getattr(cfg, new.split(".")[0]), old)):
            assert apply_setting(cfg, old, getattr(getattr(TrainConfig(), new.split(".")[0]), old), "t")[0] == new
    assert apply_setting(cfg, "lidar_prior.steps", 60, "t") == ("priors.lidar_prior.steps", 60)
    assert cfg.priors.lidar_prior.steps == 60


def test_set_parses_and_checks_values_as_scene_json_is():
    cfg = preset("tiny")
    got = parse_settings(cfg, ["budget.steps=7", "minutes=2", "model.actors=false", "holdout=every:4",
                               "schedule.lr=1e-3", "model.background.low_precision=True", "steps=1e2"])
    assert got == {"budget.steps": 100, "budget.minutes": 2.0, "model.actors": False, "holdout": "every:4",
                   "schedule.lr": 1e-3, "model.background.low_precision": True}
    assert (cfg.budget.steps, cfg.budget.minutes, cfg.model.actors, cfg.holdout) == (100, 2.0, False, "every:4")
    assert isinstance(cfg.budget.minutes, float)
    for item, message in [("budget.steps=abc", "--set budget.steps: expected an integer, got 'abc'"),
                          ("budget.steps=1.5", "--set budget.steps: expected an integer, got 1.5"),
                          ("model.actors=1", "--set model.actors: expected true or false, got 1"),
                          ("budget.stepz=3", "--set: no such setting 'budget.stepz' (simrecon config lists them; "
                                             "did you mean budget.steps?)"),
                          ("nosuch=1", "--set: no such setting 'nosuch'"),
                          ("model.background=3", "--set: model.background is a group of settings"),
                          ("priors=3", "--set: priors is a group of settings"),
                          ("budget.steps", "--set 'budget.steps': expected KEY=VALUE")]:
        with pytest.raises(ValueError) as info:
            parse_settings(preset("tiny"), [item])
        assert str(info.value).startswith(message), (item, str(info.value))
    for item in ("model.samples=4", "holdout=none", "priors.lidar_prior.steps=3", "lidar_prior.steps=3",
                 "sampling.box_aspect_cap=5"):
        with pytest.raises(ValueError, match="cannot change when resuming"):
            parse_settings(preset("tiny"), [item], resume=True)
    assert parse_settings(preset("tiny"), ["steps=9", "sampling.batch_rays=64", "seed=2"], resume=True) == {
        "budget.steps": 9, "sampling.batch_rays": 64, "seed": 2}


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], err
    return lines[0]


def test_cli_config_prints_every_setting_with_value_unit_and_help(capsys):
    assert main(["config", "--preset", "tiny", "--set", "budget.steps=3"]) == 0
    text = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in text.splitlines() if ln.startswith("  ")}
    for d in describe(preset("tiny")):
        assert d.name in lines, d.name
        assert d.help in lines[d.name] and f" {d.unit} " in lines[d.name], lines[d.name]
    assert lines["budget.steps"].split()[1] == "3*" and lines["model.samples"].split()[1] == "8*"
    assert lines["seed"].split()[1] == "0"  # the default: no mark
    assert main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out.strip() == config_markdown().strip()
    _one_line_error(capsys, main(["config", "--set", "budget.stepz=3"]), "budget.stepz", "budget.steps")
    _one_line_error(capsys, main(["config", "--preset", "huge"]), "--preset", "huge")


def test_cli_reconstruct_help_points_to_simrecon_config(capsys):
    assert main(["reconstruct", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--set" in text and "simrecon config" in text


def test_cli_reconstruct_set_reaches_any_setting_and_resume_extends_the_budget(xs_log, tmp_path, capsys):
    out = tmp_path / "s"
    args = ["reconstruct", str(xs_log), "-o", str(out), "--preset", "tiny", "--set", "holdout=none",
            "--set", "priors.free_columns.weight=0"]
    for extra, needles in [(["--set", "budget.steps=two"], ("--set budget.steps", "'two'")),
                           (["--set", "nosuch.key=1"], ("nosuch.key",)),
                           (["--set", "model.samples"], ("model.samples", "KEY=VALUE")),
                           (["--set", "schedule.lr_hold=1.0"], ("config.schedule", "lr_hold in [0, 1)"))]:
        _one_line_error(capsys, main(args + extra), *needles)
        assert not out.exists()  # refused before anything is written
    assert main(args + ["--set", "steps=1", "--set", "model.samples=4", "--set", "schedule.lr=0.02"]) == 0
    config = read_scene_info(out).config
    assert config["budget"]["steps"] == 1 and config["model"]["samples"] == 4 and config["schedule"]["lr"] == 0.02
    assert config["holdout"] == "none" and config["priors"]["free_columns"]["weight"] == 0.0
    capsys.readouterr()
    resume = ["reconstruct", "--resume", "-o", str(out)]
    for item, name in [("model.samples=8", "model.samples"), ("holdout=every:2", "holdout"),
                       ("lidar_prior.steps=5", "priors.lidar_prior.steps")]:
        _one_line_error(capsys, main(resume + ["--set", item]), f"--set {name}: cannot change when resuming")
    assert main(resume + ["--set", "budget.steps=2", "--set", "budget.log_every=1"]) == 0
    info = read_scene_info(out)
    assert info.step == 2 and info.config["budget"]["steps"] == 2 and info.config["model"]["samples"] == 4
    with pytest.raises(ValueError, match="reconstruct overrides model.samples: cannot change when resuming"):
        reconstruct(Path(), out, preset("tiny"), resume=True, overrides={"model.samples": 8})
    # A scene written before the groups (its config flat) resumes with its settings, and is written back grouped.
    data = json.loads((out / "scene.json").read_text())
    grouped = data["config"]
    data["config"] = {k: v for k, v in grouped.items() if k in ("model", "holdout", "seed", "device")}
    for group in ("budget", "sampling", "losses", "schedule", "priors"):
        data["config"].update(grouped[group])
    (out / "scene.json").write_text(json.dumps(data))
    capsys.readouterr()
    assert main(resume + ["--set", "steps=3"]) == 0
    info = read_scene_info(out)
    assert info.step == 3 and info.config["schedule"]["lr"] == 0.02 and info.config["model"]["samples"] == 4
    assert "steps" not in info.config and info.config["budget"]["steps"] == 3
