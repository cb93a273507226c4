"""Reconstruction robustness on a tiny config: budgets, checkpoint/resume, NaN stop, SIGTERM, DDP, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from simrecon.cli.main import main
from simrecon.data.io import load_log
from simrecon.data.scene_api import RenderableScene, logged_placements
from simrecon.scene import load_scene
from simrecon.train.config import apply_setting, scene_config
from simrecon.train import TrainingDiverged, TrainingInterrupted, preset, read_scene_info, reconstruct
from simrecon.train import trainer as trainer_mod
from simrecon.scene.checkpoint import load_checkpoint


def tiny(**kw):
    """The tiny preset with settings by their old flat names (``steps=3``, ``lr=0.02``: mapped to their groups)."""
    cfg = preset("tiny")
    for k, v in kw.items():
        apply_setting(cfg, k, v, "tiny")
    return cfg


def _metrics(scene: Path) -> list[dict]:
    return [json.loads(line) for line in (scene / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny_scene(synth_small, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "scene"
    reconstruct(synth_small / "log", out, tiny(steps=6))
    return out


def test_scene_folder_and_step_budget(tiny_scene):
    info = read_scene_info(tiny_scene)
    assert info.step == 6 and info.status == "complete"
    assert {"model.pt", "checkpoint.pt", "metrics.jsonl", "scene.json"} <= {p.name for p in tiny_scene.iterdir()}
    assert info.actors[:2] == ["parked_0", "parked_1"] and info.camera_names == ["front", "front_left", "front_right"]
    assert info.holdout == ["images/front/000004.png", "images/front_left/000004.png",
                            "images/front_right/000004.png"]  # every:8 -> the middle frame of each 8
    steps = [m["step"] for m in _metrics(tiny_scene)]
    assert steps == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(m["loss"]) and m["rays_per_s"] > 0 for m in _metrics(tiny_scene))
    assert {"rgb", "depth", "empty", "opacity", "interlevel"} <= set(_metrics(tiny_scene)[0])
    assert "beyond" in _metrics(tiny_scene)[0]  # losses.beyond_weight, without the lidar prior too


def test_training_reduces_the_loss(synth_small, tmp_path):
    reconstruct(synth_small / "log", tmp_path / "s", tiny(steps=40, lr=2e-2, log_every=10))
    rgb = [m["rgb"] for m in _metrics(tmp_path / "s")]
    assert rgb[-1] < 0.7 * rgb[0]


def test_time_budget_stops_training(synth_small, tmp_path):
    cfg = tiny(steps=10**6, minutes=0.05)
    cfg.priors.lidar_prior.steps = 0  # the automatic prior of a short budget would spend it all before the first step
    result = reconstruct(synth_small / "log", tmp_path / "s", cfg)
    assert 0 < result.step < 10**6 and result.elapsed >= 3.0


def test_resume_continues_with_optimizer_state(synth_small, tmp_path):
    scene = tmp_path / "s"
    reconstruct(synth_small / "log", scene, tiny(steps=3))
    first = load_checkpoint(scene / "checkpoint.pt")
    assert first["step"] == 3 and first["optimizer"]["state"]
    # --resume takes the config from scene.json; raise the step budget there, as a user extends a run.
    data = json.loads((scene / "scene.json").read_text())
    data["config"]["budget"]["steps"] = 5
    (scene / "scene.json").write_text(json.dumps(data))
    result = reconstruct(Path(), scene, tiny(), resume=True)
    assert result.step == 5
    assert [m["step"] for m in _metrics(scene)][-2:] == [4, 5]
    second = load_checkpoint(scene / "checkpoint.pt")
    # Adam's step counters continued from 3 rather than restarting at 0.
    steps = [float(s["step"]) for s in second["optimizer"]["state"].values() if "step" in s]
    assert max(steps) == 5.0


def test_hash_tables_and_exposure_learn_at_their_own_rates(synth_small, tmp_path):
    scene = tmp_path / "s"
    cfg = tiny(steps=3, table_lr_scale=3.0, exposure_lr_scale=0.25)
    cfg.model.frame_exposure = True
    reconstruct(synth_small / "log", scene, cfg)
    state = load_checkpoint(scene / "checkpoint.pt")
    tables, rest, exposure = state["optimizer"]["param_groups"]
    n_tables = sum(k.endswith("grid.table") for k in state["model"])
    assert n_tables >= 3 and len(tables["params"]) == n_tables  # background, proposal, every actor
    assert len(exposure["params"]) == 2  # log gains and offsets
    assert tables["lr"] == pytest.approx(3.0 * rest["lr"])  # the schedule keeps the ratios
    assert exposure["lr"] == pytest.approx(0.25 * rest["lr"])
    assert rest["lr"] == pytest.approx(_metrics(scene)[-1]["lr"])


def test_resume_of_a_checkpoint_with_other_parameter_groups_restarts_adam(synth_small, tmp_path, caplog):
    scene = tmp_path / "s"
    reconstruct(synth_small / "log", scene, tiny(steps=2))
    state = load_checkpoint(scene / "checkpoint.pt")
    opt = state["optimizer"]  # as an earlier version wrote it: one group for every parameter
    opt["param_groups"] = [{**opt["param_groups"][1],
                            "params": [i for g in opt["param_groups"] for i in g["params"]]}]
    torch.save(state, scene / "checkpoint.pt")
    data = json.loads((scene / "scene.json").read_text())
    data["config"]["budget"]["steps"] = 3
    (scene / "scene.json").write_text(json.dumps(data))
    assert reconstruct(Path(), scene, tiny(), resume=True).step == 3
    assert "optimiser state not restored" in caplog.text


def test_learning_rate_holds_then_decays_to_its_final_value():
    cfg = tiny(lr=1e-2, lr_final=1e-3, lr_hold=0.4)
    lrs = [trainer_mod.learning_rate(cfg, p) for p in np.linspace(0, 1.2, 25)]
    assert lrs[0] == lrs[8] == pytest.approx(1e-2)  # held over the first 40 % of the budget
    assert trainer_mod.learning_rate(cfg, 0.7) == pytest.approx(np.sqrt(1e-2 * 1e-3))  # half way down, geometrically
    assert lrs[20] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-3)  # at the budget's end, and after
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("bad", [{"lr_hold": 1.0}, {"lr_hold": -0.1}, {"lr_final": 0.0}, {"table_lr_scale": 0.0},
                                 {"exposure_lr_scale": -1.0}])
def test_bad_learning_rate_settings_are_refused(synth_small, tmp_path, bad):
    with pytest.raises(ValueError, match="lr_hold in"):
        reconstruct(synth_small / "log", tmp_path / "s", tiny(**bad))


@pytest.mark.parametrize("cap", [0.0, -1.0, float("nan")])
def test_a_box_aspect_cap_that_is_not_positive_is_refused(synth_small, tmp_path, cap):
    with pytest.raises(ValueError, match=r"config\.sampling\.box_aspect_cap: must be > 0"):
        reconstruct(synth_small / "log", tmp_path / "s", tiny(box_aspect_cap=cap))
    assert not (tmp_path / "s").exists()  # refused before anything is written


def test_existing_scene_is_not_overwritten(tiny_scene, synth_small):
    with pytest.raises(FileExistsError, match="--resume"):
        reconstruct(synth_small / "log", tiny_scene, tiny())


def _nan_loss(rgb):
    return rgb * float("nan")


def _nan_gradient(rgb):
    return rgb + torch.sqrt(rgb * 0.0)  # adds 0 to the loss, but its backward is 0 * inf = NaN


@pytest.mark.parametrize("poison, at_call, message", [
    (_nan_loss, 4, "loss became nan at step 3"),
    (_nan_gradient, 3, "gradients became non-finite at step 2"),  # caught before the update, not after
])
def test_nan_stops_and_keeps_the_last_good_state(synth_small, tmp_path, monkeypatch, poison, at_call, message):
    real = trainer_mod.compute_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        losses = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at_call:
            losses["rgb"] = poison(losses["rgb"])
        return losses

    monkeypatch.setattr(trainer_mod, "compute_losses", poisoned)
    scene = tmp_path / "s"
    with pytest.raises(TrainingDiverged, match=message):
        reconstruct(synth_small / "log", scene, tiny(steps=50))
    state = load_checkpoint(scene / "checkpoint.pt")
    assert state["step"] == at_call - 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert read_scene_info(scene).status == "diverged"


def test_gradient_check_sees_any_nan_or_infinity():
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    assert trainer_mod._grads_finite(net)  # no gradients yet
    net(torch.ones(1, 3)).sum().backward()
    assert trainer_mod._grads_finite(net)
    for bad in (float("nan"), float("inf"), -float("inf")):
        net[0].weight.grad[1, 2] = bad
        assert not trainer_mod._grads_finite(net)
        net[0].weight.grad[1, 2] = 0.0
    net[0].weight.grad[0, 0], net[1].bias.grad[0] = float("inf"), -float("inf")  # they cancel into NaN: still seen
    assert not trainer_mod._grads_finite(net)


def test_sigterm_writes_a_checkpoint_and_resume_works(synth_small, tmp_path, monkeypatch):
    real = trainer_mod.compute_losses
    calls = {"n": 0}

    def send_term(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # handled: sets the stop flag, training ends cleanly
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "compute_losses", send_term)
    scene = tmp_path / "s"
    with pytest.raises(TrainingInterrupted, match="--resume"):
        reconstruct(synth_small / "log", scene, tiny(steps=50))
    assert load_checkpoint(scene / "checkpoint.pt")["step"] == 2
    assert read_scene_info(scene).status == "interrupted"


def test_neural_scene_is_a_renderable_scene(tiny_scene):
    scene = load_scene(tiny_scene)
    assert isinstance(scene, RenderableScene)
    f = scene.log.cameras["front"][1]
    placements = logged_placements(scene.log, f.timestamp)
    out = scene.render(f.c2w, f.intrinsics, f.timestamp, placements)
    assert out.rgb.shape == (96, 160, 3) and out.depth.shape == (96, 160)
    assert out.instance.max() <= len(placements) and out.instance_names == list(placements)
    with pytest.raises(KeyError, match="no actor 'nope'"):
        scene.field_index("nope")


def test_cli_eval_and_render(tiny_scene, tmp_path, capsys):
    assert main(["eval", str(tiny_scene)]) == 0
    result = json.loads((tiny_scene / "eval.json").read_text())
    assert result["num_frames"] == 3 and 0 < result["psnr"] < 60
    assert result["lidar_depth"]["held_out_sweeps"] is True  # sweeps at held-out times were not trained on
    sweeps = result["lidar_sweeps"]  # whole held-out sweeps of the v1.1 sensor rendered and compared
    assert sweeps["held_out_sweeps"] is True and sweeps["sweeps"] >= 1 and 0 <= sweeps["drop_accuracy"] <= 1
    sensor = load_scene(tiny_scene).log.lidar_sensors["lidar"]
    assert sweeps["rays"] == sweeps["sweeps"] * sensor.rays
    assert sweeps["drop_model"] == "learned"  # the learned lidar heads (intensity_rmse: test_lidar_heads.py)
    assert "lidar sweeps (" in capsys.readouterr().out
    assert main(["render", str(tiny_scene), "-o", str(tmp_path / "traj"), "--trajectory", "--shift-left",
                 "2", "--outputs", "rgb,depth,instance"]) == 0
    assert (tmp_path / "traj/video.mp4").stat().st_size > 1000
    cams = json.loads((tmp_path / "traj/cameras.json").read_text())["frames"]
    log = load_scene(tiny_scene).log
    logged = log.cameras["front"][0].c2w
    np.testing.assert_allclose(np.array(cams[0]["transform_matrix"])[:3, 3] - logged[:3, 3],
                               2.0 * log.ego.pose_at(0.0)[:3, 1], atol=1e-9)
    poses = {"fl_x": 20.0, "fl_y": 20.0, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24,
             "frames": [{"transform_matrix": logged.tolist(), "timestamp": 0.1, "camera": "new_cam"}]}
    (tmp_path / "poses.json").write_text(json.dumps(poses))
    assert main(["render", str(tiny_scene), "-o", str(tmp_path / "p"), "--poses", str(tmp_path / "poses.json")]) == 0
    assert (tmp_path / "p/rgb/00000.png").is_file() and (tmp_path / "p/depth/00000.png").is_file()
    capsys.readouterr()


@pytest.mark.parametrize("args, message", [
    (["reconstruct", "/no/log", "-o", "x"], "/no/log: no such file or folder"),
    (["reconstruct", "-o", "/tmp/simrecon-no-scene", "--resume"], "is not a scene folder"),
    (["reconstruct", "LOG", "-o", "OUT", "--preset", "huge"], "--preset: expected fast, default, quality or tiny"),
    (["reconstruct", "LOG", "-o", "OUT", "--holdout", "every:x"], "--holdout: expected every:N"),
    (["reconstruct", "LOG", "-o", "OUT", "--device", "cuda"], "--device cuda: no CUDA device"),
    (["reconstruct", "LOG", "-o", "OUT", "--lidar-prior-steps", "-1"], "--lidar-prior-steps must be >= 0"),
    (["reconstruct", "-o", "SCENE", "--resume", "--lidar-prior-steps", "5"], "the prior runs before the first step"),
    (["reconstruct", "LOG", "-o", "OUT", "--free-columns", "-0.1"], "--free-columns: must be a finite number >= 0"),
    (["reconstruct", "LOG", "-o", "OUT", "--free-columns", "nan"], "--free-columns: must be a finite number >= 0"),
    (["reconstruct", "-o", "SCENE", "--resume", "--free-columns", "0"], "--free-columns cannot change when resuming"),
    (["eval", "/no/scene"], "no such file or folder"),
    (["render", "SCENE", "-o", "OUT"], "give exactly one of --poses FRAMES.json or --trajectory"),
])
def test_cli_errors_are_one_line(args, message, synth_small, tiny_scene, tmp_path, capsys):
    if torch.cuda.is_available() and "cuda" in args:
        pytest.skip("a CUDA device exists here")
    args = [{"LOG": str(synth_small / "log"), "OUT": str(tmp_path / "o"), "SCENE": str(tiny_scene)}.get(a, a)
            for a in args]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err


def test_ddp_two_cpu_processes(synth_small, tmp_path):
    """torchrun with 2 gloo processes: both train, rank 0 writes the scene, rays are split between ranks; a warning
    about the log (here: a holdout that holds out nothing) is said once, not once per rank. Per-frame exposure is
    on: its parameters are used inside the model's forward, as DDP requires. The learned lidar heads (auto: on, the
    log's sweeps carry intensity and a layout) train too, outside DDP, with their gradients averaged."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533", "-m",
           "simrecon", "reconstruct", str(synth_small / "log"), "-o", str(out), "--preset", "tiny", "--steps", "3",
           "--device", "cpu", "--holdout", "every:1000", "--frame-exposure"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("holds out no frame") == 1, proc.stderr[-3000:]
    info = read_scene_info(out)
    assert info.step == 3 and info.status == "complete"
    rec = _metrics(out)[-1]
    assert rec["step"] == 3 and rec["intensity"] > 0 and rec["drop"] > 0
    model = load_scene(out).model
    assert model.exposure is not None
    assert model.lidar_heads is not None and model.lidar_heads.drop_net is not None


