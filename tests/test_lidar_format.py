"""Drive-log format v1.1: lidar sensor models and per-point beam/column indices (docs/drive-log.md)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers import edit_log
from simrecon.data import load_log, validate_log, write_log
from simrecon.data.lidar_io import read_sidecar, write_sidecar
from simrecon.data.lidar_model import LidarSensor, uniform_sensor


def _copy(xs_log: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "log"
    shutil.copytree(xs_log, dst)
    return dst




def _problems(root: Path) -> list[str]:
    log, problems = validate_log(root, decode=False)
    assert log is None, "a bad log is refused whole"
    return [str(p) for p in problems]


def test_sensor_directions_follow_the_documented_layout():
    s = LidarSensor((-10.0, 0.0, 5.0), 8, rotation="ccw", azimuth_start_deg=0.0)
    d = s.directions().reshape(3, 8, 3)
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.degrees(np.arcsin(d[:, 0, 2])), [-10, 0, 5], atol=1e-9)  # beam order
    np.testing.assert_allclose(d[1, 0], [1, 0, 0], atol=1e-12)  # column 0 at azimuth_start: forward
    np.testing.assert_allclose(d[1, 2], [0, 1, 0], atol=1e-12)  # ccw: a quarter turn later, to the left
    cw = LidarSensor((0.0,), 8, rotation="cw", azimuth_start_deg=0.0).directions()
    np.testing.assert_allclose(cw[2], [0, -1, 0], atol=1e-12)  # cw: to the right
    assert s.column_times(np.array([0, 4]))[1] == pytest.approx(0.05)  # half a turn at 10 Hz


def test_synthetic_log_is_v11_and_its_layout_marks_the_dropped_rays(xs_log):
    log = load_log(xs_log)
    assert log.version == 1.1
    sensor = log.lidar_sensors["lidar"]
    assert sensor.beams == 32 and sensor.columns == 256 and not sensor.estimated
    for sweep in log.lidar:
        pts = sweep.load(log.root)
        layout = sweep.load_layout(log.root)
        assert layout is not None and len(layout.beam) == len(pts) and layout.problem(sensor) is None
        returned = layout.returned_mask(sensor)
        assert returned.sum() == len(pts), "one point per (beam, column) cell"
        assert 0 < (~returned).sum() < returned.size / 2, "the cells without a point are the dropped rays"
        # each point lies along its own beam and column's direction
        d = sensor.directions().reshape(sensor.beams, sensor.columns, 3)[layout.beam, layout.column]
        unit = pts[:, :3] / np.linalg.norm(pts[:, :3], axis=1, keepdims=True)
        assert np.min(np.sum(unit * d, axis=1)) > 1 - 1e-6


def test_layout_round_trips_through_the_writer(xs_log, tmp_path):
    log = load_log(xs_log)
    out = tmp_path / "copy"
    shutil.copytree(xs_log, out)
    (out / "transforms.json").unlink()
    write_log(log, out)
    raw = json.loads((out / "transforms.json").read_text())
    assert raw["simrecon_version"] == 1.1 and "lidar_sensors" in raw
    again = load_log(out)
    assert again.lidar_sensors == log.lidar_sensors
    for a, b in zip(log.lidar, again.lidar):
        la, lb = a.load_layout(log.root), b.load_layout(again.root)
        assert b.index_path == a.index_path
        np.testing.assert_array_equal(la.beam, lb.beam)
        np.testing.assert_array_equal(la.column, lb.column)


def test_per_point_time_sidecar(xs_log, tmp_path):
    root = _copy(xs_log, tmp_path)
    log = load_log(root)
    sweep = log.lidar[0]
    layout = sweep.load_layout(root)
    times = log.lidar_sensors["lidar"].column_times(layout.column)
    write_sidecar(root / "lidar/t0.npy", "time_path", times)
    edit_log(root, lambda d: d["lidar"][0].update(time_path="lidar/t0.npy"))
    got = load_log(root).lidar[0].load_layout(root)
    np.testing.assert_allclose(got.time, times, rtol=1e-6)
    assert got.time.max() < 0.1  # one turn at 10 Hz


def test_v1_logs_still_load(xs_log, tmp_path):
    root = _copy(xs_log, tmp_path)

    def to_v1(d):
        d["simrecon_version"] = 1
        d.pop("lidar_sensors")
        for s in d["lidar"]:
            s.pop("index_path")
    edit_log(root, to_v1)
    log = load_log(root)
    assert log.lidar_sensors == {} and log.lidar[0].load_layout(root) is None
    assert len(log.lidar[0].load(root)) > 1000
    write_log(log, tmp_path / "w")
    assert json.loads((tmp_path / "w/transforms.json").read_text())["simrecon_version"] == 1


@pytest.mark.parametrize("field, value, message", [
    ("columns", 0, "columns: expected an integer in [1, 65536], got 0"),
    ("columns", 10.5, "columns: expected an integer"),
    ("beam_elevations_deg", [], "beam_elevations_deg: expected a list of 1 to 512 angles in [-90, 90] degrees"),
    ("beam_elevations_deg", [0, 95], "beam_elevations_deg: expected a list of 1 to 512 angles"),
    ("max_range_m", 0.2, "max_range_m: expected more than min_range_m (0.5 m), got 0.2"),
    ("max_range_m", "far", "max_range_m: expected a finite number, got 'far'"),
    ("spin_rate_hz", -10, "spin_rate_hz: expected a number in [0.1, 1000], got -10"),
    ("rotation", "sideways", "rotation: expected one of ccw, cw, got 'sideways'"),
    ("estimated", "yes", "estimated: expected true or false"),
    ("columns", 65536, "columns: 32 beams x 65536 columns is more than 1048576 rays per sweep"),
])
def test_bad_sensor_spec_is_one_clear_problem(xs_log, tmp_path, field, value, message):
    root = _copy(xs_log, tmp_path)
    edit_log(root, lambda d: d["lidar_sensors"]["lidar"].update({field: value}))
    problems = _problems(root)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{root / 'transforms.json'}: lidar_sensors.lidar.{field}: "), problems
    assert message in problems[0]


def test_bad_sensor_section_and_sidecars(xs_log, tmp_path):
    root = _copy(xs_log, tmp_path)
    edit_log(root, lambda d: d["lidar_sensors"]["lidar"].pop("max_range_m"))
    assert _problems(root) == [f"{root / 'transforms.json'}: lidar_sensors.lidar.max_range_m: missing required key"]
    root = _copy(xs_log, tmp_path / "b")
    edit_log(root, lambda d: d.__setitem__("lidar_sensors", {}))
    assert all("lidar[" in p and "no entry in lidar_sensors" in p for p in _problems(root))
    root = _copy(xs_log, tmp_path / "c")
    write_sidecar(root / "lidar/short.npy", "index_path", np.zeros((5, 2)))
    edit_log(root, lambda d: d["lidar"][1].update(index_path="lidar/short.npy"))
    (problem,) = _problems(root)
    assert "lidar[1].index_path: file 'lidar/short.npy': has 5 rows but the sweep has" in problem
    root = _copy(xs_log, tmp_path / "d")
    np.save(root / "lidar/float.npy", np.zeros((5, 2), np.float64))
    edit_log(root, lambda d: d["lidar"][0].update(index_path="lidar/float.npy"))
    (problem,) = _problems(root)
    assert "expected int32 of shape (N, 2), got float64" in problem
    with pytest.raises(ValueError, match="int32"):
        read_sidecar(root / "lidar/float.npy", "index_path", 5)


def test_out_of_range_indices_are_named():
    from simrecon.data.lidar_model import SweepLayout

    sensor = uniform_sensor(4, 16)
    assert SweepLayout(np.array([0, 3]), np.array([0, 15])).problem(sensor) is None
    assert "beam indices must be in [0, 4)" in SweepLayout(np.array([4]), np.array([0])).problem(sensor)
    assert "column indices must be in [0, 16)" in SweepLayout(np.array([0]), np.array([-1])).problem(sensor)
