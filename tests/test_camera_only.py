"""The camera-only recipe (train/camera_only.py): chosen when the log has no lidar, printed, recorded in
scene.json, overridable with --set; its distortion loss prefers one surface to fog."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from helpers import edit_log, tiny_files

from simrecon.cli.main import main
from simrecon.train import read_scene_info, reconstruct
from simrecon.train.camera_only import CameraOnlyConfig, camera_only_decision, ray_distortion


@pytest.fixture(scope="module")
def camera_log(xs_log, tmp_path_factory):
    """``xs_log`` without its lidar: the same cameras, no sweeps."""
    out = tmp_path_factory.mktemp("camera_only") / "log"
    shutil.copytree(xs_log, out, ignore=shutil.ignore_patterns("lidar"))

    def drop(data):
        data.pop("lidar", None)
        data.pop("lidar_sensors", None)

    edit_log(out, drop)
    return out


def test_the_distortion_loss_prefers_one_surface_to_fog_along_the_ray():
    mids = torch.linspace(0.05, 0.95, 32).expand(2, 32)  # inside the box: spacing is linear there
    surface = torch.zeros(2, 32)
    surface[:, 10] = 0.9
    fog = torch.full((2, 32), 0.9 / 32)
    assert float(ray_distortion(mids, surface)) < 0.2 * float(ray_distortion(mids, fog))
    # two surfaces far apart cost more than one holding the same weight
    two = torch.zeros(2, 32)
    two[:, 2], two[:, 29] = 0.45, 0.45
    assert float(ray_distortion(mids, two)) > 5 * float(ray_distortion(mids, surface))


def test_the_decision_follows_the_lidar_and_the_mode():
    auto = CameraOnlyConfig()
    assert camera_only_decision(auto, has_lidar=False)[0]
    assert camera_only_decision(auto, has_lidar=True) == (False, "auto: the log has lidar")
    assert camera_only_decision(CameraOnlyConfig(mode="off"), has_lidar=False)[0] is False
    assert camera_only_decision(CameraOnlyConfig(mode="on"), has_lidar=True)[0] is True
    with pytest.raises(ValueError, match="priors.camera_only.mode: expected auto, on or off"):
        CameraOnlyConfig(mode="yes").check()


def _losses(scene) -> set[str]:
    return set().union(*(json.loads(line) for line in (scene / "metrics.jsonl").read_text().splitlines()))


def test_a_log_without_lidar_gets_the_recipe_printed_and_recorded_and_one_with_lidar_does_not(
        camera_log, xs_log, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="simrecon"):
        reconstruct(camera_log, tmp_path / "cam", tiny_files(steps=2))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("camera-only recipe")]
    assert lines == ["camera-only recipe on (auto: no lidar sweep to train on; distortion loss 0.002)"]
    assert read_scene_info(tmp_path / "cam").config["priors"]["camera_only"]["mode"] == "on"
    assert "distortion" in _losses(tmp_path / "cam")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simrecon"):
        reconstruct(xs_log, tmp_path / "lidar", tiny_files(steps=2))
    assert "camera-only recipe off (auto: the log has lidar)" in [r.getMessage() for r in caplog.records]
    assert read_scene_info(tmp_path / "lidar").config["priors"]["camera_only"]["mode"] == "off"
    assert "distortion" not in _losses(tmp_path / "lidar")
    # a resumed run keeps what scene.json records
    reconstruct(None, tmp_path / "cam", tiny_files(steps=2), resume=True, overrides={"budget.steps": 3})
    assert "distortion" in _losses(tmp_path / "cam") and read_scene_info(tmp_path / "cam").step == 3


def test_set_overrides_the_recipe_both_ways_and_its_weight(camera_log, xs_log, tmp_path):
    args = ["--preset", "tiny", "--steps", "2", "--device", "cpu", "--holdout", "none"]
    assert main(["reconstruct", str(camera_log), "-o", str(tmp_path / "off"), *args,
                 "--set", "priors.camera_only.mode=off"]) == 0
    assert read_scene_info(tmp_path / "off").config["priors"]["camera_only"]["mode"] == "off"
    assert "distortion" not in _losses(tmp_path / "off")
    assert main(["reconstruct", str(xs_log), "-o", str(tmp_path / "on"), *args, "--set", "priors.camera_only.mode=on",
                 "--set", "priors.camera_only.distortion_weight=0.05"]) == 0
    recorded = read_scene_info(tmp_path / "on").config["priors"]["camera_only"]
    assert recorded == {"mode": "on", "distortion_weight": 0.05}
    assert "distortion" in _losses(tmp_path / "on")
