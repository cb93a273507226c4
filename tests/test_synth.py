"""The synthetic street: valid output, determinism, and geometry proven against the renders."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
from PIL import Image

from simrecon.data import load_log
from simrecon.synth import REMOVED_ACTOR, SHIFTS, SynthConfig, generate
import torch

from simrecon.synth.raycast import cast
from simrecon.synth.render import world_at
from simrecon.synth.scene import build_street

from helpers import SMALL


def _gt(root, name):
    return json.loads((root / "gt" / name / "cameras.json").read_text())


def test_output_is_a_valid_log_with_all_ground_truth(synth_small):
    log = load_log(synth_small / "log")
    assert sorted(log.cameras) == ["front", "front_left", "front_right"]
    assert len(log.frames) == 15 and len(log.lidar) == 5 and log.ego is not None
    assert {a.id for a in log.actors} >= {"car_0", "car_1", "ped_0", "parked_0"}
    assert {a.cls for a in log.actors} == {"car", "pedestrian"}
    for name in list(SHIFTS) + ["actor_removed"]:
        gt = _gt(synth_small, name)
        assert len(gt["frames"]) == 5 and gt["w"] == 160 and gt["h"] == 96
        depth = np.load(synth_small / "gt" / name / gt["frames"][0]["depth_file_path"])
        assert depth.shape == (96, 160) and depth.dtype == np.float32
    actors = json.loads((synth_small / "gt" / "actors.json").read_text())["actors"]
    assert all((synth_small / "gt" / a["mesh"]).is_file() and (synth_small / "gt" / a["box_mesh"]).is_file()
               for a in actors)


def test_same_seed_same_bytes_other_seed_other_street(tmp_path, synth_small):
    cfg = SynthConfig(**{**SMALL.__dict__, "ground_truth": False})
    generate(tmp_path / "a", cfg)
    for rel in ["log/images/front/000002.png", "log/images/front_left/000004.png", "log/lidar/000003.npy"]:
        assert filecmp.cmp(tmp_path / "a" / rel, synth_small / rel, shallow=False), rel
    a, b = (json.loads((root / "log/transforms.json").read_text()) for root in (tmp_path / "a", synth_small))
    assert a.pop("synth_config")["ground_truth"] is False and b.pop("synth_config")["ground_truth"] is True
    assert a == b
    generate(tmp_path / "b", SynthConfig(**{**cfg.__dict__, "seed": 1}))
    assert not filecmp.cmp(tmp_path / "b/log/images/front/000002.png", synth_small / "log/images/front/000002.png",
                           shallow=False)


def test_existing_output_is_refused_and_nothing_half_written(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        generate(tmp_path / "out", SynthConfig(seconds=0.2, width=32, height=32))
    with pytest.raises(ValueError, match="--width"):
        generate(tmp_path / "new", SynthConfig(width=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary folders left behind


def test_lidar_points_land_on_the_rendered_surfaces(synth_small):
    """A camera ray aimed at a lidar point must stop at it (seen by both) or before it (occluded from the
    camera), never pass through it: a point floating off the surfaces the camera sees means a frame bug."""
    log = load_log(synth_small / "log")
    street = build_street(SMALL.seconds, SMALL.fps, SMALL.seed)
    gaps = []
    for sweep in log.lidar[::2]:
        frame = next(f for f in log.cameras["front"] if f.timestamp == sweep.timestamp)
        pts = sweep.load_world(log.root)
        uv, depth = frame.project(pts)
        inside = (depth > 1) & (uv[:, 0] >= 0) & (uv[:, 0] < 160) & (uv[:, 1] >= 0) & (uv[:, 1] < 96)
        origin = frame.c2w[:3, 3]
        rays = pts[inside] - origin
        dist = np.linalg.norm(rays, axis=1)
        hits = cast(torch.tensor(np.broadcast_to(origin, rays.shape).copy(), dtype=torch.float32),
                    torch.tensor(rays / dist[:, None], dtype=torch.float32), world_at(street, frame.timestamp).boxes)
        gaps.append(hits.t.numpy() - dist)  # 0: same surface; < 0: occluded from the camera; > 0: passes through
    gap = np.concatenate(gaps)
    assert len(gap) > 1000
    # 1 cm covers float32 ray casting at up to 80 m; everything else is an exact identity.
    assert np.mean(np.abs(gap) < 0.01) > 0.8
    assert np.mean(gap > 0.01) < 0.001


def test_actor_box_centre_projects_onto_the_actors_pixels(synth_small):
    log = load_log(synth_small / "log")
    gt = _gt(synth_small, "actor_removed")  # front camera on the logged path: instance ids for every pixel
    actors = {a["id"]: a for a in json.loads((synth_small / "gt" / "actors.json").read_text())["actors"]}
    checked = 0
    for entry in gt["frames"]:
        frame = next(f for f in log.cameras["front"] if f.timestamp == entry["timestamp"])
        instance = np.array(Image.open(synth_small / "gt/actor_removed" / entry["instance_file_path"]))
        for actor in log.actors:
            pose = actor.pose_at(frame.timestamp)
            if actor.id == REMOVED_ACTOR or pose is None:
                continue
            (u, v), depth = (x[0] for x in frame.project(pose[None, :3, 3]))
            if depth < 2 or not (0 <= u < 160 and 0 <= v < 96):
                continue
            ids = instance[int(v) - 1:int(v) + 2, int(u) - 1:int(u) + 2]  # a car's centre can be a glass seam
            if actor.cls == "car" and depth < 40:
                assert actors[actor.id]["instance_id"] in ids, (actor.id, frame.timestamp)
                checked += 1
    assert checked >= 5


def test_lane_shift_camera_is_the_logged_camera_moved_along_the_vehicle_left_axis(synth_small):
    log = load_log(synth_small / "log")
    for name, shift in SHIFTS.items():
        gt = _gt(synth_small, name)
        assert gt["ego_shift_left_m"] == shift
        for entry in gt["frames"]:
            t = entry["timestamp"]
            logged = next(f for f in log.cameras["front"] if f.timestamp == t).c2w
            moved = np.array(entry["transform_matrix"])
            left = log.ego.pose_at(t)[:3, 1]  # vehicle y axis in world
            np.testing.assert_allclose(moved[:3, 3] - logged[:3, 3], shift * left, atol=1e-9)
            np.testing.assert_allclose(moved[:3, :3], logged[:3, :3], atol=1e-12)


def test_removed_actor_only_changes_pixels_inside_its_box(synth_small):
    log = load_log(synth_small / "log")
    car = log.actor(REMOVED_ACTOR)
    gt = _gt(synth_small, "actor_removed")
    changed_any = False
    for entry in gt["frames"]:
        frame = next(f for f in log.cameras["front"] if f.timestamp == entry["timestamp"])
        with_car = np.array(Image.open(log.root / frame.file_path), dtype=int)
        without = np.array(Image.open(synth_small / "gt/actor_removed" / entry["file_path"]), dtype=int)
        vv, uu = np.nonzero(np.abs(with_car - without).sum(-1) > 0)
        if len(uu) == 0:
            continue
        changed_any = True
        uv, depth = frame.project(car.corners_at(frame.timestamp))
        assert np.all(depth > 0)
        assert uu.min() >= np.floor(uv[:, 0].min()) - 1 and uu.max() <= np.ceil(uv[:, 0].max()) + 1
        assert vv.min() >= np.floor(uv[:, 1].min()) - 1 and vv.max() <= np.ceil(uv[:, 1].max()) + 1
    assert changed_any


def test_ground_depth_matches_camera_height(synth_small):
    """Bottom-centre pixel sees the road: depth = camera height / tan(angle below the horizon)."""
    gt = _gt(synth_small, "ego_shift_right_1m")
    depth = np.load(synth_small / "gt/ego_shift_right_1m" / gt["frames"][0]["depth_file_path"])
    v = 95
    angle_below = (v + 0.5 - gt["cy"]) / gt["fl_y"]  # tan of the angle below the optical axis
    expected = 1.55 / angle_below
    assert depth[v, 80] == pytest.approx(expected, rel=1e-4)
    assert np.isinf(depth[0]).any()  # the top row sees sky somewhere


def test_ground_truth_scene_reproduces_the_log_and_honours_placements(synth_small):
    from simrecon.data.scene_api import ActorPlacement, RenderableScene, logged_placements
    from simrecon.synth import GroundTruthScene

    scene = GroundTruthScene.from_log(synth_small / "log")
    assert isinstance(scene, RenderableScene)
    frame = scene.log.cameras["front"][2]
    placements = logged_placements(scene.log, frame.timestamp)
    out = scene.render(frame.c2w, frame.intrinsics, frame.timestamp, placements)
    logged = np.array(Image.open(scene.log.root / frame.file_path))
    assert np.array_equal((out.rgb * 255 + 0.5).astype(np.uint8), logged)  # the same renderer, bit for bit
    # Move car_1 two metres to its left: its pixels move, and it keeps its instance name.
    pose = placements["car_1"].pose.copy()
    pose[:3, 3] += pose[:3, 1] * 2.0
    moved = scene.render(frame.c2w, frame.intrinsics, frame.timestamp,
                         {**placements, "car_1": ActorPlacement("car_1", pose)})
    k = out.instance_names.index("car_1") + 1
    u_before = np.nonzero(out.instance == k)[1].mean()
    u_after = np.nonzero(moved.instance == k)[1].mean()
    assert u_after < u_before - 3  # moved left in the image


def test_edge_supersampling_integrates_pixels_and_leaves_smooth_regions_alone(synth_small):
    from simrecon.synth.render import render_camera

    log = load_log(synth_small / "log")
    f = log.cameras["front"][2]
    world = world_at(build_street(SMALL.seconds, SMALL.fps, SMALL.seed, SMALL.ego_speed), f.timestamp)
    views = {k: render_camera(world, f.c2w, f.intrinsics, SMALL.seed, k) for k in (1, 2, 6)}
    one, two, ref = (views[k].rgb.astype(np.float32) / 255 for k in (1, 2, 6))  # 6x6 rays: the pixel integral

    def psnr(a, b):
        return -10 * np.log10(np.mean((a - b) ** 2))

    # 2x2 rotated-grid samples at edges are far closer to the pixel integral than one ray per pixel.
    assert psnr(two, ref) > psnr(one, ref) + 5
    # Labels stay the centre ray's; pixels with no edge next to them are untouched.
    assert np.array_equal(views[1].instance, views[2].instance) and np.array_equal(views[1].depth, views[2].depth)
    changed = np.abs(one - two).max(-1) > 0
    assert 0 < changed.mean() < 0.5
    # Smooth pixels (colour and depth nearly constant over the 3x3 neighbourhood) are never re-rendered.
    d = np.where(np.isfinite(views[1].depth), views[1].depth, 1e4)
    pad_c, pad_d = np.pad(one, ((1, 1), (1, 1), (0, 0)), mode="edge"), np.pad(d, 1, mode="edge")
    h, w = d.shape
    win_c = np.stack([pad_c[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    win_d = np.stack([pad_d[i:i + h, j:j + w] for i in range(3) for j in range(3)])
    smooth = ((win_c.max(0) - win_c.min(0)).max(-1) < 0.03) & (win_d.max(0) - win_d.min(0) < 0.01 * d)
    assert smooth.mean() > 0.1 and not changed[smooth].any()
