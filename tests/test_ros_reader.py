"""ROS 1 bags, ROS 2 bags (sqlite3, MCAP) and plain MCAP in: the synthetic street written as a recording by
the test (tests/ros_bag_writer.py) and converted back must give the same log: camera poses within 1 mm /
0.01 degree, intrinsics and lidar points exact, timestamps to the nanosecond."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("rosbags")

from ros_bag_writer import T0_NS, BagOptions, ns_of, write_bag  # noqa: E402

from simrecon.cli.main import main  # noqa: E402
from simrecon.data import load_log, validate_log  # noqa: E402
from simrecon.data.readers import ReaderError, convert, read  # noqa: E402

KINDS = ["ros2-mcap", "ros1", "ros2-sqlite3", "mcap"]


@pytest.fixture(scope="module")
def street(xs_log):
    return load_log(xs_log)


def _bag(street, tmp_path, **kw):
    opts = BagOptions(**kw)
    path = tmp_path / ("drive.bag" if opts.kind == "ros1" else "drive")
    return write_bag(street, path, opts)


def _rotation_deg(a: np.ndarray, b: np.ndarray) -> float:
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1) / 2
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _check_same(street, out) -> None:
    src = out.extra["source"]
    t_first = min(f.timestamp for f in street.frames)
    assert src["time_offset_ns"] == ns_of(t_first) and src["world_frame"] == "map"
    assert sorted(out.cameras) == sorted(street.cameras)
    for cam, frames in street.cameras.items():
        got = out.cameras[cam]
        assert len(got) == len(frames)
        for a, b in zip(frames, got):
            assert int(round(b.timestamp * 1e9)) + src["time_offset_ns"] == ns_of(a.timestamp)  # to the nanosecond
            assert np.linalg.norm(a.c2w[:3, 3] - b.c2w[:3, 3]) < 1e-3
            assert _rotation_deg(a.c2w, b.c2w) < 0.01
            assert a.intrinsics == b.intrinsics  # exact, PINHOLE
            rgb_a = np.array(Image.open(street.root / a.file_path).convert("RGB"))
            assert np.array_equal(rgb_a, np.array(Image.open(out.root / b.file_path).convert("RGB")))
    assert len(out.lidar) == len(street.lidar)
    for a, b in zip(street.lidar, out.lidar):
        assert np.array_equal(a.load(street.root), b.load(out.root))  # same points in the sensor frame
        assert np.abs(a.load_world(street.root) - b.load_world(out.root)).max() < 1e-3  # within 1 mm in the world
    assert np.abs(out.ego.poses[:, :3, 3] - street.ego.poses[:, :3, 3]).max() < 1e-3


@pytest.mark.parametrize("kind", KINDS)
def test_recording_round_trips_to_the_same_log(street, tmp_path, kind):
    bag = _bag(street, tmp_path, kind=kind)
    out = convert("rosbag", bag, tmp_path / "out")
    assert validate_log(tmp_path / "out", decode=True)[1] == []
    _check_same(street, out)


@pytest.mark.parametrize("kind,compressed,encoding", [("ros2-mcap", True, "rgb8"), ("ros1", False, "bgr8")])
def test_compressed_and_bgr_images_keep_their_pixels(street, tmp_path, kind, compressed, encoding):
    bag = _bag(street, tmp_path, kind=kind, compressed=compressed, encoding=encoding, cameras=["front"])
    out = convert("rosbag", bag, tmp_path / "out")
    assert list(out.cameras) == ["front"]
    a, b = street.cameras["front"][1], out.cameras["front"][1]
    assert np.array_equal(np.array(Image.open(street.root / a.file_path).convert("RGB")),
                          np.array(Image.open(out.root / b.file_path).convert("RGB")))


@pytest.mark.parametrize("model,coeffs,expected", [
    ("plumb_bob", [0.1, -0.02, 0.001, 0.002, 0.003], {"model": "OPENCV", "k1": 0.1, "k2": -0.02, "p1": 0.001,
                                                      "p2": 0.002, "k3": 0.003}),
    ("equidistant", [0.05, -0.01, 0.002, -0.001], {"model": "OPENCV_FISHEYE", "k1": 0.05, "k2": -0.01, "k3": 0.002,
                                                   "k4": -0.001}),
])
def test_distortion_models(street, tmp_path, model, coeffs, expected):
    bag = _bag(street, tmp_path, distortion=(model, coeffs), cameras=["front"])
    intr = read("rosbag", bag).log.cameras["front"][0].intrinsics
    for key, val in expected.items():
        assert getattr(intr, key) == val, key
    assert intr.cx == street.cameras["front"][0].intrinsics.cx


def test_odometry_is_the_ego_source_when_tf_has_no_moving_base(street, tmp_path):
    bag = _bag(street, tmp_path, tf_ego=False, odometry=True)
    conv = read("rosbag", bag)
    assert conv.log.extra["source"]["ego_source"].startswith("odometry /odom")
    # odometry is odom -> base_link; map -> odom is still the static tf link, so the world is odom's
    front = street.cameras["front"][0]
    from ros_bag_writer import ODOM_IN_MAP

    got = ODOM_IN_MAP @ conv.log.cameras["front"][0].c2w
    assert np.linalg.norm(got[:3, 3] - front.c2w[:3, 3]) < 1e-3 and _rotation_deg(got, front.c2w) < 0.01


def test_topics_yaml_chooses_renames_and_windows(street, tmp_path):
    _bag(street, tmp_path, kind="ros2-sqlite3")
    cfg = tmp_path / "topics.yaml"
    cfg.write_text("bag: drive\ncameras:\n  main: /sensors/front/image_raw\nlidar: {}\nworld_frame: odom\n"
                   "start: 0.05\nduration: 1.0\n")
    log = read("rosbag", cfg).log
    assert list(log.cameras) == ["main"] and log.lidar == []
    assert len(log.cameras["main"]) == len(street.cameras["front"]) - 1  # the first image is before the window
    assert log.extra["source"]["world_frame"] == "odom"


def test_cli_topics_start_and_duration_options(street, tmp_path, capsys):
    """--topics names a topics file for the bag given as SRC; --start/--duration window it (over the file's)."""
    bag = _bag(street, tmp_path, kind="ros2-sqlite3")
    cfg = tmp_path / "topics.yaml"
    cfg.write_text("cameras:\n  main: /sensors/front/image_raw\nlidar: {}\nstart: 0.0\n")
    out = tmp_path / "out"
    assert main(["convert", "rosbag", str(bag), str(out), "--topics", str(cfg), "--start", "0.05"]) == 0
    log = load_log(out)
    assert list(log.cameras) == ["main"] and len(log.cameras["main"]) == len(street.cameras["front"]) - 1
    code = main(["convert", "rosbag", str(bag), str(tmp_path / "o2"), "--duration", "-1"])
    assert code == 2 and "--duration" in capsys.readouterr().err
    (tmp_path / "other.yaml").write_text("bag: elsewhere.bag\n")
    code = main(["convert", "rosbag", str(bag), str(tmp_path / "o3"), "--topics", str(tmp_path / "other.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and "other.yaml" in err and "bag" in err and not (tmp_path / "o3").exists()
    (tmp_path / "kitti").mkdir()
    code = main(["convert", "kitti-odometry", str(tmp_path / "kitti"), str(tmp_path / "o4"), "--start", "1"])
    assert code == 2 and "--start is not an option of the kitti-odometry reader" in capsys.readouterr().err


def test_auto_selection_ambiguity_lists_the_candidates(street, tmp_path):
    bag = _bag(street, tmp_path, cameras=["front"], duplicate_compressed=True)
    with pytest.raises(ReaderError, match=r"ambiguous camera 'front'.*/sensors/front/image_raw, "
                                          r"/sensors/front/image_raw/compressed"):
        read("rosbag", bag)


@pytest.mark.parametrize("kw,message", [
    ({"cameras": []}, "no image topic"),
    ({"camera_info": False}, "missing CameraInfo for camera 'front'"),
    ({"tf_cameras": False}, "frame 'front_optical' is not in the tf tree"),
    ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
    ({"distortion": ("rational_polynomial", [0.1] * 8)}, "unsupported distortion model 'rational_polynomial'"),
])
def test_bad_recordings_are_one_line_errors(street, tmp_path, capsys, kw, message):
    bag = _bag(street, tmp_path, **kw)
    with pytest.raises(ReaderError, match=message):
        read("rosbag", bag)
    code = main(["convert", "rosbag", str(bag), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message.split("'")[0] in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() and [p.name for p in tmp_path.iterdir()] == [bag.name]


@pytest.mark.parametrize("kind", ["ros1", "mcap", "ros2-sqlite3"])
def test_truncated_recording_is_one_line_and_writes_nothing(street, tmp_path, capsys, kind):
    bag = _bag(street, tmp_path, kind=kind)
    file = bag if bag.is_file() else next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])
    code = main(["convert", "rosbag", str(bag), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and str(bag) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_cli_converts_and_the_log_validates(street, tmp_path, capsys):
    bag = _bag(street, tmp_path)
    assert main(["convert", "rosbag", str(bag), str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "chose cameras front=/sensors/front/image_raw" in err  # the auto-selection is printed
    assert main(["validate", str(tmp_path / "out")]) == 0
    assert T0_NS == load_log(tmp_path / "out").extra["source"]["time_offset_ns"]


@pytest.mark.parametrize("kind,boxes", [("ros1", "markers"), ("ros2-mcap", "markers"), ("ros2-mcap", "detections")])
def test_actor_boxes_become_tracks(street, tmp_path, kind, boxes):
    """Boxes published in base_link (MarkerArray cubes by ns + id, or Detection3DArray with tracking ids) come
    back as actor tracks in the world: same poses (1 mm) and sizes, classes from the namespace / class id."""
    bag = _bag(street, tmp_path, kind=kind, boxes=boxes, cameras=["front"])
    log = read("rosbag", bag).log
    offset_ns = log.extra["source"]["time_offset_ns"]
    assert len(log.actors) == len(street.actors)
    for i, a in enumerate(street.actors):
        got = next(b for b in log.actors if b.id == f"{a.cls}_{i}")
        assert got.cls == a.cls and np.allclose(got.size, a.size)
        for t, pose in zip(got.track.timestamps, got.track.poses):
            t_src = (t * 1e9 + offset_ns - T0_NS) * 1e-9
            want = a.pose_at(t_src)
            assert np.abs(pose[:3, 3] - want[:3, 3]).max() < 1e-3 and _rotation_deg(pose, want) < 0.01


def test_pixels_and_points_are_read_when_written_in_any_order(street, tmp_path):
    """read() keeps no pixels or points (bounded memory: each is read from the recording when written); the
    loaders give the same bytes whether asked in recording order or backwards (a new pass over the file)."""
    bag = _bag(street, tmp_path, kind="ros1")
    conv = read("rosbag", bag)
    assert all(callable(v) for v in conv.images.values()) and all(callable(v) for v in conv.lidar.values())
    forward = [conv.images[k]() for k in conv.images]
    again = read("rosbag", bag)
    backward = [again.images[k]() for k in reversed(list(again.images))][::-1]
    assert forward == backward and len(forward) == len(street.frames)
    points, layout = again.lidar[list(again.lidar)[-1]]()  # with ring fields: the points and their layout
    assert np.array_equal(points, street.lidar[-1].load(street.root)) and len(layout.beam) == len(points)


def test_converted_lidar_lands_on_the_surfaces_the_camera_sees(street, tmp_path):
    """The synthetic tests' check on the converted log: a camera ray aimed at a lidar point stops at it
    (seen by both) or before it (occluded), never passes through it."""
    import torch
    from helpers import XS

    from simrecon.synth.raycast import cast
    from simrecon.synth.render import world_at
    from simrecon.synth.scene import build_street

    out = convert("rosbag", _bag(street, tmp_path, kind="ros2-sqlite3"), tmp_path / "out")
    offset = out.extra["source"]["time_offset_ns"] - T0_NS  # converted time + offset = the street's time
    scene = build_street(XS.seconds, XS.fps, XS.seed)
    gaps = []
    for sweep in out.lidar:
        frame = next(f for f in out.cameras["front"] if f.timestamp == sweep.timestamp)
        pts = sweep.load_world(out.root)
        uv, depth = frame.project(pts)
        w, h = frame.intrinsics.w, frame.intrinsics.h
        inside = (depth > 1) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
        origin = frame.c2w[:3, 3]
        rays = pts[inside] - origin
        dist = np.linalg.norm(rays, axis=1)
        t_street = (frame.timestamp * 1e9 + offset) * 1e-9
        hits = cast(torch.tensor(np.broadcast_to(origin, rays.shape).copy(), dtype=torch.float32),
                    torch.tensor(rays / dist[:, None], dtype=torch.float32), world_at(scene, t_street).boxes)
        gaps.append(hits.t.numpy() - dist)
    gap = np.concatenate(gaps)
    assert len(gap) > 300
    assert np.mean(np.abs(gap) < 0.01) > 0.8 and np.mean(gap > 0.01) < 0.001


def test_no_tf_chain_to_the_world_frame_names_both_roots(street, tmp_path):
    _bag(street, tmp_path, cameras=["front"])
    cfg = tmp_path / "topics.yaml"
    cfg.write_text("bag: drive\nworld_frame: earth\n")
    with pytest.raises(ReaderError, match=r"no tf chain from 'front_optical' to 'earth' \(their roots are 'map' "
                                          r"and 'earth'\)"):
        read("rosbag", cfg)
    cfg.write_text("bag: ../drive\n")
    with pytest.raises(ReaderError, match=r"topics.yaml: bag: .*'\.\.'"):
        read("rosbag", cfg)
    cfg.write_text("bag: drive\ncamera: {}\n")
    with pytest.raises(ReaderError, match="topics.yaml: camera: unknown key"):
        read("rosbag", cfg)


@pytest.mark.parametrize("kind", ["ros1", "ros2-mcap"])
def test_ring_and_time_fields_give_the_v11_sensor_and_layout(street, tmp_path, kind):
    """A cloud with ring and time: the sensor model is estimated (beams at the synthetic elevations, its columns,
    its spin) and every point keeps its beam, column and firing time (v1.1 sidecars), round trip to the log."""
    bag = _bag(street, tmp_path, kind=kind)
    out = tmp_path / "out"
    log = convert("rosbag", bag, out)
    truth = street.lidar_sensors["lidar"]
    sensor = log.lidar_sensors["lidar"]
    assert sensor.estimated and sensor.columns == truth.columns and sensor.beams == truth.beams
    assert np.allclose(sensor.beam_elevations_deg, truth.beam_elevations_deg, atol=0.01)
    assert sensor.spin_rate_hz == pytest.approx(1.0 / np.median(np.diff([s.timestamp for s in street.lidar])))
    assert validate_log(out)[1] == []
    for got, want in zip(log.lidar, street.lidar):
        lg, lw = got.load_layout(out), want.load_layout(street.root)
        assert np.array_equal(lg.beam, lw.beam) and np.array_equal(lg.column, lw.column)
        assert np.allclose(lg.time, lw.column / (truth.columns * truth.spin_rate_hz), atol=1e-6)
