"""PandaSet reader on a tiny sequence in the devkit's layout (pickled DataFrames written at test time)."""

from __future__ import annotations

import gzip
import math
import os
import pickle

import numpy as np
import pytest
from fixtures_readers import (
    PANDA_BOX_VEHICLE,
    PANDA_CAM_IN_VEHICLE,
    PANDA_K,
    PANDA_LIDAR_IN_VEHICLE,
    panda_car_world,
    panda_vehicle,
    write_pandaset,
)

from simrecon.data import validate_log
from simrecon.data.geometry import make_pose, rot_z
from simrecon.data.readers import ReaderError, convert, read

pytest.importorskip("pandas")


def cv_pixel(k: tuple[float, float, float, float], p_cam: np.ndarray) -> np.ndarray:
    fx, fy, cx, cy = k
    return np.array([fx * p_cam[0] / p_cam[2] + cx, fy * p_cam[1] / p_cam[2] + cy]) + 0.5


def devkit_corners(centre: np.ndarray, dims: tuple[float, float, float], yaw: float) -> np.ndarray:
    """pandaset-devkit geometry.center_box_to_corners: Rz(yaw) applied to (±dim_x, ±dim_y, ±dim_z) / 2."""
    half = np.array(dims) / 2
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
    c, s = math.cos(yaw), math.sin(yaw)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return (signs * half) @ rz.T + centre


def test_pandaset_projects_box_centre_and_lidar(tmp_path):
    seq = write_pandaset(tmp_path / "pandaset" / "001", n=2)
    log = convert("pandaset", seq, tmp_path / "out")
    assert validate_log(tmp_path / "out")[1] == []
    assert set(log.cameras) == {"front_camera", "left_camera"} and len(log.frames) == 4 and len(log.lidar) == 2
    assert [a.id for a in log.actors] == ["car-uuid", "cone-uuid"]  # the PandarGT sibling cuboid is dropped
    car = log.actor("car-uuid")
    assert car.cls == "car" and car.size == pytest.approx([4.5, 1.9, 1.6])  # dimensions.y is the length
    assert log.actor("cone-uuid").cls == "other" and log.actor("cone-uuid").extra["stationary"] is True
    # camera time 0, lidar and cuboids 50 ms later (their own timestamps)
    assert log.cameras["front_camera"][0].timestamp == pytest.approx(0.0)
    assert log.lidar[0].timestamp == pytest.approx(0.05) and car.track.timestamps[0] == pytest.approx(0.05)
    # the box centre lands where K says in the front camera (OpenCV axes, +0.5 pixel-centre shift)
    cam_from_vehicle = np.linalg.inv(PANDA_CAM_IN_VEHICLE["front_camera"])
    p_cam = cam_from_vehicle[:3, :3] @ PANDA_BOX_VEHICLE + cam_from_vehicle[:3, 3]
    for i, f in enumerate(log.cameras["front_camera"]):
        uv, depth = f.project(car.track.poses[i][None, :3, 3])
        assert uv[0] == pytest.approx(cv_pixel(PANDA_K["front_camera"], p_cam), abs=1e-6)
        assert depth[0] == pytest.approx(p_cam[2], abs=1e-9)
    # a point 5 m to the vehicle's left lands on the left camera's principal point
    f = log.cameras["left_camera"][1]
    cam_left = PANDA_CAM_IN_VEHICLE["left_camera"]
    p_veh = cam_left[:3, 3] + np.array([0.0, 5.0, 0.0])
    world = panda_vehicle(1)[:3, :3] @ p_veh + panda_vehicle(1)[:3, 3] - log.extra["source"]["world_offset"]
    uv, depth = f.project(world[None])
    assert uv[0] == pytest.approx(np.array(PANDA_K["left_camera"][2:]) + 0.5, abs=1e-6) and depth[0] == pytest.approx(5)
    # lidar: world points -> the Pandar64 pose's frame; the PandarGT point (d = 1) is dropped
    pts = np.load(tmp_path / "out" / log.lidar[1].file_path)
    assert pts.shape == (2, 4) and pts.dtype == np.float32 and pts[:, 3] == pytest.approx([0.2, 1.0])
    lidar_from_vehicle = np.linalg.inv(PANDA_LIDAR_IN_VEHICLE)
    assert pts[0, :3] == pytest.approx(lidar_from_vehicle[:3, :3] @ PANDA_BOX_VEHICLE + lidar_from_vehicle[:3, 3],
                                       abs=1e-4)
    assert log.lidar[1].load_world(log.root)[0] == pytest.approx(car.track.poses[1][:3, 3], abs=1e-4)
    uv, _ = log.cameras["front_camera"][1].project(log.lidar[1].load_world(log.root)[:1])
    assert uv[0] == pytest.approx(cv_pixel(PANDA_K["front_camera"], p_cam), abs=1e-3)


