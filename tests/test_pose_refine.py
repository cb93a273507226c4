"""Camera pose refinement (render/pose_refine.py, train/pose_refine.py) and the synthetic street's pose noise."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from helpers import XS, fit_steps, tiny_files

from simrecon.data.io import load_log
from simrecon.render import SceneModel
from simrecon.render.pose_refine import PoseCorrections, PoseRefineConfig, rig_times, so3_exp
from simrecon.scene.neural import load_scene
from simrecon.synth import generate
from simrecon.synth.noise import TRUE_POSES, read_true_poses
from simrecon.train import preset, reconstruct
from simrecon.train.data import TrainData, scene_box
from simrecon.train.pose_refine import poses_exact, refine_decision, training_rig
from simrecon.train.trainer import make_optimizer


def _angle_deg(rot: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(rot) - 1) / 2, -1.0, 1.0))))


@pytest.fixture(scope="module")
def noisy_xs(tmp_path_factory):
    """The XS street with 10 cm / 0.5 deg pose noise and 20 cm / 2 deg track noise."""
    out = tmp_path_factory.mktemp("noisy") / "street"
    generate(out, dataclasses.replace(XS, pose_noise_m=0.1, pose_noise_deg=0.5, track_noise_m=0.2,
                                      track_noise_deg=2.0))
    return out


def test_so3_exp_is_rodrigues_with_a_gradient_at_zero():
    w = torch.tensor([[0.3, -0.2, 0.5], [1e-6, 0.0, 0.0]], dtype=torch.float64)
    rot = so3_exp(w)
    for i in range(2):
        axis = w[i] / w[i].norm()
        k = torch.tensor([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]],
                         dtype=torch.float64)
        theta = w[i].norm()
        ref = torch.eye(3, dtype=torch.float64) + torch.sin(theta) * k + (1 - torch.cos(theta)) * k @ k
        assert torch.allclose(rot[i], ref, atol=1e-10)
    zero = torch.zeros(1, 3, requires_grad=True)
    so3_exp(zero)[0, 1, 0].backward()  # d R[1, 0] / d w_z = 1 at the identity
    assert torch.allclose(zero.grad, torch.tensor([[0.0, 0.0, 1.0]]))


def test_cameras_of_one_rig_time_share_a_correction():
    times = torch.tensor([0.1, 0.0, 0.1, 0.2, 0.0004], dtype=torch.float64)  # 0.0004: within 1 ms of 0.0
    centres = torch.tensor([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0], [3, 0, 0]], dtype=torch.float32)
    t, pivots, index = rig_times(times, centres)
    assert index.tolist() == [1, 0, 1, 2, 0]
    assert torch.allclose(t, torch.tensor([0.0002, 0.1, 0.2], dtype=torch.float64))
    assert torch.allclose(pivots[:, 0], torch.tensor([2.0, 1.0, 3.0]))


def test_held_out_times_interpolate_between_neighbours():
    poses = PoseCorrections(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.zeros(3, 3))
    with torch.no_grad():
        poses.rot[0], poses.trans[0] = torch.tensor([0.0, 0.0, 0.02]), torch.tensor([0.10, 0.0, 0.0])
        poses.trans[1] = torch.tensor([0.30, 0.2, 0.0])
    m = poses.matrix_at(0.25)  # a held-out frame a quarter of the way from rig time 0 to 1
    assert np.allclose(m[:3, 3], [0.15, 0.05, 0.0], atol=1e-6)
    assert _angle_deg(m[:3, :3]) == pytest.approx(np.degrees(0.015), abs=1e-4)
    assert np.allclose(poses.matrix_at(-5.0), poses.matrix_at(0.0))  # the nearest one's outside the span
    assert np.allclose(poses.matrix_at(9.0)[:3, 3], [0.0, 0.0, 0.0], atol=1e-7)  # rig time 2: still zero


def test_synth_pose_noise_moves_the_log_not_the_truth(noisy_xs, xs_log):
    log = load_log(noisy_xs / "log")
    truth = read_true_poses(noisy_xs / TRUE_POSES)
    clean = {f.file_path: f for f in load_log(xs_log).frames}
    assert log.extra["poses_exact"] is False and poses_exact(log) is False
    assert poses_exact(load_log(xs_log))
    errors = []
    for f in log.frames:
        true = truth[f.file_path]
        assert np.allclose(true, clean[f.file_path].c2w, atol=1e-9)  # the truth is the clean log's poses
        errors.append(_angle_deg(f.c2w[:3, :3].T @ true[:3, :3]))
        # the images are rendered at the true poses: byte for byte the clean log's
        assert (noisy_xs / "log" / f.file_path).read_bytes() == (xs_log / f.file_path).read_bytes()
    assert np.allclose(errors, 0.5, atol=1e-6)
    ego = json.loads((noisy_xs / TRUE_POSES).read_text())["ego"]
    shifts = [np.linalg.norm(np.array(e["transform_matrix"])[:3, 3] - p[:3, 3]) for e, p in zip(ego, log.ego.poses)]
    assert np.allclose(shifts, 0.1, atol=1e-9)
    moved = [np.linalg.norm(a.track.poses[:, :3, 3] - np.array([e["transform_matrix"] for e in
                                                                 json.loads((noisy_xs / TRUE_POSES).read_text())
                                                                 ["actors"][a.id]])[:, :3, 3], axis=1)
             for a in log.actors]
    assert np.allclose(np.concatenate(moved), 0.2, atol=1e-9)


def test_refinement_is_on_for_real_logs_and_off_for_exact_ones(noisy_xs, xs_log):
    auto = PoseRefineConfig()
    assert refine_decision(auto, load_log(xs_log))[0] is False
    assert refine_decision(auto, load_log(noisy_xs / "log"))[0] is True
    real = load_log(xs_log)
    real.extra = {"source": "kitti"}  # any other log is taken as real
    assert refine_decision(auto, real)[0] is True
    assert refine_decision(PoseRefineConfig(refine="off"), real)[0] is False
    assert refine_decision(PoseRefineConfig(refine="on"), load_log(xs_log))[0] is True
    with pytest.raises(ValueError, match="model.poses.refine"):
        cfg = preset("tiny")
        cfg.model.poses.refine = "maybe"
        cfg.check()


def test_refinement_recovers_a_planted_offset(synth_small):
    """Fit a tiny scene to the exact poses, then move one rig time's cameras 5 cm along x in the log: the learnt
    correction moves them back towards the truth."""
    torch.manual_seed(0)
    log = load_log(synth_small / "log")
    cfg = preset("tiny")
    box = scene_box(log)
    data = TrainData(log, set(), near=0.02 * float(np.mean(box.half)), device=torch.device("cpu"))
    times, pivots, frame_rig = training_rig(data.times, data.c2w)
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance, rig=(times, pivots)).train()
    gen = torch.Generator().manual_seed(0)

    def steps(n: int, optim: torch.optim.Optimizer) -> None:
        fit_steps(model, data, gen, n, optim,
                  correct=lambda rays, pixels: model.poses.correct_rays(rays, frame_rig[data.frame_of(pixels)]))

    steps(150, make_optimizer(model, 1e-2, pose_lr_scale=1e-9, rotation_lr_scale=1e-9))  # the scene, exact poses
    k = 2
    true_centres = data.c2w[frame_rig == k, :3, 3].clone()
    data.c2w[frame_rig == k, 0, 3] += 0.05  # the planted offset
    with torch.no_grad():
        model.poses.rot.zero_()
        model.poses.trans.zero_()
    pose_optim = make_optimizer(model, 2e-3, pose_lr_scale=1.0, rotation_lr_scale=0.1)
    for g in pose_optim.param_groups:  # the poses alone learn
        g["lr"] = g["lr"] if g.get("poses") else 0.0
    steps(60, pose_optim)
    m = torch.as_tensor(model.poses.matrix_at(float(times[k])), dtype=torch.float32)
    refined = (m[:3, :3] @ data.c2w[frame_rig == k, :3, 3].T).T + m[:3, 3]
    before = 0.05
    after = float((refined - true_centres).norm(dim=1).max())
    assert model.poses.delta[k, 3] < -0.01  # the correction points back along -x
    assert after < 0.7 * before
    others = model.poses.delta.detach()[[i for i in range(len(times)) if i != k], 3:].norm(dim=1)
    assert float(others.max()) < float(model.poses.delta[k, 3:].detach().norm())  # the others moved less


def test_scene_keeps_corrections_and_old_scenes_open(noisy_xs, tmp_path):
    cfg = tiny_files(3)
    cfg.holdout, cfg.model.poses.start = "every:2", 0.0
    res = reconstruct(noisy_xs / "log", tmp_path / "on", cfg)
    state = torch.load(res.scene_dir / "model.pt", weights_only=True)
    assert "poses.trans" in state and state["poses.trans"].abs().sum() > 0  # learnt, on a real-like log
    scene = load_scene(res.scene_dir, device="cpu")
    assert torch.equal(scene.model.poses.trans.detach(), state["poses.trans"])
    held = [f for f in scene.log.frames if f.file_path in set(scene.info.holdout)]
    assert held and all(float(f.timestamp) not in scene.model.poses.times.tolist() for f in held)
    f = held[0]
    expected = scene.model.poses.matrix_at(f.timestamp) @ f.c2w
    assert np.allclose(scene.refined(f.c2w, f.timestamp), expected)
    assert not np.allclose(scene.refined(f.c2w, f.timestamp), f.c2w)

    cfg.model.poses.refine = "off"  # as a scene from before pose refinement: no corrections in its weights
    res = reconstruct(noisy_xs / "log", tmp_path / "off", cfg)
    assert not any(k.startswith("poses.") for k in torch.load(res.scene_dir / "model.pt", weights_only=True))
    scene = load_scene(res.scene_dir, device="cpu")
    assert scene.model.poses is None
    assert np.array_equal(scene.refined(f.c2w, f.timestamp), f.c2w)
