"""Rolling shutter: the format (v1.2), each pixel's exposure time, camera motion, rays posed per line, the
synthetic street's rolling-shutter images, and training / eval using them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from simrecon.data import load_log
from simrecon.data.geometry import make_pose, rot_y, rot_z
from simrecon.data.io import log_to_json, parse_log, validate_log
from simrecon.data.model import Intrinsics
from simrecon.data.shutter import RollingShutter, camera_motion, rotation_exp, rotation_log, shutter_pose
from simrecon.render.poses import PRESENCE_SLACK_S, TrackTensor
from simrecon.render.rays import shutter_rays
from simrecon.data.model import Track
from simrecon.synth import SynthConfig, generate
from simrecon.synth.render import render_camera, world_at
from simrecon.synth.rig import CAMERAS
from simrecon.synth.scene import build_street
from simrecon.synth.shutter import ego_pose_at, render_rolling
from simrecon.train.data import TrainData


def test_offsets_follow_the_readout_direction():
    rs = RollingShutter(0.04, "top_to_bottom")
    off = rs.offsets(w=3, h=4)
    # line v is read (v + 0.5) / 4 of the way through; the frame's timestamp is the middle of the readout
    assert np.allclose(off[:, 0], [(0.125 - 0.5) * 0.04, (0.375 - 0.5) * 0.04, (0.625 - 0.5) * 0.04,
                                   (0.875 - 0.5) * 0.04])
    assert np.allclose(off, off[:, :1])  # one time per line
    assert np.allclose(RollingShutter(0.04, "bottom_to_top").offsets(3, 4), off[::-1])
    side = RollingShutter(0.04, "left_to_right").offsets(4, 3)
    assert np.allclose(side[0], off[:, 0]) and np.allclose(side, side[:1])
    assert np.allclose(RollingShutter(0.04, "right_to_left").offsets(4, 3), side[:, ::-1])
    assert not RollingShutter(0.0).offsets(5, 5).any()
    with pytest.raises(ValueError, match="direction"):
        RollingShutter(0.03, "diagonal")


def test_rotation_log_and_exp_are_inverse():
    rng = np.random.default_rng(0)
    for _ in range(5):
        w = rng.normal(size=3) * 0.7
        assert np.allclose(rotation_log(rotation_exp(w)), w, atol=1e-9)
    assert np.allclose(rotation_log(np.eye(3)), 0)


def test_camera_motion_recovers_a_constant_velocity_and_yaw_rate():
    # A camera driving at 10 m/s along its view axis (-z) while yawing at 0.2 rad/s about its up axis (+y).
    v, w, times = 10.0, 0.2, np.arange(5) * 0.1
    poses = []
    for t in times:
        rot = rot_y(w * t)
        # integrate the body-frame velocity (0, 0, -v) exactly: a circular arc
        x, z = (-v / w) * (1 - math.cos(w * t)), (-v / w) * math.sin(w * t)
        poses.append(make_pose(rot, np.array([x, 0.0, z])))
    motion = camera_motion(np.stack(poses), times)
    for m in motion:
        assert np.allclose(m[3:], [0.0, w, 0.0], atol=1e-9)  # the angular rate exactly
        # the translation is the chord of a 0.02 rad arc: its length is short of the arc by 0.02**2 / 24 of it
        assert np.linalg.norm(m[:3] - [0.0, 0.0, -v]) < 1e-4 * v
    assert not camera_motion(np.stack(poses[:1]), times[:1]).any()  # a single frame does not move


def test_shutter_rays_closed_form_translation_and_rotation():
    c2w = torch.as_tensor(make_pose(rot_z(0.3), np.array([1.0, 2.0, 3.0])), dtype=torch.float32)[None]
    d = torch.tensor([[0.0, 0.0, -1.0], [0.6, 0.0, -0.8]])
    dt = torch.tensor([-0.015, 0.01], dtype=torch.float64)
    t0 = torch.tensor([5.0, 5.0], dtype=torch.float64)
    app = torch.zeros(2, dtype=torch.long)
    # pure translation at 10 m/s along the camera's x axis: origins move by 10 dt along the world image of x
    moving = torch.tensor([[10.0, 0, 0, 0, 0, 0]] * 2)
    rays = shutter_rays(c2w, d, t0, app, 0.1, moving, dt)
    x_axis = c2w[0, :3, 0]
    assert torch.allclose(rays.origins, c2w[0, :3, 3] + (10 * dt.float())[:, None] * x_axis, atol=1e-6)
    assert torch.allclose(rays.dirs, d @ c2w[0, :3, :3].T, atol=1e-6)
    assert torch.allclose(rays.times, t0 + dt)
    # pure rotation at 2 rad/s about the camera's y axis: the directions turn by 2 dt about it
    turning = torch.tensor([[0, 0, 0, 0, 2.0, 0]] * 2)
    rays = shutter_rays(c2w, d, t0, app, 0.1, turning, dt)
    for i in range(2):
        expect = c2w[0, :3, :3].double() @ torch.as_tensor(rot_y(2 * float(dt[i]))) @ d[i].double()
        assert torch.allclose(rays.dirs[i].double(), expect, atol=1e-6)
        assert torch.allclose(rays.origins[i], c2w[0, :3, 3])
    assert torch.allclose(rays.view_cos, -d[:, 2])  # depth along the ray's own line's view axis
    # the numpy reference pose of the same motion gives the same ray
    m = np.array([3.0, -1.0, 2.0, 0.1, -0.4, 0.3])
    rays = shutter_rays(c2w, d[:1], t0[:1], app[:1], 0.1, torch.as_tensor(m, dtype=torch.float32)[None], dt[:1])
    ref = shutter_pose(c2w[0].double().numpy(), m, float(dt[0]))
    assert np.allclose(rays.origins[0].numpy(), ref[:3, 3], atol=1e-5)
    assert np.allclose(rays.dirs[0].numpy(), ref[:3, :3] @ d[0].numpy(), atol=1e-5)


def _tiny_log(tmp_path, name, readout, **kw):
    cfg = SynthConfig(seconds=0.3, width=32, height=18, ground_truth=False, antialias=1, lidar_beams=4,
                      lidar_azimuths=64, rolling_shutter_s=readout, **kw)
    return load_log(generate(tmp_path / name, cfg))


def test_the_format_round_trips_and_bad_values_are_one_line(tmp_path):
    log = _tiny_log(tmp_path, "rs", 0.03)
    raw = json.loads((log.root / "transforms.json").read_text())
    assert raw["simrecon_version"] == 1.2
    assert raw["frames"][0]["rolling_shutter"] == {"readout_s": 0.03, "direction": "top_to_bottom"}
    again, problems, _ = parse_log(log.root, log_to_json(log))
    assert not problems
    assert [f.rolling_shutter for f in again.frames] == [f.rolling_shutter for f in log.frames]
    # a top-level default applies to every frame without its own
    del raw["frames"][0]["rolling_shutter"]
    raw["rolling_shutter"] = {"readout_s": 0.02, "direction": "left_to_right"}
    (log.root / "transforms.json").write_text(json.dumps(raw))
    assert load_log(log.root).frames[0].rolling_shutter == RollingShutter(0.02, "left_to_right")
    raw["frames"][1]["rolling_shutter"] = {"readout_s": -1, "direction": "top_to_bottom"}
    raw["frames"][2]["rolling_shutter"] = {"readout_s": 0.01, "direction": "sideways"}
    (log.root / "transforms.json").write_text(json.dumps(raw))
    problems = [str(p) for p in validate_log(log.root, decode=False)]
    assert any("frames[1].rolling_shutter.readout_s" in p and "[0, 1]" in p for p in problems)
    assert any("frames[2].rolling_shutter.direction" in p and "top_to_bottom" in p for p in problems)


def test_synthetic_lines_are_rendered_at_their_own_time():
    street = build_street(0.3, 10.0, 0, 10.0)
    cam = CAMERAS[0]
    intr = Intrinsics(20.0, 20.0, 12.0, 8.0, 24, 16, "PINHOLE")
    rs = RollingShutter(0.03)
    view = render_rolling(street, cam.camera_to_vehicle(), intr, 0.1, rs, 0, 1)
    offsets = rs.offsets(intr.w, intr.h)[:, 0]
    for v in (0, 7, 15):  # line v equals a global-shutter image taken at that line's time
        t = 0.1 + offsets[v]
        ref = render_camera(world_at(street, t), ego_pose_at(street, t) @ cam.camera_to_vehicle(), intr, 0, 1)
        assert np.array_equal(view.rgb[v], ref.rgb[v]) and np.allclose(view.depth[v], ref.depth[v])
    still = render_camera(world_at(street, 0.1), ego_pose_at(street, 0.1) @ cam.camera_to_vehicle(), intr, 0, 1)
    assert not np.array_equal(view.rgb, still.rgb)  # 30 cm of travel over the readout shows
    zero = render_rolling(street, cam.camera_to_vehicle(), intr, 0.1, RollingShutter(0.0), 0, 1)
    assert np.array_equal(zero.rgb, still.rgb)
    # the ego's pose extrapolates before the first timestamp at the same speed
    assert np.allclose(ego_pose_at(street, -0.01)[:3, 3] - ego_pose_at(street, 0.0)[:3, 3], [-0.1, 0, 0])


def test_training_rays_of_one_frame_move_with_their_line(tmp_path):
    log = _tiny_log(tmp_path, "rs", 0.03, ego_speed=10.0)
    data = TrainData(log, set(), 0.1, torch.device("cpu"))
    assert data.shutter
    f = 0  # the front camera's first frame: 18 lines, 30 ms, 10 m/s forward
    w, h = data.frame_w[f].item(), data.frame_h[f].item()
    first, last = torch.tensor([0]), torch.tensor([(h - 1) * w])
    r0, _ = data.pixel_rays(data.offsets[f] + first)
    r1, _ = data.pixel_rays(data.offsets[f] + last)
    travelled = (r1.origins - r0.origins).norm().item()
    assert travelled == pytest.approx(10.0 * 0.03 * (h - 1) / h, rel=1e-3)
    assert (r1.times - r0.times).item() == pytest.approx(0.03 * (h - 1) / h)
    off = TrainData(log, set(), 0.1, torch.device("cpu"), rolling_shutter=False)
    g0, _ = off.pixel_rays(off.offsets[f] + first)
    g1, _ = off.pixel_rays(off.offsets[f] + last)
    assert not off.shutter and torch.equal(g0.origins, g1.origins) and torch.equal(g0.times, g1.times)


def test_tracks_stay_present_half_a_readout_past_their_ends():
    track = TrackTensor(Track(np.array([0.0, 0.1]), np.stack([np.eye(4)] * 2)), static=False)
    t = torch.tensor([-0.02, 0.12, -(PRESENCE_SLACK_S + 0.01)], dtype=torch.float64)
    assert track.at(t)[2].tolist() == [True, True, False]


def test_eval_renders_held_out_frames_line_by_line_as_trained(tmp_path):
    from helpers import tiny_files

    from simrecon.scene import load_scene
    from simrecon.train import reconstruct

    log = _tiny_log(tmp_path, "rs", 0.03, ego_speed=10.0)
    cfg = tiny_files(steps=3)
    reconstruct(log.root, tmp_path / "scene", cfg)
    scene = load_scene(tmp_path / "scene", renderer="reference")
    frame = log.frames[0]
    shutter = scene.shutter_for(frame)
    assert shutter is not None and torch.allclose(shutter.motion[2], torch.tensor(-10.0, dtype=torch.float64),
                                                  atol=1e-6)
    seen = []

    def recording(rays, layout):
        seen.append(rays)
        return scene.model(rays, layout)

    scene.ray_renderer = lambda: (recording, 100000)
    scene.render_image(frame.c2w, frame.intrinsics, frame.timestamp, frame.camera, shutter=shutter)
    rays = seen[-1]
    h, w = frame.intrinsics.h, frame.intrinsics.w
    top, bottom = rays[0:1], rays[(h - 1) * w:(h - 1) * w + 1]
    assert (bottom.origins - top.origins).norm().item() == pytest.approx(10.0 * 0.03 * (h - 1) / h, rel=1e-3)
    assert (bottom.times - top.times).item() == pytest.approx(0.03 * (h - 1) / h)
    scene.render_image(frame.c2w, frame.intrinsics, frame.timestamp, frame.camera)  # no shutter: one pose
    assert torch.equal(seen[-1].origins[0], seen[-1].origins[-1])
    scene.info.config["sampling"]["rolling_shutter"] = False  # a scene trained without it renders without it
    assert scene.shutter_for(frame) is None


def test_waymo_rolling_shutter_cameras_are_posed_at_the_middle_of_their_readout(tmp_path):
    from fixtures_readers import WAYMO_CAM_IN_VEHICLE, WAYMO_RS, waymo_pose, write_waymo

    from simrecon.data.readers import convert
    from simrecon.data.readers.waymo import WAYMO_CAM_TO_GL

    seg = write_waymo(tmp_path / "seg" / "segment-test.tfrecord", n=2, rolling=True)
    log = convert("waymo", seg.parent, tmp_path / "out")
    rs = WAYMO_RS
    readout = rs["done"] - rs["trigger"] - rs["shutter"]
    dt = (rs["trigger"] + rs["done"]) / 2  # the middle of the readout, after the image's pose_timestamp
    shift = log.ego.poses[0][:3, 3] - waymo_pose(0)[:3, 3]  # the reader puts the first ego position at the origin
    for i, f in enumerate(log.frames):
        assert f.rolling_shutter.direction == "left_to_right"
        # times near 1.5e9 s are doubles with a 2.4e-7 s step: differences of them are good to ~1e-6 s
        assert f.rolling_shutter.readout_s == pytest.approx(readout, abs=1e-6)
        assert f.timestamp - log.lidar[i].timestamp == pytest.approx(0.02 + dt, abs=1e-6)
        pose = waymo_pose(i)
        moved = pose.copy()  # the image's pose moved by its velocity to the middle of the readout
        moved[:3, 3] += np.array(rs["v"]) * dt
        moved[:3, :3] = rotation_exp(np.array(rs["w"]) * dt) @ pose[:3, :3]
        expect = moved @ WAYMO_CAM_IN_VEHICLE @ WAYMO_CAM_TO_GL
        assert np.allclose(f.c2w[:3, :3], expect[:3, :3], atol=1e-9)
        assert np.allclose(f.c2w[:3, 3], expect[:3, 3] + shift, atol=1e-4)  # 10 m/s x 1e-6 s, and the same
    plain = convert("waymo", write_waymo(tmp_path / "g" / "segment-test.tfrecord", n=1).parent, tmp_path / "o2")
    assert plain.frames[0].rolling_shutter is None  # a global-shutter calibration (5)
