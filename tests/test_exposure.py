"""Per-frame exposure (render/exposure.py): the correction's algebra, its interpolation to frames it never saw,
and training that finds a frame the camera exposed darker."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from simrecon.cli.main import main
from simrecon.render.exposure import FrameExposure
from simrecon.scene import load_scene
from simrecon.train import preset, read_scene_info, reconstruct


def _exposure() -> FrameExposure:
    # camera 0 at t = 0, 1, 2; camera 1 at t = 0.5
    return FrameExposure(torch.tensor([0, 0, 1, 0]), torch.tensor([0.0, 1.0, 0.5, 2.0], dtype=torch.float64))


def test_the_correction_starts_as_the_identity_and_its_global_level_is_fixed():
    exp = _exposure()
    rgb = torch.rand(10, 3, generator=torch.Generator().manual_seed(0))
    frames = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    assert torch.equal(exp(rgb, frames), rgb)
    with torch.no_grad():
        exp.log_gain.normal_(0, 0.2, generator=torch.Generator().manual_seed(1))
        exp.offset.normal_(0, 0.05, generator=torch.Generator().manual_seed(2))
    before = exp(rgb, frames)
    with torch.no_grad():  # the same constant on every frame: the scene holds the average, nothing changes
        exp.log_gain += 0.7
        exp.offset -= 0.3
    torch.testing.assert_close(exp(rgb, frames), before)  # float32 round-off of the added constants only
    assert not torch.allclose(before, rgb)


def test_gradients_reach_only_the_frames_in_the_batch_up_to_the_centring():
    exp = _exposure()
    out = exp(torch.full((4, 3), 0.5), torch.tensor([1, 1, 1, 1]))
    out.sum().backward()
    g = exp.log_gain.grad  # centring spreads -1/K of frame 1's gradient to every frame
    assert g[1].abs().min() > 0 and torch.allclose(g.sum(0), torch.zeros(3), atol=1e-6)
    assert torch.allclose(g[0], g[2]) and torch.allclose(g[0], g[3])


def test_frames_never_trained_on_take_the_correction_interpolated_in_time_of_their_camera():
    exp = _exposure()
    with torch.no_grad():
        exp.log_gain.copy_(torch.tensor([[0.0] * 3, [0.4] * 3, [-1.0] * 3, [0.2] * 3]))
        exp.offset.copy_(torch.tensor([[0.0] * 3, [0.1] * 3, [0.5] * 3, [0.3] * 3]))
    mean_g, mean_o = exp.log_gain.mean(0), exp.offset.mean(0)  # the centring
    gain, offset = exp.at(0, 0.25)  # a quarter of the way from frame 0 (t 0) to frame 1 (t 1)
    torch.testing.assert_close(gain, torch.exp(torch.full((3,), 0.1) - mean_g))
    torch.testing.assert_close(offset, torch.full((3,), 0.025) - mean_o)
    gain, _ = exp.at(0, 1.5)  # between frames 1 and 3: camera 1's frame at t 0.5 is not camera 0's
    torch.testing.assert_close(gain, torch.exp(torch.full((3,), 0.3) - mean_g))
    torch.testing.assert_close(exp.at(0, -5.0)[0], torch.exp(-mean_g))  # before the first frame: the first
    torch.testing.assert_close(exp.at(0, 9.0)[0], torch.exp(0.2 - mean_g))  # after the last: the last
    torch.testing.assert_close(exp.at(1, 3.0)[0], torch.exp(-1.0 - mean_g))  # one frame: that frame's
    gain, offset = exp.at(7, 0.5)  # a camera the log never had: none
    assert torch.equal(gain, torch.ones(3)) and torch.equal(offset, torch.zeros(3))


def test_bad_shapes_are_refused_with_the_shapes():
    with pytest.raises(ValueError, match=r"cameras \[2\] and times \[3\]"):
        FrameExposure(torch.zeros(2, dtype=torch.long), torch.zeros(3))
    with pytest.raises(ValueError, match=r"\[5, 4\] and \[5\]"):
        _exposure()(torch.zeros(5, 4), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[5, 3\] and \[4\]"):
        _exposure()(torch.zeros(5, 3), torch.zeros(4, dtype=torch.long))


def _train(log, out):
    cfg = preset("tiny")
    cfg.budget.steps, cfg.schedule.lr, cfg.sampling.batch_rays, cfg.budget.log_every = 200, 2e-2, 512, 100
    cfg.model.frame_exposure = True
    reconstruct(log, out, cfg)
    return load_scene(out)


def test_training_finds_the_frames_the_camera_exposed_darker(synth_small, tmp_path):
    """A copy of the small drive whose frames at one time are 40 % darker in every camera, as auto-exposure
    would make them: against the same training on the unchanged drive, the learned gain of those frames drops,
    the others' hardly moves; the scene renders those frames darker (through the interpolation a held-out frame
    would use), and a camera the log never had sees no correction."""
    log = tmp_path / "log"
    shutil.copytree(synth_small / "log", log)
    dark = sorted(log.glob("images/*/000001.png"))
    assert len(dark) == 3
    for path in dark:
        img = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        Image.fromarray((img * 0.6).round().astype(np.uint8)).save(path)
    scene = _train(log, tmp_path / "scene")
    control = _train(synth_small / "log", tmp_path / "control").model.exposure
    exp = scene.model.exposure
    assert exp is not None and len(exp) == 12  # 5 times x 3 cameras, the middle one held out
    assert torch.equal(exp.times, control.times)
    # What each frame's correction makes of mid-grey, over the control run's: the tiny model also puts what it
    # cannot fit yet into the corrections (they drift ~20 % with time in both runs), so the drive is compared
    # with itself, not with 1; the centring lifts the others a little when the dark frames go down.
    def grey(e):
        return (torch.exp(e.log_gain) * 0.5 + e.offset).detach().mean(1)  # [12]

    ratio = grey(exp) / grey(control)
    is_dark = torch.isclose(exp.times, exp.times.unique()[1])
    assert int(is_dark.sum()) == 3
    assert float(ratio[is_dark].max()) < 0.9 * float(ratio[~is_dark].min()), ratio
    t_dark = float(exp.times[is_dark][0])
    frame = next(f for f in scene.log.frames if abs(f.timestamp - t_dark) < 1e-9 and f.camera == "front")
    dark_img = scene.render_image(frame.c2w, frame.intrinsics, frame.timestamp, camera="front").rgb
    plain_img = scene.render_image(frame.c2w, frame.intrinsics, frame.timestamp, camera="new_camera").rgb
    assert scene.exposure_for("new_camera", t_dark) is None
    assert dark_img.mean() < 0.9 * plain_img.mean()


def test_cli_flag_turns_it_off_or_on_and_cannot_change_on_resume(synth_small, tmp_path, capsys):
    off = tmp_path / "off"
    args = ["reconstruct", str(synth_small / "log"), "--preset", "tiny", "--steps", "2"]
    assert main(args + ["-o", str(off), "--no-frame-exposure"]) == 0
    assert read_scene_info(off).config["model"]["frame_exposure"] == "off"
    assert load_scene(off).model.exposure is None and load_scene(off).exposure_for("front", 0.0) is None
    out = tmp_path / "s"
    assert main(args + ["-o", str(out), "--frame-exposure"]) == 0
    assert read_scene_info(out).config["model"]["frame_exposure"] == "on"
    assert load_scene(out).model.exposure is not None
    capsys.readouterr()
    assert main(["reconstruct", "-o", str(out), "--resume", "--steps", "3", "--no-frame-exposure"]) == 2
    err = capsys.readouterr().err
    assert "--frame-exposure cannot change when resuming" in err and "Traceback" not in err
    assert main(["reconstruct", "-o", str(out), "--resume", "--steps", "3"]) == 0  # and resumes with it
    assert load_scene(out).model.exposure is not None and read_scene_info(out).step == 3


def test_synth_exposure_drift_changes_the_log_images_by_the_documented_gain(synth_small, tmp_path):
    from dataclasses import replace

    from helpers import SMALL

    from simrecon.synth import generate

    generate(tmp_path / "street", replace(SMALL, exposure_drift=0.25, ground_truth=False))
    for cam, k, t in (("front", 0, 0.0), ("front_left", 1, 0.2), ("front_right", 2, 0.4)):
        rel = f"images/{cam}/{round(t * 10):06d}.png"
        plain = np.asarray(Image.open(synth_small / "log" / rel), dtype=np.float64)
        drifted = np.asarray(Image.open(tmp_path / "street" / "log" / rel), dtype=np.float64)
        gain = np.exp(0.25 * np.sin(2 * np.pi * t / 1.6 + 2.0 * k))
        ok = (plain > 10) & (plain * gain < 245)  # away from the dark end's rounding and the clip at 255
        # uint8 rounding of both images: within 0.5 / 10 of the ratio on the darkest pixels used
        np.testing.assert_allclose(np.median(drifted[ok] / plain[ok]), gain, atol=0.01)
        assert np.abs(drifted[ok] - plain[ok] * gain).max() <= 1.0
