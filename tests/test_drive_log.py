"""Drive-log format v1: round trips, interpolation, conventions (by projection) and validation of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import edit_log
from simrecon.data import Actor, DriveLog, Frame, Intrinsics, LidarSweep, LogError, Track, load_log, validate_log
from simrecon.data import write_log
from simrecon.data.geometry import make_pose, rot_z
from simrecon.data.lidar_io import write_points
from simrecon.synth.rig import CameraMount

INTR = Intrinsics(100.0, 100.0, 32.0, 24.0, 64, 48)


def _make_log(root: Path) -> DriveLog:
    """A valid two-frame log with lidar, one moving and one static actor, and ego poses."""
    (root / "images").mkdir(parents=True)
    (root / "lidar").mkdir()
    frames = []
    for i in range(2):
        Image.new("RGB", (64, 48), (i * 50, 0, 0)).save(root / f"images/{i}.png")
        frames.append(Frame(f"images/{i}.png", make_pose(rot_z(0.1 * i), np.array([i, 0.0, 1.5])), INTR, "front",
                            0.1 * i))
    write_points(root / "lidar/0.npy", np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32))
    lidar = [LidarSweep("lidar/0.npy", make_pose(np.eye(3), np.array([0.0, 0.0, 1.9])), 0.0)]
    moving = Actor("car_a", "car", np.array([4.0, 2.0, 1.5]),
                   Track([0.0, 1.0], [make_pose(rot_z(0.0), np.zeros(3)), make_pose(rot_z(np.pi / 2), np.array([2.0, 4.0, 0]))]))
    parked = Actor("car_b", "car", np.array([4.0, 2.0, 1.5]), Track([0.0], [make_pose(np.eye(3), np.ones(3))]),
                   static=True)
    ego = Track([0.0, 0.1], [make_pose(np.eye(3), np.zeros(3)), make_pose(np.eye(3), np.array([1.0, 0, 0]))])
    return DriveLog(root, frames, lidar, [moving, parked], ego)


@pytest.fixture
def good_log(tmp_path) -> Path:
    log = _make_log(tmp_path / "log")
    write_log(log)
    return tmp_path / "log"




def _problems(root: Path) -> list[str]:
    log, problems = validate_log(root)
    assert log is None, "a bad log must be refused whole"
    return [str(p) for p in problems]


# -- round trip and model -------------------------------------------------------------------------------

def test_write_then_load_keeps_everything(good_log):
    log = load_log(good_log)
    assert [f.file_path for f in log.frames] == ["images/0.png", "images/1.png"]
    np.testing.assert_allclose(log.frames[1].c2w, make_pose(rot_z(0.1), np.array([1.0, 0.0, 1.5])))
    assert log.frames[0].intrinsics == INTR
    assert log.lidar[0].load(good_log).shape == (100, 4)
    assert [a.id for a in log.actors] == ["car_a", "car_b"] and log.actors[1].static
    assert log.ego is not None and len(log.ego) == 2
    assert log.cameras["front"][1].timestamp == pytest.approx(0.1)
    write_log(log)  # writing what was loaded gives the same file
    assert load_log(good_log).frames[1].intrinsics == INTR


def test_track_interpolates_translation_linearly_and_rotation_by_slerp():
    track = Track([0.0, 1.0], [make_pose(rot_z(0.0), np.zeros(3)), make_pose(rot_z(np.pi / 2), np.array([2.0, 4.0, 0]))])
    pose = track.pose_at(0.25)
    np.testing.assert_allclose(pose[:3, 3], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(pose[:3, :3], rot_z(np.pi / 8), atol=1e-12)
    assert track.pose_at(-0.01) is None and track.pose_at(1.01) is None  # absent outside the track
    np.testing.assert_allclose(track.pose_at(1.01, hold=True), track.poses[-1], atol=1e-12)


def test_static_actor_holds_its_pose_for_the_whole_log(good_log):
    parked = load_log(good_log).actor("car_b")
    np.testing.assert_allclose(parked.pose_at(123.0)[:3, 3], [1.0, 1.0, 1.0])
    with pytest.raises(KeyError, match="car_zz"):
        load_log(good_log).actor("car_zz")


# -- conventions, checked by projection -----------------------------------------------------------------

def test_opengl_camera_axes_project_left_up_ahead_correctly():
    # A camera 1.5 m up, looking along world +x (vehicle forward): world +y is to its LEFT, +z is UP.
    c2w = CameraMount("front", (0.0, 0.0, 1.5), 0.0).camera_to_vehicle()
    frame = Frame("x.png", c2w, INTR)
    uv, depth = frame.project(np.array([[10.0, 0.0, 1.5], [10.0, 1.0, 1.5], [10.0, 0.0, 2.5], [-10.0, 0, 1.5]]))
    np.testing.assert_allclose(uv[0], [INTR.cx, INTR.cy])  # straight ahead: principal point
    np.testing.assert_allclose(depth[:3], 10.0)
    assert uv[1, 0] < INTR.cx and uv[1, 1] == pytest.approx(INTR.cy)  # left of the camera: smaller u
    assert uv[2, 1] < INTR.cy and uv[2, 0] == pytest.approx(INTR.cx)  # above: smaller v (image v runs down)
    np.testing.assert_allclose(uv[1, 0], INTR.cx - INTR.fl_x * 1.0 / 10.0)
    assert depth[3] < 0  # behind the camera


def test_pixel_rays_pass_through_pixel_centres():
    rays = INTR.pixel_rays()  # [H, W, 3]
    frame = Frame("x.png", np.eye(4), INTR)
    uv, _ = frame.project(rays[[0, 47], [0, 63]] * 5.0)
    np.testing.assert_allclose(uv, [[0.5, 0.5], [63.5, 47.5]], atol=1e-9)


def test_box_frame_is_x_forward_y_left_z_up():
    # Heading 90 degrees (facing world +y): the box's front face centre is at +y, its left side at -x.
    actor = Actor("a", "car", np.array([4.0, 2.0, 1.0]), Track([0.0], [make_pose(rot_z(np.pi / 2), np.zeros(3))]),
                  static=True)
    pose = actor.pose_at(0.0)
    np.testing.assert_allclose(pose[:3, :3] @ [2.0, 0, 0], [0, 2.0, 0], atol=1e-12)
    np.testing.assert_allclose(pose[:3, :3] @ [0, 1.0, 0], [-1.0, 0, 0], atol=1e-12)
    corners = actor.corners_at(0.0)
    np.testing.assert_allclose(corners.max(0), [1.0, 2.0, 0.5])  # width along world x, length along world y


def test_distortion_moves_points_outward_for_positive_k1():
    intr = Intrinsics(100.0, 100.0, 32.0, 24.0, 64, 48, k1=0.1)
    pt = np.array([[0.2, 0.0, -1.0]])  # x/z = 0.2 in OpenGL camera axes
    uv, _ = intr.project(pt)
    assert uv[0, 0] == pytest.approx(32.0 + 100.0 * 0.2 * (1 + 0.1 * 0.04))


# -- plain nerfstudio files -----------------------------------------------------------------------------

def test_plain_nerfstudio_file_gets_default_timestamps_and_estimated_up(tmp_path):
    (tmp_path / "images").mkdir()
    frames = []
    for i in range(3):
        Image.new("RGB", (8, 6)).save(tmp_path / f"images/{i}.png")
        # Cameras whose up axis (column 1 of c2w) is world +y, as many captures are.
        frames.append({"file_path": f"images/{i}.png", "transform_matrix": np.eye(4).tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 5, "fl_y": 5, "cx": 4, "cy": 3, "w": 8, "h": 6,
                                                          "frames": frames}))
    log = load_log(tmp_path)
    assert [f.timestamp for f in log.frames] == [0.0, 0.1, 0.2]
    np.testing.assert_allclose(log.world_up, [0, 1, 0])
    assert log.version is None


# -- validation: every problem, with file and JSON path --------------------------------------------------

def test_malformed_json_names_line_and_column(good_log):
    (good_log / "transforms.json").write_text('{"frames": [1, 2,, 3]}')
    (problem,) = _problems(good_log)
    assert "transforms.json" in problem and "malformed JSON at line 1" in problem


def test_missing_keys_are_all_listed(good_log):
    edit_log(good_log, lambda d: [d["frames"][0].pop("transform_matrix"), d["frames"][1].pop("timestamp"),
                               d["actors"][0].pop("size")])
    problems = _problems(good_log)
    assert any("frames[0].transform_matrix: missing required key" in p for p in problems)
    assert any("frames[1].timestamp: missing required key" in p for p in problems)
    assert any("actors[0].size: expected [length, width, height]" in p for p in problems)
    assert len(problems) == 3


@pytest.mark.parametrize("matrix, expected", [
    ([[float("nan")] * 4] * 4, "expected finite values"),
    ([[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "expected a proper rotation"),
    ([[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "det -1"),  # a reflection, not a rotation
    ([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], "expected bottom row [0, 0, 0, 1]"),
    ([[1, 0], [0, 1]], "expected a 4x4 matrix"),
])
def test_bad_matrices(good_log, matrix, expected):
    # json cannot carry NaN in strict mode, but Python writes it and many tools do the same.
    edit_log(good_log, lambda d: d["frames"][1].__setitem__("transform_matrix", matrix))
    problems = _problems(good_log)
    assert any(p.endswith(expected) or expected in p for p in problems if "frames[1].transform_matrix" in p), problems


def test_rotation_within_tolerance_is_accepted(good_log):
    m = np.eye(4)
    m[0, 1] = 5e-4  # inside the spec's 1e-3 orthonormality tolerance
    edit_log(good_log, lambda d: d["frames"][1].__setitem__("transform_matrix", m.tolist()))
    assert load_log(good_log)


def test_wrong_image_size_and_missing_image(good_log):
    Image.new("RGB", (10, 10)).save(good_log / "images/1.png")
    (good_log / "images/0.png").unlink()
    problems = _problems(good_log)
    assert any("frames[0].file_path: image 'images/0.png' does not exist" in p for p in problems)
    assert any("frames[1].file_path: image 'images/1.png' is 10x10, expected 64x48" in p for p in problems)


def test_skip_missing_drops_the_frame_instead(good_log):
    (good_log / "images/0.png").unlink()
    log = load_log(good_log, skip_missing=True)
    assert [f.file_path for f in log.frames] == ["images/1.png"]


def test_unreadable_image(good_log):
    (good_log / "images/1.png").write_bytes(b"not a png")
    assert any("is not a readable image" in p for p in _problems(good_log))


@pytest.mark.parametrize("array, expected", [
    (np.zeros((10, 5), np.float32), "expected shape (N, 3) or (N, 4), got (10, 5)"),
    (np.zeros((10, 4), np.float64), "expected dtype float32, got float64"),
    (np.zeros(10, np.float32), "expected shape (N, 3) or (N, 4), got (10,)"),
])
def test_lidar_of_wrong_shape_or_dtype(good_log, array, expected):
    np.save(good_log / "lidar/0.npy", array)
    problems = _problems(good_log)
    assert any("lidar[0].file_path" in p and expected in p for p in problems), problems


def test_duplicate_actor_ids_and_unsorted_track(good_log):
    def edit(d):
        d["actors"][1]["id"] = "car_a"
        d["actors"][0]["track"][1]["timestamp"] = 0.0
    edit_log(good_log, edit)
    problems = _problems(good_log)
    assert any("actors[1].id: actor id 'car_a' repeats actors[0].id" in p for p in problems)
    assert any("actors[0].track[1].timestamp: timestamps must be strictly increasing" in p for p in problems)


def test_unsorted_ego_and_path_escaping_the_log(good_log):
    def edit(d):
        d["ego"][1]["timestamp"] = -1.0
        d["frames"][0]["file_path"] = "../../etc/passwd"
        d["lidar"][0]["file_path"] = "/abs/points.npy"
    edit_log(good_log, edit)
    problems = _problems(good_log)
    assert any("ego[1].timestamp: timestamps must be strictly increasing" in p for p in problems)
    assert any("frames[0].file_path: path '../../etc/passwd' leaves the log folder" in p for p in problems)
    assert any("lidar[0].file_path: expected a path relative to the log folder" in p for p in problems)


def test_non_positive_focal_and_size(good_log):
    edit_log(good_log, lambda d: d.update(fl_x=0.0, w=-5))
    problems = _problems(good_log)
    assert any("fl_x: expected a positive number, got 0.0" in p for p in problems)
    assert any("w: expected a positive number, got -5" in p for p in problems)
    # Shared intrinsics: reported once, not once per frame.
    assert sum("fl_x" in p for p in problems) == 1


def test_load_log_raises_with_every_problem(good_log):
    edit_log(good_log, lambda d: [d["frames"][0].pop("file_path"), d.__setitem__("simrecon_version", 7)])
    with pytest.raises(LogError) as info:
        load_log(good_log)
    assert len(info.value.problems) == 2
    assert "simrecon_version: expected 1, got 7" in str(info.value)


def test_folder_without_transforms(tmp_path):
    log, problems = validate_log(tmp_path)
    assert log is None and "no transforms.json" in str(problems[0])
