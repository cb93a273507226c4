"""Per-frame exposure switched by the log (train/exposure_auto.py): the measure, the decision both ways on the
synthetic street with and without ``exposure_drift``, on/off forcing it, the printed and recorded decision, and
scenes whose scene.json says true / false."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import XS, tiny_files

from simrecon.data.io import load_log
from simrecon.render import SceneModelConfig
from simrecon.scene import load_scene
from simrecon.synth import generate
from simrecon.train import TrainConfig, read_scene_info, reconstruct
from simrecon.train.data import TrainData
from simrecon.train.exposure_auto import (THRESHOLD, exposure_decision, exposure_variation, frame_changes,
                                          tile_log_luminance)


@pytest.fixture(scope="module")
def drift_log(tmp_path_factory):
    """``xs_log`` as a camera with auto-exposure records it: ``simrecon synth --exposure-drift 0.25``."""
    out = tmp_path_factory.mktemp("drift") / "street"
    generate(out, replace(XS, exposure_drift=0.25))
    return out / "log"


def _data(log) -> TrainData:
    return TrainData(load_log(log), set(), near=0.1, device=torch.device("cpu"))


def test_a_gain_moves_every_tile_by_its_log_and_a_change_in_a_few_tiles_does_not_count():
    rng = np.random.default_rng(0)
    img = rng.integers(40, 160, size=(48, 64, 3))
    gain = 1.3
    frames = [img, np.round(img * gain), np.round(img * gain)]
    frames[2][:12, :16] = 255  # the next frame: something bright enters one corner (4 of 64 tiles)
    tiles = torch.stack([tile_log_luminance(torch.as_tensor(f, dtype=torch.uint8)) for f in frames])
    assert tiles.shape == (3, 64)
    assert torch.allclose(tiles[1] - tiles[0], torch.full((64,), np.log(gain), dtype=torch.float64), atol=0.01)
    change = frame_changes(tiles)
    assert abs(float(change[0]) - np.log(gain)) < 0.01  # the 1/255 floor and uint8 rounding only
    assert abs(float(change[1])) < 1e-9 and float((tiles[2] - tiles[1]).max()) > 0.3


def test_the_measure_is_the_median_over_cameras_of_the_median_change_between_consecutive_frames():
    # camera 0: changes 0.01, 0.01 and one jump of 0.5 (a truck passing): its median is 0.01
    # camera 1: changes 0.1 each, listed out of time order; camera 2: one frame, no change
    means = torch.tensor([0.0, 0.01, 0.02, 0.52, 0.3, 0.1, 0.2, 5.0], dtype=torch.float64)[:, None]  # one tile
    cams = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2])
    times = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.2, 0.0, 0.1, 0.0], dtype=torch.float64)
    var = exposure_variation(means, cams, times)
    assert var.per_camera == pytest.approx({0: 0.01, 1: 0.1})
    assert var.value == pytest.approx(0.055) and var.frames == 8
    assert exposure_variation(means[7:], cams[7:], times[7:]).value == 0.0  # no camera with two frames


def test_auto_turns_it_on_for_a_drifting_log_and_off_for_a_clean_one(xs_log, drift_log):
    on, why = exposure_decision("auto", _data(drift_log))
    assert on and f"> threshold {THRESHOLD}" in why, why
    off, why = exposure_decision("auto", _data(xs_log))
    assert not off and f"<= threshold {THRESHOLD}" in why, why
    # the measured values, on either side of the threshold with room to spare
    clean = float(why.split("changes ")[1].split()[0])
    assert clean < 0.5 * THRESHOLD


def test_on_and_off_force_it_and_the_old_switch_values_mean_on_and_off(xs_log, drift_log):
    clean, drift = _data(xs_log), _data(drift_log)
    assert exposure_decision("on", clean) == (True, "model.frame_exposure=on")
    assert exposure_decision("off", drift) == (False, "model.frame_exposure=off")
    assert exposure_decision(True, clean)[0] and not exposure_decision(False, drift)[0]
    with pytest.raises(ValueError, match="expected auto, on or off"):
        exposure_decision("sometimes", clean)


def test_reconstruct_prints_the_decision_and_records_it_for_eval_render_and_resume(drift_log, tmp_path, caplog):
    cfg = tiny_files(steps=2)
    assert cfg.model.frame_exposure == "auto"
    with caplog.at_level(logging.INFO, logger="simrecon"):
        reconstruct(drift_log, tmp_path / "s", cfg)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("per-frame exposure"))
    assert line.startswith("per-frame exposure on (auto: brightness changes ") and str(THRESHOLD) in line
    info = read_scene_info(tmp_path / "s")
    assert info.config["model"]["frame_exposure"] == "on"
    assert load_scene(tmp_path / "s").model.exposure is not None
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="simrecon"):
        reconstruct(None, tmp_path / "s", cfg, resume=True, overrides={"budget.steps": 3})
    assert any(r.getMessage() == "per-frame exposure on (resumed: as the checkpoint has it)" for r in caplog.records)
    assert read_scene_info(tmp_path / "s").step == 3


def test_scenes_that_recorded_the_switch_as_true_or_false_still_load(xs_log, tmp_path):
    assert TrainConfig.from_json({"model": {"frame_exposure": True}}).model.frame_exposure == "on"
    assert TrainConfig.from_json({"steps": 5, "model": {"frame_exposure": False}}).model.frame_exposure == "off"
    assert SceneModelConfig.from_json({"frame_exposure": True}).frame_exposure == "on"
    cfg = tiny_files(steps=2)
    cfg.model.frame_exposure = True  # the Python API of before: a switch
    reconstruct(xs_log, tmp_path / "s", cfg)
    path = tmp_path / "s" / "scene.json"
    data = json.loads(path.read_text())
    assert data["config"]["model"]["frame_exposure"] == "on"
    data["config"]["model"]["frame_exposure"] = True  # as a scene written when it was a switch says
    path.write_text(json.dumps(data))
    assert load_scene(tmp_path / "s").model.exposure is not None
    reconstruct(None, tmp_path / "s", cfg, resume=True, overrides={"budget.steps": 3})
    assert read_scene_info(tmp_path / "s").step == 3