def test_demo_end_to_end_with_a_tiny_reconstruction(tmp_path, capsys):
    args = ["demo", "-o", str(tmp_path / "d"), "--seconds", "0.5", "--preset", "tiny"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "reconstructing" in out and "ego_shift_left_2m: PSNR" in out and "composing scenarios" in out
    assert "sky covered" in out
    html = (tmp_path / "d/report.html").read_text()
    assert "training_curve.png" in html and "heldout_0.jpg" in html and "lane_shift/video.mp4" in html
    assert "sky covered by a surface" in html
    assert (tmp_path / "d/lane_shift/video.mp4").stat().st_size > 1000
    assert "Closed-loop drive" in html and (tmp_path / "d/drive/video.gif").stat().st_size > 1000
    assert main(args) == 0  # second run reuses the log and the scene
    assert "reusing reconstruction" in capsys.readouterr().out


def test_scene_box_covers_cameras_and_near_lidar_with_bounded_aspect(synth_small):
    from simrecon.data.io import load_log
    from simrecon.train.data import scene_box

    log = load_log(synth_small / "log")
    near_box, far_box = (scene_box(log, max_lidar_range=r, aspect_cap=float("inf")) for r in (40.0, 80.0))
    cams = np.stack([f.c2w[:3, 3] for f in log.frames])
    for box in (near_box, far_box):
        assert np.all(np.abs(cams - box.center) <= box.half)
        assert box.half.min() >= 0.3 * box.half.max() - 1e-9  # facades above the lidar stay inside
    # The street runs along x: the 40 m box is shorter along it, and still holds the returns it was built from.
    assert near_box.half[0] < far_box.half[0] - 5
    sweep = log.lidar[0]
    p = sweep.load_world(log.root)
    p = p[np.linalg.norm(p - sweep.s2w[:3, 3], axis=1) < 40.0]
    inside = np.all(np.abs(p - near_box.center) <= near_box.half, axis=1)
    assert inside.mean() > 0.98


def test_scene_box_short_axes_grow_to_at_most_the_cap_with_lidar_and_freely_without(synth_small):
    import dataclasses

    from simrecon.data.io import load_log
    from simrecon.train.data import scene_box

    log = load_log(synth_small / "log")
    natural = scene_box(log, max_lidar_range=80.0, min_aspect=0.0)
    uncapped = scene_box(log, max_lidar_range=80.0, aspect_cap=float("inf"))
    capped = scene_box(log, max_lidar_range=80.0, aspect_cap=5.0)
    assert 0.3 * natural.half.max() > 5.0 > natural.half.min()  # the cap binds on this box
    np.testing.assert_allclose(uncapped.half, np.maximum(natural.half, 0.3 * natural.half.max()))
    np.testing.assert_allclose(capped.half, np.maximum(natural.half, 5.0))  # the height: 5, not 0.3 x the length
    np.testing.assert_allclose(capped.center, natural.center)
    # Without lidar (no metric scale to trust: a capture in arbitrary units) the cap does not apply.
    cams_only = dataclasses.replace(log, lidar=[])
    a, b = scene_box(cams_only, aspect_cap=5.0), scene_box(cams_only, aspect_cap=float("inf"))
    np.testing.assert_allclose(a.half, b.half)
    assert a.half.min() >= 0.3 * a.half.max() - 1e-9


@pytest.mark.parametrize("part,loss_key", [("samples", "floaters"), ("proposal", "proposal_floaters")])
def test_floater_losses_keep_a_gradient_when_opaque_and_leave_clear_rays_alone(part, loss_key):
    from simrecon.render import ProposalSamples, RaySamples, RenderResult
    from simrecon.train.trainer import compute_losses

    cfg = tiny()
    w = cfg.losses.floater_weight
    ranges = torch.tensor([10.0, 10.0, 10.0])  # three lidar rays, returns at 10 m
    mids = torch.linspace(0.5, 20.0, 8).repeat(3, 1)  # [3, 8] interval mid-points (m)
    near = mids < 0.5 * 10.0  # the nearer half of the way to the return: 2 intervals
    # Ray 0: opaque right at the sensor (the early collapse); ray 1: clear until the return; ray 2: a faint
    # haze in the nearer half (thickness 0.4 < ln 2: less than half the light stopped).
    tau = torch.zeros(3, 8)
    tau[0] = 50.0
    tau[1, mids[1] > 10.0] = 50.0
    tau[2] = 0.2
    tau.requires_grad_(True)
    out = RenderResult(depth=ranges.clone(), acc=torch.ones(3), rgb=torch.zeros(0, 3),
                       samples=RaySamples(mids=mids, weights=torch.zeros(3, 8), tau=torch.zeros(3, 8)),
                       proposal=ProposalSamples(mids=mids, tau=torch.zeros(3, 8), interlevel=torch.zeros(())))
    getattr(out, part).tau = tau
    model = type("M", (), {"scale": 1.0})()
    losses = compute_losses(model, out, torch.zeros(0, 3), 0, ranges, cfg)
    losses[loss_key].backward()
    g = tau.grad
    total = 50.0 * near[0].sum().item()
    # Opaque in the nearer half: pushed down with a live gradient, w / 3 / (1 + total) (a penalty on weights
    # would give ~exp(-50) here); nothing beyond the nearer half is touched (surfaces near the return are left
    # to the saturating weight penalty, "empty", so lidar noise cannot erode them).
    torch.testing.assert_close(g[0][near[0]], torch.full_like(g[0][near[0]], w / 3 / (1 + total)))
    assert (g[:, ~near[0]] == 0).all()
    # Clear and hazy rays add nothing: a healthy field is left alone.
    assert (g[1:] == 0).all()
    assert losses[loss_key].item() == pytest.approx(w * np.log1p(total) / 3, rel=1e-5)


def test_lidar_weight_terms_count_weight_before_and_past_the_return_but_not_at_it():
    from simrecon.render import ProposalSamples, RaySamples, RenderResult
    from simrecon.train.trainer import compute_losses

    cfg = tiny()
    ranges = torch.tensor([10.0, 10.0])  # returns at 10 m; margin 0.2 m + a tenth of the near plane
    mids = torch.tensor([[5.0, 9.95, 10.05, 15.0]] * 2)  # [2, 4] m
    weights = torch.tensor([[0.1, 0.4, 0.3, 0.2],  # 0.1 before the margin, 0.2 past it
                            [0.0, 0.5, 0.5, 0.0]], requires_grad=True)  # all within the margin
    out = RenderResult(depth=torch.tensor([100.0, 10.0]), acc=torch.ones(2), rgb=torch.zeros(0, 3),
                       samples=RaySamples(mids=mids, weights=weights, tau=torch.zeros(2, 4)),
                       proposal=ProposalSamples(mids=mids, tau=torch.zeros(2, 4), interlevel=torch.zeros(())))
    model = type("M", (), {"scale": 1.0})()
    # Without the prior: the expected-range L1 (100 m on ray 0, its weight leaked far) and losses.beyond_weight.
    losses = compute_losses(model, out, torch.zeros(0, 3), 0, ranges, cfg)
    assert losses["depth"].item() == pytest.approx(cfg.losses.depth_weight * 90.0 / 2)
    assert losses["beyond"].item() == pytest.approx(cfg.losses.beyond_weight * 0.2 / 2)
    cfg.losses.beyond_weight = 0.0
    assert "beyond" not in compute_losses(model, out, torch.zeros(0, 3), 0, ranges, cfg)
    assert losses["empty"].item() == pytest.approx(cfg.losses.empty_weight * 0.1 / 2)
    # With the prior: the weight past the return replaces the L1, for the whole run.
    cfg.priors.lidar_prior.steps = 60
    losses = compute_losses(model, out, torch.zeros(0, 3), 0, ranges, cfg)
    assert "depth" not in losses
    assert losses["beyond"].item() == pytest.approx(cfg.priors.lidar_prior.beyond_weight * 0.2 / 2)
    (losses["empty"] + losses["beyond"]).backward()
    assert weights.grad[:, 1:3].abs().max() == 0 and weights.grad[0, 0] > 0 and weights.grad[0, 3] > 0


def test_scene_with_settings_from_another_version_still_loads(tiny_scene, tmp_path, caplog):
    # A scene written by a newer (or older) simrecon carries config keys this version lacks, and lacks
    # some it has: it must load (unknown keys ignored with a warning, missing ones defaulted), not crash.
    import shutil

    scene = tmp_path / "scene"
    shutil.copytree(tiny_scene, scene)
    info = json.loads((scene / "scene.json").read_text())
    info["config"]["floater_until"] = 0.2
    info["config"]["model"]["background"]["future_knob"] = 3
    del info["config"]["losses"]["opacity_weight"]
    (scene / "scene.json").write_text(json.dumps(info))
    with caplog.at_level("WARNING"):
        sc = load_scene(scene, device="cpu")  # a scene reads its model's settings only
    assert "model.background.future_knob" in caplog.text and "floater_until" not in caplog.text
    with caplog.at_level("WARNING"):
        cfg = scene_config(scene, read_scene_info(scene))  # training (--resume) reads them all
    assert "config.floater_until" in caplog.text and cfg.losses.opacity_weight == preset("tiny").losses.opacity_weight
    f = sc.log.cameras["front"][0]
    assert np.isfinite(sc.render(f.c2w, f.intrinsics, f.timestamp, {}).rgb).all()


def _two_image_error_map():
    from simrecon.train.error_map import ErrorMap

    # a 40x30 and a 25x20 image, 4 tiles across: 10 px and 7 px tiles, edge tiles cut by the border
    offsets = torch.tensor([0, 40 * 30, 40 * 30 + 25 * 20])
    return ErrorMap(offsets, torch.tensor([30, 20]), torch.tensor([40, 25]), tiles_across=4), offsets


def test_error_map_tiles_cover_every_pixel_and_samples_stay_in_their_tile():
    em, offsets = _two_image_error_map()
    assert em.tile_offsets.tolist() == [0, 12, 24]  # 4x3 tiles of 10 px, 4x3 of 7 px (the last row/col cut)
    flat = torch.arange(int(offsets[-1]))
    tiles = em.tile_of(flat)
    assert torch.equal(torch.bincount(tiles, minlength=24)[[0, 11, 12, 23]], torch.tensor([100, 100, 49, 4 * 6]))
    assert int(em.tile_of(torch.tensor([40 * 30 + 19 * 25 + 24]))) == 23  # last pixel of image 2: its last tile
    drawn = em.sample(20000, torch.Generator().manual_seed(0))
    assert int(drawn.min()) >= 0 and int(drawn.max()) < int(offsets[-1])
    assert len(torch.unique(drawn)) > 0.95 * int(offsets[-1])  # uniform error: every pixel is reachable
    counts = torch.bincount(em.tile_of(drawn), minlength=24).float()
    assert counts.min() > 0.8 * counts.mean()  # and every tile equally likely, cut ones included


def test_error_map_draws_where_the_error_is():
    em, offsets = _two_image_error_map()
    flat = torch.arange(int(offsets[-1]))
    err = torch.zeros(len(flat))
    err[em.tile_of(flat) == 17] = 0.3  # one tile of the second image is still wrong
    for _ in range(16):  # the others decay from the initial 1 to 0.5^16
        em.update(flat, err)
    drawn = em.sample(5000, torch.Generator().manual_seed(1))
    assert (em.tile_of(drawn) == 17).float().mean() > 0.95
    em.update(flat, torch.zeros(len(flat)))  # fixed: its running error halves (decay 0.5), the others stay ~0
    assert float(em.error[17]) == pytest.approx(0.15, rel=0.02) and float(em.error[:17].max()) < 1e-3
    em.error.zero_()  # everything fit exactly (or underflowed): the map still draws, uniformly
    counts = torch.bincount(em.tile_of(em.sample(24000, torch.Generator().manual_seed(2))), minlength=24).float()
    assert counts.min() > 0.8 * counts.mean()


def test_bad_error_sampling_is_refused(synth_small, tmp_path):
    cfg = preset("tiny")
    cfg.sampling.error_sampling = 1.5
    with pytest.raises(ValueError, match=r"error_sampling must be in \[0, 1\]"):
        reconstruct(synth_small, tmp_path / "s", cfg)


def test_error_map_is_kept_in_the_checkpoint_and_resumed(synth_small, tmp_path):
    scene = tmp_path / "s"
    reconstruct(synth_small / "log", scene, tiny(steps=4))
    saved = load_checkpoint(scene / "checkpoint.pt")["error_map"]
    assert bool((saved < 1).any()) and bool((saved == 1).any())  # drawn tiles learnt, the rest untouched
    data = json.loads((scene / "scene.json").read_text())
    data["config"]["budget"]["steps"] = 5
    (scene / "scene.json").write_text(json.dumps(data))
    reconstruct(Path(), scene, tiny(), resume=True)
    resumed = load_checkpoint(scene / "checkpoint.pt")["error_map"]
    # The resumed run started from the saved map: tiles learnt before and not drawn in its one step kept their
    # values (a fresh map would hold 1 there).
    kept = (resumed == saved) & (saved < 1)
    assert bool(kept.any())


def test_a_holdout_that_holds_out_nothing_is_said_at_training_and_eval(synth_small, tmp_path, caplog, capsys):
    frames = max(len(f) for f in load_log(synth_small / "log").cameras.values())
    spec = f"every:{2 * frames + 2}"  # the middle frame of every 2 * frames + 2: past the end of each camera
    reconstruct(synth_small / "log", tmp_path / "s", tiny(steps=1, holdout=spec))
    assert f"--holdout {spec} holds out no frame" in caplog.text and f"at most {frames} frames" in caplog.text
    assert main(["eval", str(tmp_path / "s")]) == 0
    assert f"--holdout {spec} held out no frame of its log" in capsys.readouterr().out


def test_gt_scores_say_how_much_of_the_true_sky_the_render_covers(tiny_scene, synth_small, tmp_path, monkeypatch):
    """score_gt_set's sky_opaque: the share of the set's sky pixels (infinite depth) rendered with opacity > 0.5."""
    import shutil

    from simrecon.render.image import ImageOutput
    from simrecon.scene.score import score_gt_set

    scene = load_scene(tiny_scene)
    gt = synth_small / "gt" / "ego_shift_left_2m"
    doc = json.loads((gt / "cameras.json").read_text())
    h, w = int(doc["h"]), int(doc["w"])
    sky = np.concatenate([~np.isfinite(np.load(gt / f["depth_file_path"])) for f in doc["frames"][:2]])
    assert 0 < sky.mean() < 1  # the set has sky and ground

    def render_with(acc_of_row):  # a render whose opacity depends on the image row only
        acc = np.repeat(acc_of_row(np.arange(h))[:, None], w, 1).astype(np.float32)
        return lambda *a, **k: ImageOutput(np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32), acc,
                                           np.zeros((h, w), np.int32))

    monkeypatch.setattr(scene, "render_image", render_with(lambda r: np.ones(len(r))))
    assert score_gt_set(scene, gt, 2)["sky_opaque"] == 1.0
    monkeypatch.setattr(scene, "render_image", render_with(lambda r: np.zeros(len(r))))
    assert score_gt_set(scene, gt, 2)["sky_opaque"] == 0.0
    top = h // 3  # opaque below the top third: the share is that of the sky pixels below it
    monkeypatch.setattr(scene, "render_image", render_with(lambda r: (r >= top).astype(float)))
    below = np.concatenate([~np.isfinite(np.load(gt / f["depth_file_path"]))[top:] for f in doc["frames"][:2]])
    assert score_gt_set(scene, gt, 2)["sky_opaque"] == pytest.approx(below.sum() / sky.sum(), abs=1e-3)
    # a set without depth files has no figure
    bare = tmp_path / "bare"
    shutil.copytree(gt, bare)
    doc_bare = {**doc, "frames": [{k: v for k, v in f.items() if k != "depth_file_path"} for f in doc["frames"]]}
    (bare / "cameras.json").write_text(json.dumps(doc_bare))
    assert score_gt_set(scene, bare, 2)["sky_opaque"] is None


def test_a_full_disk_stops_training_with_one_line_and_leaves_no_partial_file(synth_small, tmp_path, monkeypatch,
                                                                              capsys):
    from simrecon.scene import checkpoint as ckpt_mod

    real_save = torch.save

    def short_write(obj, f, *a, **k):  # what torch does on a full disk: part of the file, then an error
        real_save({"partial": torch.zeros(10)}, f)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 88849024 vs 88848916")

    monkeypatch.setattr(ckpt_mod.torch, "save", short_write)
    out = tmp_path / "s"
    code = main(["reconstruct", str(synth_small / "log"), "-o", str(out), "--preset", "tiny", "--steps", "8"])
    err = capsys.readouterr().err
    assert code == 2
    assert "checkpoint.pt: could not be written" in err and "disk full" in err and "--resume" in err
    assert "Traceback" not in err and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1, err
    assert not list(out.glob(".*tmp*")) and not (out / "checkpoint.pt").exists()