def test_pandaset_box_yaw_and_corners_match_devkit(tmp_path):
    seq = write_pandaset(tmp_path / "001", n=2)
    log = read("pandaset", seq).log
    car = log.actor("car-uuid")
    offset = np.array(log.extra["source"]["world_offset"])
    for i in range(2):
        centre, yaw = panda_car_world(i)
        pose = car.track.poses[i]
        heading = math.atan2(pose[1, 0], pose[0, 0])  # box x (forward, the length side) in the world
        assert heading == pytest.approx(0.4 + 0.02 * i + 0.1)
        assert pose[:3, 2] == pytest.approx([0, 0, 1])
        ours = car.corners_at(car.track.timestamps[i]) + offset
        theirs = devkit_corners(centre, (1.9, 4.5, 1.6), yaw)
        dist = np.linalg.norm(ours[:, None] - theirs[None], axis=-1)
        assert dist.min(axis=1).max() < 1e-9  # the same 8 corners


def test_pandaset_ego_world_and_selection(tmp_path):
    seq = write_pandaset(tmp_path / "001", n=3)
    conv = read("pandaset", tmp_path, cameras=["left_camera"], frames="1:3")  # a folder with one sequence
    log = conv.log
    assert set(log.cameras) == {"left_camera"} and len(log.frames) == 2 and len(log.lidar) == 2
    # ego = the front camera's axes relabelled, even when the front camera is not converted
    ego0 = log.ego.poses[0]
    assert ego0[:3, 3] == pytest.approx([0, 0, 0])
    assert ego0[:3, :3] == pytest.approx(panda_vehicle(1)[:3, :3], abs=1e-9)
    assert log.extra["source"]["world_offset"] == pytest.approx(
        (panda_vehicle(1) @ PANDA_CAM_IN_VEHICLE["front_camera"])[:3, 3].tolist())
    assert log.extra["source"]["gps_first_frame"]["lat"] == pytest.approx(37.77001)
    assert not conv.warnings
    with pytest.raises(ReaderError, match="available: front_camera, left_camera"):
        read("pandaset", seq, cameras=["back_camera"])


def test_pandaset_missing_image_and_no_annotations(tmp_path):
    seq = write_pandaset(tmp_path / "001", n=2, cuboids=False)
    (seq / "camera" / "left_camera" / "01.jpg").unlink()
    with pytest.raises(ReaderError, match=r"left_camera/01\.jpg: image does not exist \(use --skip-missing"):
        read("pandaset", seq)
    conv = read("pandaset", seq, skip_missing=True)
    assert len(conv.log.frames) == 3 and conv.log.actors == [] and len(conv.warnings) == 1


