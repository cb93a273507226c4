"""Lidar sensor models estimated from points (data/lidar_estimate.py) and the readers that write them (v1.1)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fixtures_readers import WAYMO_INCLINATIONS, shared_data, write_kitti_odometry, write_waymo

from simrecon.data import lidar_estimate as le
from simrecon.data.lidar_model import LidarSensor, uniform_sensor
from simrecon.data.readers import convert, read

RNG = np.random.default_rng(7)


def _sweep(sensor: LidarSensor, keep: float = 0.8, lo: float = 8.0, hi: float = 60.0):
    """Points of ``sensor`` at random ranges (``keep`` of the rays return), beam-major order, with their cells."""
    beam, column = sensor.grid()
    hit = RNG.random(len(beam)) < keep
    rng = RNG.uniform(lo, hi, len(beam))[:, None]
    xyz = (sensor.directions() * rng)[hit]
    return xyz, beam[hit], column[hit]


def _scan_ordered(xyz, beam, column, columns: int, start_col: int):
    """The points stored beam after beam, each beam's turn starting at column ``start_col`` (KITTI's order)."""
    order = np.lexsort(((column - start_col) % columns, beam))
    return xyz[order], beam[order], column[order]


def test_scan_order_recovers_beams_columns_and_cells():
    sensor = uniform_sensor(16, 512)
    xyz, beam, column = _scan_ordered(*_sweep(sensor), 512, start_col=270)
    est = le.estimate(xyz, scan_order=True)
    assert est.model is not None and est.model.how == "scan order" and est.model.sensor.estimated
    got = est.model.sensor
    assert got.beams == 16 and got.columns == 512
    # each beam's elevation is the median of exact directions: equal up to float error
    assert np.allclose(got.beam_elevations_deg, sensor.beam_elevations_deg, atol=1e-6)
    lay = est.model.layout(xyz)
    assert np.array_equal(lay.beam, beam) and np.array_equal(lay.column, column)


def test_rings_given_in_any_order_keep_ring_order():
    sensor = uniform_sensor(8, 256)
    xyz, beam, column = _sweep(sensor)
    perm = RNG.permutation(len(xyz))
    ring = beam[perm] + 100  # labels need not start at 0
    est = le.estimate(xyz[perm], ring=ring)
    assert est.model.how == "rings" and list(est.model.rings) == list(range(100, 108))
    lay = est.model.layout(xyz[perm], ring)
    assert np.array_equal(lay.beam, beam[perm]) and np.array_equal(lay.column, column[perm])
    assert est.model.layout(xyz[:3], np.array([100, 100, 999])) is None  # a ring the sensor does not have


def test_unlabelled_points_get_beams_from_their_elevations():
    elev = (-24.0, -15.0, -9.5, -6.0, -4.0, -2.5, -1.5, -0.8, 0.0, 1.0, 2.5, 5.0)  # uneven, as real sensors
    sensor = LidarSensor(elev, 720)
    xyz, beam, column = _sweep(sensor)
    perm = RNG.permutation(len(xyz))
    est = le.estimate(xyz[perm], scan_order=True)  # not in scan order: elevations decide
    assert est.model.how == "elevations" and est.model.level is None
    assert np.allclose(est.model.sensor.beam_elevations_deg, elev, atol=1e-6) and est.model.sensor.columns == 720
    lay = est.model.layout(xyz[perm])
    assert np.array_equal(lay.beam, beam[perm]) and np.array_equal(lay.column, column[perm])


def test_a_tilted_frame_is_levelled_and_the_pose_fix_undoes_it():
    sensor = uniform_sensor(24, 720, low_deg=-20.0, high_deg=6.0)
    xyz, beam, _ = _sweep(sensor)
    tilt = le._tilt(math.radians(2.0), math.radians(-1.5))
    tilted = xyz @ tilt.T  # the source's frame is tilted by ``tilt`` against the spin axis
    est = le.estimate(tilted)
    model = est.model
    assert model is not None and model.how == "elevations" and model.level is not None
    # the search grid's finest step is 0.005 degrees: beams within a hundredth of a degree
    assert np.allclose(model.sensor.beam_elevations_deg, sensor.beam_elevations_deg, atol=0.01)
    levelled = model.leveled(np.c_[tilted, np.zeros(len(tilted))])[:, :3]
    assert np.array_equal(model.layout(levelled).beam, beam)
    # a world point stays where it was: s2w @ p_source == (s2w @ pose_fix) @ p_level
    s2w = np.eye(4)
    s2w[:3, 3] = [1.0, 2.0, 3.0]
    fixed = s2w @ model.pose_fix()
    assert np.allclose(tilted + s2w[:3, 3], levelled @ fixed[:3, :3].T + fixed[:3, 3], atol=1e-9)


def test_points_that_form_no_beams_get_no_model_and_a_reason():
    d = RNG.normal(size=(20000, 3))
    xyz = d / np.linalg.norm(d, axis=1, keepdims=True) * RNG.uniform(8, 60, (20000, 1))
    est = le.estimate(xyz, scan_order=True)
    assert est.model is None and "no separate beams" in est.reason
    assert le.estimate(np.zeros((0, 3)), ring=np.zeros(0)).model is None
    near = le.estimate(RNG.uniform(-1, 1, (500, 3)))
    assert near.model is None and "farther than" in near.reason


def test_kitti_velodyne_in_scan_order_is_written_with_its_estimated_sensor(tmp_path):
    src = write_kitti_odometry(tmp_path / "seq", n=2)
    sensor = uniform_sensor(16, 400, low_deg=-24.0, high_deg=2.0)
    for i in range(2):
        xyz, _, _ = _scan_ordered(*_sweep(sensor), 400, start_col=205)
        np.c_[xyz, np.full(len(xyz), 0.5)].astype(np.float32).tofile(src / "velodyne" / f"{i:06d}.bin")
    log = convert("kitti-odometry", src, tmp_path / "out")
    got = log.lidar_sensors["velodyne"]
    assert got.estimated and got.beams == 16 and got.columns == 400
    assert log.extra["source"]["lidar_models"]["velodyne"].startswith("estimated from scan order")
    for s in log.lidar:
        pts, lay = s.load(log.root)[:, :3].astype(np.float64), s.load_layout(log.root)
        ray = got.directions()[lay.beam * got.columns + lay.column]
        cos = np.clip((ray * pts).sum(1) / np.linalg.norm(pts, axis=1), -1, 1)
        # each point lies on its cell's ray; float32 points carry about 0.03 degrees of rounding in this measure
        assert np.degrees(np.arccos(cos)).max() < 0.05


def test_kitti_sweeps_without_beams_convert_without_a_model(tmp_path):
    src = write_kitti_odometry(tmp_path / "seq", n=2)  # two points a sweep
    log = convert("kitti-odometry", src, tmp_path / "out")
    assert log.lidar_sensors == {} and all(s.index_path is None for s in log.lidar)
    assert log.extra["source"]["lidar_models"]["velodyne"].startswith("not estimated: only")


def test_waymo_range_images_give_the_exact_sensor_and_every_cell(tmp_path):
    seg = write_waymo(tmp_path / "seg" / "segment-test.tfrecord", n=2)
    log = convert("waymo", seg.parent, tmp_path / "out")
    top = log.lidar_sensors["TOP"]
    assert not top.estimated and top.columns == 8 and top.max_range_m == 75.0 and top.rotation == "cw"
    assert top.beam_elevations_deg == pytest.approx(np.degrees(WAYMO_INCLINATIONS))
    s = log.lidar[0]
    pts, lay = s.load(log.root)[:, :3], s.load_layout(log.root)
    assert (lay.beam.tolist(), lay.column.tolist()) == ([1], [3])  # range image row 0 is the top beam
    ray = top.directions()[lay.beam * top.columns + lay.column]
    assert ray[0] == pytest.approx(pts[0] / np.linalg.norm(pts[0]), abs=1e-6)
    assert lay.returned_mask(top).sum() == 1  # the other 15 rays returned nothing


def test_a_reader_whose_first_sweep_is_unreadable_says_which(tmp_path):
    src = write_kitti_odometry(tmp_path / "seq", n=2)
    (src / "velodyne" / "000000.bin").write_bytes(b"\x00" * 13)
    with pytest.raises(Exception) as err:
        read("kitti-odometry", src)
    assert "000000" in str(err.value) and "truncated" in str(err.value)


def test_argoverse2_sweeps_split_into_its_two_lidars_with_their_rings_and_times(tmp_path):
    import pyarrow.feather as feather
    from fixtures_readers import AV2_LIDARS, write_argoverse2

    src = write_argoverse2(tmp_path / "val" / "0c6e62d7-bdfa-3061-8d3d-03b13aa21f68", n=2, lidars=True)
    log = convert("argoverse2", src, tmp_path / "out")
    assert set(log.lidar_sensors) == set(AV2_LIDARS) and len(log.lidar) == 4
    for name, sensor in log.lidar_sensors.items():
        assert sensor.estimated and sensor.beams == 8 and sensor.columns == 64
        assert np.allclose(sensor.beam_elevations_deg, np.linspace(-15, 10, 8), atol=0.01)  # float32 points
    for s in log.lidar:
        pts, lay = s.load(log.root)[:, :3].astype(np.float64), s.load_layout(log.root)
        sensor = log.lidar_sensors[s.sensor]
        ray = sensor.directions()[lay.beam * sensor.columns + lay.column]
        cos = np.clip((ray * pts).sum(1) / np.linalg.norm(pts, axis=1), -1, 1)
        assert np.degrees(np.arccos(cos)).max() < 0.05  # every point on its cell's ray, in its own lidar's frame
        # the lidar's points, back in the world, are the source's ego-frame points of its laser numbers
        ns = int(Path(s.file_path).stem)
        table = feather.read_table(src / "sensors" / "lidar" / f"{ns}.feather")
        laser = table.column("laser_number").to_numpy()
        mine = (laser < 32) if s.sensor == "up_lidar" else (laser >= 32)
        ego = np.stack([table.column(k).to_numpy()[mine].astype(np.float64) for k in "xyz"], 1)
        ego_pose = log.ego.pose_at(s.timestamp)
        want = ego @ ego_pose[:3, :3].T + ego_pose[:3, 3]
        assert np.allclose(s.load_world(log.root), want, atol=1e-4)
        assert np.allclose(lay.time, table.column("offset_ns").to_numpy()[mine] * 1e-9)


# -- real logs (skip without ../shared/data) ----------------------------------------------------------------

def test_real_kitti_tracking_sweep_gets_64_beams(tmp_path):
    split = shared_data("kitti_tracking_0001_2frames") / "tracking" / "training"
    log = convert("kitti-tracking", split / "0001", tmp_path / "out")
    got = log.lidar_sensors["velodyne"]
    # HDL-64E: 64 beams from about +2 to -24.8 degrees, about 0.17 degrees of azimuth per column
    assert got.beams == 64 and 1900 <= got.columns <= 2200
    assert -25.5 < min(got.beam_elevations_deg) < -22.5 and 1.5 < max(got.beam_elevations_deg) < 4.0
    s = log.lidar[0]
    pts, lay = s.load(log.root)[:, :3], s.load_layout(log.root)
    ray = got.directions()[lay.beam * got.columns + lay.column]
    angle = np.degrees(np.arccos(np.clip((ray * pts).sum(1) / np.linalg.norm(pts, axis=1), -1, 1)))
    assert np.median(angle) < 0.4  # near points bend away from their beam's median (the lasers' mount offsets)


def test_real_dgp_and_pandaset_points_form_no_beams():
    dgp = read("dgp", shared_data("dgp_test_scene") / "scene_02")
    assert dgp.log.lidar_sensors == {} and "no separate beams" in dgp.log.extra["source"]["lidar_models"]["LIDAR"]
    pandaset = read("pandaset", shared_data("pandaset_001_frame0"))
    assert pandaset.log.lidar_sensors == {}
