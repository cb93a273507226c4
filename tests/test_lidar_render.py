"""Lidar rendering: the exact synthetic scene reproduces the generator's sweeps and follows edits; its physics
drops and dims what a real lidar would; a neural scene's sweep ranges come from its geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import SMALL
from simrecon.data import load_log
from simrecon.data.scene_api import ActorPlacement, LidarScene, logged_placements
from simrecon.synth import GroundTruthScene
from simrecon.synth.lidar import LidarPhysics, trace_sweep
from simrecon.synth.render import world_at
from simrecon.synth.scene import build_street


@pytest.fixture(scope="module")
def gt(synth_small):
    return GroundTruthScene.from_log(synth_small / "log")


def test_exact_sweep_equals_the_generators_sweep(gt):
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    assert isinstance(gt, LidarScene)
    for sweep in log.lidar:
        pts, layout = sweep.load(log.root), sweep.load_layout(log.root)
        out = gt.render_lidar(sensor, sweep.s2w, sweep.timestamp, logged_placements(log, sweep.timestamp))
        np.testing.assert_array_equal(out.layout().beam, layout.beam)
        np.testing.assert_array_equal(out.layout().column, layout.column)
        np.testing.assert_allclose(out.points(), pts[:, :3], atol=1e-4)  # float32 ray casting
        np.testing.assert_allclose(out.intensity[out.returned], pts[:, 3], atol=1e-6)


def test_removed_actor_vanishes_and_the_background_behind_it_returns(gt):
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    sweep = log.lidar[2]
    placed = logged_placements(log, sweep.timestamp)
    full = gt.render_lidar(sensor, sweep.s2w, sweep.timestamp, placed)
    k = list(placed).index("car_1") + 1
    on_car = full.returned & (full.instance == k)
    assert on_car.sum() > 50, "car_1 drives just ahead of the ego: the sweep sees it"
    without = {name: p for name, p in placed.items() if name != "car_1"}
    edited = gt.render_lidar(sensor, sweep.s2w, sweep.timestamp, without)
    assert len(edited.instance_names) == len(placed) - 1
    assert not np.any(np.isin(edited.instance_names, ["car_1"]))
    # the rays that hit the car now hit what is behind it: farther, and (physics permitting) returned
    assert np.all(edited.range_m[on_car] > full.range_m[on_car] + 0.1)
    assert edited.returned[on_car].mean() > 0.9
    assert np.all(edited.instance[on_car] != k) or k > len(edited.instance_names)
    # rays that did not meet the car (returned or dropped) are untouched
    hit_car = full.instance == k
    np.testing.assert_array_equal(edited.returned[~hit_car], full.returned[~hit_car])
    np.testing.assert_array_equal(edited.range_m[~hit_car], full.range_m[~hit_car])


def test_moved_actor_returns_points_where_it_now_is(gt):
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    sweep = log.lidar[0]
    pose = np.eye(4)
    pose[:3, 3] = sweep.s2w[:3, 3] + np.array([0.0, 6.0, -1.9 + 0.75])  # 6 m to the left of the sensor
    out = gt.render_lidar(sensor, sweep.s2w, sweep.timestamp, {"moved": ActorPlacement("car_1", pose)})
    pts = out.points()[out.instance[out.returned] == 1] + sweep.s2w[:3, 3]
    assert len(pts) > 100
    assert np.all(np.abs(pts[:, 1] - pose[1, 3]) < 0.91) and np.all(np.abs(pts[:, 0] - pose[0, 3]) < 2.21)


def test_physics_drops_sky_range_grazing_and_a_seeded_few(gt):
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    street = build_street(SMALL.seconds, SMALL.fps, SMALL.seed)
    sweep = log.lidar[0]
    world = world_at(street, sweep.timestamp)
    base = trace_sweep(world, sensor, sweep.s2w, sweep.timestamp, SMALL.seed)
    assert not base.returned[~np.isfinite(base.range_m)].any(), "sky: nothing returns"
    assert not base.returned[base.range_m > sensor.max_range_m].any(), "beyond max range: nothing returns"
    no_random = trace_sweep(world, sensor, sweep.s2w, sweep.timestamp, SMALL.seed, LidarPhysics(random_drop=0.0))
    random = no_random.returned & ~base.returned
    assert 0.002 < random.sum() / no_random.returned.sum() < 0.03  # about 1 %
    assert not (base.returned & ~no_random.returned).any()
    no_grazing = trace_sweep(world, sensor, sweep.s2w, sweep.timestamp, SMALL.seed,
                             LidarPhysics(random_drop=0.0, grazing_cos=0.0))
    grazing = no_grazing.returned & ~no_random.returned
    assert grazing.sum() > 0 and np.all(no_grazing.instance[grazing] > 0), "grazing drops are on car paint/glass"
    again = trace_sweep(world, sensor, sweep.s2w, sweep.timestamp, SMALL.seed)
    np.testing.assert_array_equal(again.returned, base.returned)  # seeded: the same rays drop
    later = trace_sweep(world, sensor, sweep.s2w, sweep.timestamp + 0.05, SMALL.seed)
    assert (later.returned != base.returned).any()


def test_intensity_falls_with_range_and_incidence(gt):
    log = gt.log
    sweep = log.lidar[0]
    pts, layout = sweep.load(log.root), sweep.load_layout(log.root)
    rng = np.linalg.norm(pts[:, :3], axis=1)
    ground = pts[:, 2] < -1.8  # the road, 1.9 m under the sensor
    assert 0.0 <= pts[:, 3].min() and pts[:, 3].max() <= 1.0
    near = np.median(pts[ground & (rng < 8), 3])
    far = np.median(pts[ground & (rng > 25), 3])
    assert near > 2 * far, (near, far)  # range falloff and grazing incidence on the far road
    assert layout is not None


def test_per_ray_poses_render_a_rolling_sweep(gt):
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    sweep = log.lidar[0]
    placed = logged_placements(log, sweep.timestamp)
    poses = np.repeat(sweep.s2w[None], sensor.rays, axis=0)
    same = gt.render_lidar(sensor, poses, sweep.timestamp, placed)
    ref = gt.render_lidar(sensor, sweep.s2w, sweep.timestamp, placed)
    np.testing.assert_allclose(same.range_m, ref.range_m, atol=1e-4)
    beam, column = sensor.grid()
    poses[:, 0, 3] += 8.0 * sensor.column_times(column)  # the ego's 8 m/s during the turn
    rolled = gt.render_lidar(sensor, poses, sweep.timestamp, placed)
    first, ahead = column == 0, column == sensor.columns // 2  # column C/2 looks forward, half a turn later
    np.testing.assert_array_equal(rolled.range_m[first], ref.range_m[first])  # column 0 fires at the timestamp
    moved = poses[np.flatnonzero(ahead)[0]]
    at_half = gt.render_lidar(sensor, moved, sweep.timestamp, placed)  # the whole sweep from that column's pose
    np.testing.assert_allclose(rolled.range_m[ahead], at_half.range_m[ahead], atol=1e-4)
    both = np.isfinite(rolled.range_m) & np.isfinite(ref.range_m)
    assert (np.abs(rolled.range_m[both] - ref.range_m[both]) > 0.01).sum() > 100, "objects moved relative to the sensor"
    with pytest.raises(ValueError, match="per-ray sensor poses"):
        gt.render_lidar(sensor, poses[:10], sweep.timestamp, placed)


def _plate(model, height: float) -> None:
    """Background and proposal made an opaque slab below ``height`` (world z) and empty above."""
    def density(x):
        return torch.where(x[:, 2] < height, 200.0, 0.0), torch.zeros(len(x), model.cfg.background.geo_features)

    model.background.density = density
    model.proposal.forward = lambda x: density(x)[0]


def test_neural_sweep_ranges_come_from_the_scene_geometry(xs_log, tmp_path):
    from helpers import tiny_files
    from simrecon.scene import load_scene
    from simrecon.train import reconstruct

    cfg = tiny_files(2)
    cfg.model.lidar_heads.intensity = cfg.model.lidar_heads.drop = "off"  # geometry alone (heads: test_lidar_heads)
    reconstruct(xs_log, tmp_path / "scene", cfg)
    scene = load_scene(tmp_path / "scene", device="cpu", renderer="reference")
    assert isinstance(scene, LidarScene)
    log = scene.log
    sensor = log.lidar_sensors["lidar"]
    sweep = log.lidar[0]
    plate = float(sweep.s2w[2, 3]) - 1.5
    _plate(scene.model, plate)
    out = scene.render_lidar(sensor, sweep.s2w, sweep.timestamp, {})
    assert out.intensity is None, "no intensity head: said, not faked"
    elev = np.radians(np.repeat(np.asarray(sensor.beam_elevations_deg), sensor.columns))
    truth = np.where(elev < 0, 1.5 / np.sin(-np.minimum(elev, -1e-9)), np.inf)
    want = truth <= sensor.max_range_m
    np.testing.assert_array_equal(out.returned, want)  # upward beams and the far plate: dropped
    # ranges follow the plate's geometry to within the renderer's sampling (coarse on an untrained proposal)
    per_beam = np.median(out.range_m.reshape(sensor.beams, -1), axis=1)
    down = np.asarray(sensor.beam_elevations_deg) < 0
    assert np.all(np.diff(per_beam[down]) >= 0) and per_beam[down][-1] > 5 * per_beam[down][0], \
        "shallower beams reach the plate farther away"
    assert np.all(np.abs(out.range_m[want] / truth[want] - 1) < 0.5)
    assert np.all(out.instance == 0)


def test_sweep_metrics_of_the_exact_scene_are_perfect_and_see_a_moved_sensor(gt):
    """scene.lidar_eval: the exact scene against its own recorded sweeps scores zero error, all rays agreeing;
    rendered 0.5 m higher, the range error, Chamfer and disagreement appear."""
    from simrecon.data.geometry import make_pose
    from simrecon.scene.lidar_eval import SweepComparison, chamfer, recorded_range_image, score_sweeps

    m = score_sweeps(gt, gt.log.lidar, max_sweeps=2)
    assert m.sweeps == 2 and m.rays == 2 * gt.log.lidar_sensors["lidar"].rays
    assert m.median_range_error_m < 1e-4 and m.chamfer_m < 1e-4 and m.drop_accuracy == 1.0 and m.drop_f1 == 1.0
    assert m.intensity_rmse < 1e-5  # the synthetic street's intensity, known to both
    sweep, sensor = gt.log.lidar[0], gt.log.lidar_sensors["lidar"]
    moved = sweep.s2w @ make_pose(np.eye(3), np.array([0.0, 0.0, 0.5]))  # up: every ground and wall range changes
    cmp = SweepComparison()
    cmp.add(gt.render_lidar(sensor, moved, sweep.timestamp, logged_placements(gt.log, sweep.timestamp)),
            *recorded_range_image(sweep, gt.log.root, sensor))
    off = cmp.summary()
    assert off.median_range_error_m > 0.05 and off.chamfer_m > 0.05 and off.drop_accuracy < 1.0
    assert chamfer(np.zeros((3, 3)), np.ones((2, 3))) == pytest.approx(3 ** 0.5)