def test_pandaset_zero_quaternion_names_file_and_entry(tmp_path):
    import json

    seq = write_pandaset(tmp_path / "001", n=2)
    poses = seq / "camera" / "front_camera" / "poses.json"
    data = json.loads(poses.read_text())
    data[1]["heading"] = {"w": 0.0, "x": 0.0, "y": 0.0, "z": 0.0}
    poses.write_text(json.dumps(data))
    with pytest.raises(ReaderError) as exc:
        read("pandaset", seq)
    assert str(exc.value) == (f"{poses}: [1].heading: expected a non-zero (w, x, y, z) quaternion, "
                              "got [0.0, 0.0, 0.0, 0.0]")


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pickle-ran-code > /dev/null",))


@pytest.mark.parametrize("where", ["lidar", "cuboids"])
def test_pandaset_refuses_pickles_that_call_other_code(tmp_path, where):
    seq = write_pandaset(tmp_path / "001", n=2)
    target = seq / "lidar" / "01.pkl.gz" if where == "lidar" else seq / "annotations" / "cuboids" / "01.pkl.gz"
    with gzip.open(target, "wb") as fh:
        pickle.dump(_Evil(), fh)
    with pytest.raises(ReaderError) as exc:
        convert("pandaset", seq, tmp_path / "out")
    assert str(exc.value).startswith(f"{target}: refusing to unpickle posix.system") or "nt.system" in str(exc.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp-*"))


def test_pandaset_missing_cuboid_column_and_bad_value(tmp_path):
    from fixtures_readers import pickle_frame

    seq = write_pandaset(tmp_path / "001", n=1)
    target = seq / "annotations" / "cuboids" / "00.pkl.gz"
    pickle_frame(target, {"uuid": ["a"], "label": ["Car"], "yaw": [0.0]})
    with pytest.raises(ReaderError, match=r"00\.pkl\.gz: position\.x: missing column"):
        read("pandaset", seq)
    cols = {"uuid": ["a"], "label": ["Car"], "yaw": [float("nan")], **{f"position.{k}": [1.0] for k in "xyz"},
            **{f"dimensions.{k}": [1.0] for k in "xyz"}}
    pickle_frame(target, cols)
    with pytest.raises(ReaderError, match=r"00\.pkl\.gz: row 0\.yaw: expected a finite number"):
        read("pandaset", seq)


def test_pandaset_without_pandas_is_one_line(tmp_path, monkeypatch):
    import builtins

    seq = write_pandaset(tmp_path / "001", n=1, cuboids=False)
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ReaderError) as exc:
        read("pandaset", seq)
    assert "needs pandas" in str(exc.value) and "\n" not in str(exc.value)


def test_a_lidar_pose_at_the_vehicle_base_is_raised_to_the_pandar64(tmp_path):
    """PandaSet's lidar/poses.json is the vehicle's base near the ground (devkit issue 60): the sweeps start at the
    front camera's height instead (the static calibration puts it within 5 cm of the Pandar64)."""
    import json

    from fixtures_readers import PANDA_CAM_IN_VEHICLE, _panda_pose, panda_vehicle

    seq = write_pandaset(tmp_path / "seq" / "001", n=2)
    base = make_pose(rot_z(math.pi / 2), np.zeros(3))  # the lidar pose on the ground, the fixture's lidar axes
    (seq / "lidar" / "poses.json").write_text(json.dumps([_panda_pose(panda_vehicle(i) @ base) for i in range(2)]))
    log = convert("pandaset", seq, tmp_path / "out")
    for s, cam in zip(log.lidar, log.cameras["front_camera"]):
        assert s.s2w[2, 3] == pytest.approx(cam.c2w[2, 3], abs=1e-6)  # at the front camera's height
        vehicle = panda_vehicle(0)[2, 3] - log.extra["source"]["world_offset"][2]  # the vehicle base, shifted
        assert s.s2w[2, 3] - vehicle == pytest.approx(PANDA_CAM_IN_VEHICLE["front_camera"][2, 3], abs=1e-6)
    assert "lidar_origin" in log.extra["source"]
    car = log.actors[0]
    assert log.lidar[1].load_world(log.root)[0] == pytest.approx(car.track.poses[1][:3, 3], abs=1e-4)  # same points
