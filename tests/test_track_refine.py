"""Actor track refinement (render/track_refine.py): interpolation, the on/off decision, a planted offset
recovered, and every render of a scene (logged layout or explicit placements) using the corrections."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from helpers import XS, fit_steps, tiny_files

from simrecon.data.geometry import make_pose, rot_z
from simrecon.data.io import load_log
from simrecon.data.model import Track
from simrecon.data.scene_api import ActorPlacement
from simrecon.render import SceneModel
from simrecon.render.poses import TrackTensor
from simrecon.render.track_refine import TrackCorrections, TrackRefineConfig, yaw_matrix
from simrecon.scene.neural import load_scene
from simrecon.synth import generate
from simrecon.train import preset, reconstruct
from simrecon.train.data import TrainData, scene_box
from simrecon.train.pose_refine import track_refine_decision, tracks_exact
from simrecon.train.trainer import make_optimizer


def _tracks() -> list[TrackTensor]:
    moving = Track(np.array([0.0, 1.0, 3.0]), np.stack([make_pose(rot_z(0.1 * i), np.array([i, 0.0, 0.0]))
                                                        for i in range(3)]))
    still = Track(np.array([0.0]), make_pose(np.eye(3), np.array([5.0, 5.0, 0.0]))[None])
    return [TrackTensor(moving, static=False), TrackTensor(still, static=True)]


def test_corrections_interpolate_in_time_and_act_in_the_box_frame():
    fix = TrackCorrections(_tracks())
    with torch.no_grad():
        fix.trans[0, :3] = torch.tensor([[0.0, 0.2, 0.0], [0.0, 0.4, 0.0], [0.0, 0.0, 0.0]])
        fix.yaw[0, :3] = torch.tensor([0.0, 0.1, 0.3])
        fix.trans[1, 0] = torch.tensor([1.0, 0.0, 0.0])
    t = torch.tensor([-1.0, 0.5, 2.0, 9.0], dtype=torch.float64)
    trans, yaw = fix.at(t)
    # held before the first keyframe and after the last; linear between them
    assert torch.allclose(trans[0, :, 1], torch.tensor([0.2, 0.3, 0.2, 0.0]))
    assert torch.allclose(yaw[0], torch.tensor([0.0, 0.05, 0.2, 0.3]))
    assert torch.allclose(trans[1], torch.tensor([1.0, 0.0, 0.0]).expand(4, 3))  # a static actor: one correction
    # P @ [Rz(yaw), t]: a box heading +y (yaw 90 deg) moved 1 m along its own length goes +1 m in world y
    rot = torch.as_tensor(rot_z(np.pi / 2), dtype=torch.float32).expand(2, 4, 3, 3)
    r2, t2 = fix.apply(rot, torch.zeros(2, 4, 3), t)
    assert torch.allclose(t2[1, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(r2[0, 3], rot[0, 3] @ yaw_matrix(torch.tensor(0.3)), atol=1e-6)
    m = fix.matrix_at(0, 0.5)  # the numpy form says the same
    assert np.allclose(m[:3, 3], [0.0, 0.3, 0.0]) and np.allclose(m[:3, :3], yaw_matrix(torch.tensor(0.05)).numpy())


def test_a_one_frame_log_has_corrections_too():
    still = _tracks()[1:]  # every track with one keyframe (crashed once: interpolation read a second column)
    fix = TrackCorrections(still)
    with torch.no_grad():
        fix.trans[0, 0] = torch.tensor([0.5, 0.0, 0.0])
    trans, yaw = fix.at(torch.tensor([-1.0, 0.0, 4.0], dtype=torch.float64))
    assert torch.allclose(trans[0], torch.tensor([0.5, 0.0, 0.0]).expand(3, 3)) and torch.equal(yaw, torch.zeros(1, 3))
    assert fix.regulariser(1.0, 1.0).item() == pytest.approx(0.25)  # over the one keyframe, not the padding


def test_the_regulariser_counts_real_keyframes_and_rewards_smooth_paths():
    fix = TrackCorrections(_tracks())
    assert fix.regulariser(1.0, 1.0).item() == 0.0
    with torch.no_grad():
        fix.trans[0, :, 0] = torch.tensor([0.1, 0.1, 0.1])  # smooth: only the size is penalised
    smooth = fix.regulariser(0.0, 1.0).item()
    with torch.no_grad():
        fix.trans[0, :, 0] = torch.tensor([0.0, 0.3, 0.0])  # a jump
    assert smooth == 0.0 and fix.regulariser(0.0, 1.0).item() == pytest.approx(0.36)
    with torch.no_grad():
        fix.trans.zero_()
        fix.trans[1, 1:] = 5.0  # padding of the one-keyframe track: not a keyframe, not penalised
    assert fix.regulariser(1.0, 1.0).item() == 0.0


@pytest.fixture(scope="module")
def track_noisy(tmp_path_factory):
    out = tmp_path_factory.mktemp("tracks") / "street"
    generate(out, dataclasses.replace(XS, track_noise_m=0.2, track_noise_deg=2.0))
    return out


def test_refinement_is_on_for_noisy_tracks_and_off_for_exact_ones(track_noisy, xs_log):
    noisy, exact = load_log(track_noisy / "log"), load_log(xs_log)
    cfg = TrackRefineConfig()
    assert not tracks_exact(noisy) and tracks_exact(exact)
    assert track_refine_decision(cfg, noisy, True)[0] and not track_refine_decision(cfg, exact, True)[0]
    assert track_refine_decision(TrackRefineConfig(refine="on"), exact, True)[0]
    assert not track_refine_decision(TrackRefineConfig(refine="on"), exact, False)[0]  # no actor fields
    del noisy.extra["tracks_exact"]  # a real log says nothing: refined
    noisy.extra.pop("source")
    assert track_refine_decision(cfg, noisy, True) == (True, "auto: a log without exact tracks")


def test_refinement_recovers_a_planted_offset(synth_small):
    """Fit a tiny scene to the exact tracks, then move the car ahead (car_1) 25 cm sideways in the log: the learnt
    correction moves it back."""
    torch.manual_seed(0)
    log = load_log(synth_small / "log")
    cfg = preset("tiny")
    box = scene_box(log)
    data = TrainData(log, set(), near=0.02 * float(np.mean(box.half)), device=torch.device("cpu"))
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance, refine_tracks=True).train()
    k = [a.id for a in log.actors].index("car_1")
    gen = torch.Generator().manual_seed(0)

    def steps(n: int, optim: torch.optim.Optimizer) -> None:
        fit_steps(model, data, gen, n, optim, batch=2048)

    steps(200, make_optimizer(model, 1e-2, track_lr_scale=1e-9, yaw_lr_scale=1e-9))  # the scene, exact tracks
    with torch.no_grad():  # the planted offset: the log's car_1 0.25 m to its left (box +y), every keyframe
        model.tracks[k].trans += model.tracks[k].trans.new_tensor([0.0, 0.25, 0.0])
    model._bank = None
    track_optim = make_optimizer(model, 1e-2, track_lr_scale=0.5, yaw_lr_scale=0.01)
    for g in track_optim.param_groups:  # the corrections alone learn
        g["lr"] = g["lr"] if g.get("poses") else 0.0
    steps(80, track_optim)
    n = int(model.track_fix.length[k])
    side = model.track_fix.trans.detach()[k, :n, 1]
    assert float(side.mean()) < -0.08  # points back along -y, towards the truth
    others = [i for i in range(len(log.actors)) if i != k and not log.actors[i].static]
    assert float(model.track_fix.trans.detach()[others].abs().max()) < float(side.abs().mean())


def test_scenes_keep_corrections_and_placements_use_them(track_noisy, tmp_path):
    cfg = tiny_files(3)
    cfg.model.poses.start = 0.0
    reconstruct(track_noisy / "log", tmp_path / "on", cfg)
    scene = load_scene(tmp_path / "on", renderer="reference")
    assert scene.model.track_fix is not None
    k = 1
    with torch.no_grad():  # a visible correction, as if training had learnt it
        scene.model.track_fix.trans[k] = torch.tensor([0.4, -0.3, 0.0])
        scene.model.track_fix.yaw[k] = 0.2
    actor = scene.log.actors[k]
    f = scene.log.frames[0]
    logged = actor.pose_at(f.timestamp)
    placed = scene.placed({actor.id: ActorPlacement(actor.id, logged)}, f.timestamp)
    assert np.allclose(placed[0][1], logged @ scene.model.track_fix.matrix_at(k, f.timestamp))
    # an explicit placement at the logged pose renders as the logged layout does (both corrected)
    everyone = {a.id: ActorPlacement(a.id, a.pose_at(f.timestamp)) for a in scene.log.actors
                if a.pose_at(f.timestamp) is not None}
    a = scene.render_image(f.c2w, f.intrinsics, f.timestamp, f.camera, placements=everyone)
    b = scene.render_image(f.c2w, f.intrinsics, f.timestamp, f.camera)
    assert np.abs(a.rgb - b.rgb).max() < 1e-4 and (a.instance > 0).sum() == (b.instance > 0).sum()
    off = tiny_files(3)
    off.model.tracks.refine = "off"
    reconstruct(track_noisy / "log", tmp_path / "off", off)
    assert load_scene(tmp_path / "off").model.track_fix is None


def test_a_one_timestamp_log_with_moving_actors_trains_and_evaluates(xs_log, tmp_path):
    """PandaSet's one-frame sample crashed training twice (the track bank and the corrections read a second
    keyframe column): a log cut to its first timestamp, moving actors and all, trains and evaluates."""
    import shutil

    from helpers import edit_log

    from simrecon.scene.evaluate import evaluate

    root = tmp_path / "log"
    shutil.copytree(xs_log, root)

    def first_only(data):
        t0 = min(f["timestamp"] for f in data["frames"])
        keep = lambda items: [x for x in items if abs(x["timestamp"] - t0) < 1e-9]  # noqa: E731
        data["frames"], data["lidar"], data["ego"] = keep(data["frames"]), keep(data["lidar"]), keep(data["ego"])
        for a in data["actors"]:
            a["track"] = keep(a["track"]) or a["track"][:1]
        data["tracks_exact"] = False  # track refinement on: the corrections are what crashed

    edit_log(root, first_only)
    assert all(len(a.track.timestamps) == 1 for a in load_log(root).actors)
    cfg = tiny_files(2)
    result = reconstruct(root, tmp_path / "scene", cfg)
    assert result.status == "complete"
    scene = load_scene(tmp_path / "scene", device="cpu")
    assert scene.model.track_fix is not None
    assert "lidar_depth" in evaluate(scene)
