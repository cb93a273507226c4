"""Dataset readers on tiny fixtures that follow each official layout (always run)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures_readers import (
    DGP_BOX,
    DGP_CAM_IN_VEHICLE,
    DGP_K,
    KT_P2,
    ODO_P0,
    ODO_P2,
    dgp_vehicle_pose,
    write_dgp,
    write_image,
    write_kitti_odometry,
    write_kitti_tracking,
    write_nerfstudio,
)

from simrecon.data import load_log, validate_log
from simrecon.data.readers import ReaderError, convert, known_formats, read
from simrecon.data.readers.kitti_odometry import R_WORLD_FROM_CAM
from simrecon.data.readers.kitti_tracking import oxts_poses


def cv_pixel(K: np.ndarray, p_cam: np.ndarray) -> np.ndarray:
    """OpenCV projection (top-left pixel centre at 0, 0) shifted to the drive-log convention (+0.5)."""
    q = K @ p_cam
    return q[:2] / q[2] + 0.5


# -- registry / shared ----------------------------------------------------------------------------------

def test_unknown_format_lists_known(tmp_path):
    with pytest.raises(ReaderError) as exc:
        read("colmap", tmp_path)
    msg = str(exc.value)
    assert "unknown format" in msg and "kitti-odometry" in msg and "nerfstudio" in msg and "\n" not in msg


def test_known_formats_include_priorities():
    assert {"nerfstudio", "kitti-odometry", "kitti-tracking", "dgp"} <= set(known_formats())


def test_bad_frames_selection(tmp_path):
    write_nerfstudio(tmp_path / "src")
    with pytest.raises(ReaderError, match="START:END"):
        read("nerfstudio", tmp_path / "src", frames="1-3")


# -- nerfstudio -----------------------------------------------------------------------------------------

def test_nerfstudio_convert_and_project(tmp_path):
    src = write_nerfstudio(tmp_path / "src", n=3)
    log = convert("nerfstudio", src, tmp_path / "out")
    assert (tmp_path / "out" / "transforms.json").is_file() and not list(tmp_path.glob("out.tmp-*"))
    assert len(log.frames) == 3
    f = log.frames[0]
    assert f.intrinsics.fl_x == pytest.approx(50.0)  # from camera_angle_x
    assert f.intrinsics.k1 == pytest.approx(0.01) and f.intrinsics.k2 == pytest.approx(-0.002)
    assert (f.intrinsics.w, f.intrinsics.h) == (40, 30)
    assert [fr.timestamp for fr in log.frames] == pytest.approx([0.0, 0.1, 0.2])
    assert log.frames[1].extra.get("sharpness") == 11.0
    # the origin is straight ahead of every camera: it lands on the principal point
    uv, depth = f.project(np.zeros((1, 3)))
    assert uv[0] == pytest.approx([20.0, 15.0]) and depth[0] == pytest.approx(2.0)
    # a point to the right and up (OpenGL x right, y up) lands right of and above the centre
    uv, _ = f.project(np.array([[0.2, 0.1, 0.0]]))
    assert uv[0, 0] > 20.0 and uv[0, 1] < 15.0
    loaded = load_log(tmp_path / "out")
    assert loaded.frames[0].file_path.startswith("images/")


def test_nerfstudio_missing_image_error_or_skip(tmp_path):
    src = write_nerfstudio(tmp_path / "src", n=3, missing=1)
    with pytest.raises(ReaderError) as exc:
        read("nerfstudio", src)
    assert "frames[1].file_path" in str(exc.value) and "--skip-missing" in str(exc.value)
    conv = read("nerfstudio", src, skip_missing=True)
    assert len(conv.log.frames) == 2 and conv.warnings


def test_nerfstudio_frames_and_blender_extensionless(tmp_path):
    src = tmp_path / "blender"
    frames = []
    for i in range(4):
        write_image(src / "train" / f"r_{i}.png", 20, 20, seed=i)
        c2w = np.eye(4)
        c2w[2, 3] = 4.0
        frames.append({"file_path": f"./train/r_{i}", "rotation": 0.1, "transform_matrix": c2w.tolist()})
    (src / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    log = convert("nerfstudio", src, tmp_path / "out", frames="1:3")
    assert [Path(f.file_path).name for f in log.frames] == ["r_1.png", "r_2.png"]
    assert log.frames[0].intrinsics.fl_x == pytest.approx(10.0 / math.tan(0.345))


def test_nerfstudio_bad_matrix_names_field(tmp_path):
    src = write_nerfstudio(tmp_path / "src", n=2)
    data = json.loads((src / "transforms.json").read_text())
    data["frames"][1]["transform_matrix"] = [[1, 0], [0, 1]]
    (src / "transforms.json").write_text(json.dumps(data))
    with pytest.raises(ReaderError) as exc:
        read("nerfstudio", src)
    assert "transforms.json: frames[1].transform_matrix: expected a 4x4 matrix" in str(exc.value)


# -- KITTI odometry -------------------------------------------------------------------------------------

@pytest.mark.parametrize("labelled", [True, False])
def test_kitti_odometry_project_and_world_up(tmp_path, labelled):
    src = write_kitti_odometry(tmp_path / "seq", n=4, labelled=labelled)
    conv = read("kitti-odometry", src)
    log = conv.log
    cams = log.cameras
    assert set(cams) == {"image_0", "image_2"}
    # world is z-up: camera 0 at frame 0 looks along world +x, its image 'down' is world -z
    f0 = cams["image_0"][0]
    assert np.allclose(f0.c2w[:3, :3] @ [0, 0, -1], [1, 0, 0])
    assert np.allclose(f0.c2w[:3, :3] @ [0, 1, 0], [0, 0, 1])
    # a point known in camera-0 coordinates of frame 2 projects where K says, in both cameras
    p_cam = np.array([1.0, 0.5, 10.0])
    pose2 = np.eye(4)
    a = 0.05 * 2
    pose2[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    pose2[2, 3] = 2.0
    p_world = R_WORLD_FROM_CAM @ (pose2[:3, :3] @ p_cam + pose2[:3, 3])
    uv, depth = cams["image_0"][2].project(p_world[None])
    assert uv[0] == pytest.approx(cv_pixel(ODO_P0[:, :3], p_cam), abs=1e-6) and depth[0] == pytest.approx(10.0)
    q = ODO_P2 @ np.append(p_cam, 1.0)
    uv2, _ = cams["image_2"][2].project(p_world[None])
    assert uv2[0] == pytest.approx(q[:2] / q[2] + 0.5, abs=1e-6)
    # forward motion goes along world +x; timestamps 10 Hz
    assert log.ego.poses[1, 0, 3] == pytest.approx(1.0, abs=0.1)
    assert [f.timestamp for f in cams["image_0"]] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    # velodyne points (x forward in velo) land ahead of the camera
    assert len(log.lidar) == 4
    s = log.lidar[0]
    pts = conv.lidar[s.file_path]()
    assert pts.dtype == np.float32 and pts.shape == (2, 4)
    world = pts[:, :3].astype(float) @ s.s2w[:3, :3].T + s.s2w[:3, 3]
    uv, depth = cams["image_0"][0].project(world)
    # Tr maps velo (10, 0, 0) to camera 0 (0, -0.08, 9.73)
    assert depth[0] == pytest.approx(9.73, abs=1e-6)
    assert uv[0] == pytest.approx(cv_pixel(ODO_P0[:, :3], np.array([0.0, -0.08, 9.73])), abs=1e-6)


def test_kitti_odometry_lidar_matches_devkit_chain(tmp_path):
    src = write_kitti_odometry(tmp_path / "seq", n=2)
    conv = read("kitti-odometry", src)
    f = conv.log.cameras["image_0"][1]
    s = conv.log.lidar[1]
    pts = conv.lidar[s.file_path]()[:, :3].astype(float)
    world = pts @ s.s2w[:3, :3].T + s.s2w[:3, 3]
    uv, depth = f.project(world)
    tr = np.array([[0.0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27]])
    for p, u, d in zip(pts, uv, depth):
        p_cam = tr @ np.append(p, 1.0)  # devkit: P0 * Tr * X (camera 0 of the same frame)
        assert u == pytest.approx(cv_pixel(ODO_P0[:, :3], p_cam), abs=1e-6) and d == pytest.approx(p_cam[2])


def test_kitti_odometry_times_cameras_frames_and_convert(tmp_path):
    src = write_kitti_odometry(tmp_path / "seq", n=4, times=True, lidar=False)
    log = convert("kitti-odometry", src, tmp_path / "out", cameras=["image_2"], frames="1:3")
    assert [f.file_path for f in log.frames] == ["images/image_2/000001.png", "images/image_2/000002.png"]
    assert [f.timestamp for f in log.frames] == pytest.approx([0.0, 0.2])
    assert log.extra["source"]["time_offset"] == pytest.approx(5.2)
    with pytest.raises(ReaderError, match="unknown camera.*image_0"):
        read("kitti-odometry", src, cameras=["image_9"])


def test_kitti_odometry_missing_image_and_bad_calib(tmp_path):
    src = write_kitti_odometry(tmp_path / "seq", n=3, lidar=False)
    (src / "image_0" / "000001.png").unlink()
    with pytest.raises(ReaderError, match="000001.png does not exist"):
        read("kitti-odometry", src, cameras=["image_0"])
    assert len(read("kitti-odometry", src, cameras=["image_0"], skip_missing=True).log.frames) == 2
    (src / "calib.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(ReaderError) as exc:
        read("kitti-odometry", src)
    assert str(exc.value) == f"{src / 'calib.txt'}: P0: expected 12 numbers, got 3"
    write_kitti_odometry(tmp_path / "seq", n=3, lidar=False)
    (src / "poses.txt").unlink()
    with pytest.raises(ReaderError, match="poses"):
        read("kitti-odometry", src)


# -- KITTI tracking -------------------------------------------------------------------------------------

@pytest.mark.parametrize("colons", [False, True])
def test_kitti_tracking_fixture(tmp_path, colons):
    split = write_kitti_tracking(tmp_path / "training", seq="0003", n_oxts=3, with_images=(0, 1), colons=colons)
    conv = read("kitti-tracking", split)
    log = conv.log
    assert any("1 of 3 frames have no image" in w for w in conv.warnings)
    assert set(log.cameras) == {"image_02", "image_03"} and len(log.frames) == 4 and len(log.lidar) == 2
    assert {a.id for a in log.actors} == {"0", "1"}  # DontCare dropped
    car = log.actor("0")
    assert car.cls == "car" and np.allclose(car.size, [4.0, 1.6, 1.5]) and len(car.track) == 2
    assert log.actor("1").cls == "pedestrian"
    # the car's box centre (bottom centre raised by h/2) projects where P2 says
    f = log.cameras["image_02"][1]
    centre_rect = np.array([1.0, 1.6 - 0.75, 14.5])
    uv, depth = f.project(car.pose_at(f.timestamp)[None, :3, 3])
    q = KT_P2 @ np.append(centre_rect, 1.0)
    assert uv[0] == pytest.approx(q[:2] / q[2] + 0.5, abs=1e-6) and depth[0] == pytest.approx(q[2], abs=1e-6)
    # box z is world up (ENU world)
    pose = car.pose_at(f.timestamp)
    assert pose[:3, 2] @ [0, 0, 1] > 0.99
    # ego from oxts: world ENU, origin at the first frame, yaw from the oxts record
    assert np.allclose(log.ego.poses[0, :3, 3], 0.0)
    yaw = math.atan2(log.ego.poses[0, 1, 0], log.ego.poses[0, 0, 0])
    assert yaw == pytest.approx(0.3, abs=1e-6)


def test_kitti_tracking_box_heading(tmp_path):
    """KITTI: l runs along the heading, which is (cos ry, 0, -sin ry) in rectified camera 0 axes."""
    split = write_kitti_tracking(tmp_path / "training", seq="0001")
    log = read("kitti-tracking", split / "0001").log
    f = log.cameras["image_02"][0]
    car = log.actor("0")
    pose = car.pose_at(0.0)
    w2c = np.linalg.inv(f.c2w)
    heading_gl = w2c[:3, :3] @ pose[:3, 0]  # box x in OpenGL camera axes
    heading_cv = heading_gl * [1, -1, -1]
    ry = -1.5708
    assert heading_cv == pytest.approx([math.cos(ry), 0.0, -math.sin(ry)], abs=1e-3)


def test_kitti_tracking_velodyne_matches_devkit(tmp_path):
    split = write_kitti_tracking(tmp_path / "training", seq="0001")
    conv = read("kitti-tracking", split / "0001", cameras=["image_02"])
    from simrecon.data.readers.kitti_common import homogeneous, read_calib

    calib = read_calib(split / "calib" / "0001.txt")
    s = conv.log.lidar[0]
    f = conv.log.frames[0]
    pts = conv.lidar[s.file_path]()[:, :3].astype(float)
    uv, depth = f.project(pts @ s.s2w[:3, :3].T + s.s2w[:3, 3])
    q = (calib["P2"] @ homogeneous(calib["R_rect"]) @ homogeneous(calib["Tr_velo_cam"]) @ np.c_[pts, np.ones(2)].T).T
    assert uv == pytest.approx(q[:, :2] / q[:, 2:] + 0.5, abs=1e-4)


def test_kitti_tracking_errors(tmp_path):
    split = write_kitti_tracking(tmp_path / "training", seq="0001")
    write_kitti_tracking(tmp_path / "training", seq="0002")
    with pytest.raises(ReaderError, match="expected one sequence, found 2"):
        read("kitti-tracking", split)
    (split / "oxts" / "0001.txt").write_text("1 2 3\n")
    with pytest.raises(ReaderError) as exc:
        read("kitti-tracking", split / "0001")
    assert "oxts/0001.txt: line 1: expected 30 numbers, got 3" in str(exc.value)


def test_oxts_pose_matches_pykitti_formula(tmp_path):
    rec = np.zeros(30)
    rec[:6] = [49.0, 8.4, 110.0, 0.1, 0.2, 0.3]
    rec2 = rec.copy()
    rec2[0] += 1e-4
    (tmp_path / "o.txt").write_text(" ".join(map(str, rec)) + "\n" + " ".join(map(str, rec2)) + "\n")
    poses = oxts_poses(tmp_path / "o.txt")
    er, s = 6378137.0, math.cos(math.radians(49.0))
    assert poses[0, 0, 3] == pytest.approx(s * er * math.radians(8.4))
    assert poses[1, 1, 3] - poses[0, 1, 3] == pytest.approx(s * er * (math.log(math.tan(math.radians(90 + 49.0001) / 2))
                                                                      - math.log(math.tan(math.radians(90 + 49) / 2))))
    from simrecon.data.geometry import rot_x, rot_y, rot_z

    assert poses[0, :3, :3] == pytest.approx(rot_z(0.3) @ rot_y(0.2) @ rot_x(0.1))


# -- DGP ------------------------------------------------------------------------------------------------

def test_dgp_fixture_projects_box_centre(tmp_path):
    scene = write_dgp(tmp_path / "scene", n=2)
    log = convert("dgp", scene, tmp_path / "out")
    assert len(log.frames) == 2 and len(log.lidar) == 2 and len(log.actors) == 1 and len(log.ego) == 2
    car = log.actors[0]
    assert car.id == "443946110" and car.cls == "car" and np.allclose(car.size, [4.5, 1.9, 1.6])
    # camera fires 91 ms before the lidar
    assert log.frames[0].timestamp == pytest.approx(0.0) and log.lidar[0].timestamp == pytest.approx(0.091)
    # world recentred on the first ego position; axes kept
    assert np.allclose(log.ego.poses[0, :3, 3], 0.0)
    assert log.extra["source"]["world_offset"] == pytest.approx(dgp_vehicle_pose(0)[:3, 3].tolist())
    # the box centre, DGP_BOX in the vehicle frame, projects as K says in the camera of the same sample
    K = np.array([[DGP_K["fx"], 0, DGP_K["cx"]], [0, DGP_K["fy"], DGP_K["cy"]], [0, 0, 1]])
    p_cam = np.array([-DGP_BOX[1], -(DGP_BOX[2] - 1.6), DGP_BOX[0] - 1.5])
    for i, f in enumerate(log.frames):
        uv, depth = f.project(car.track.poses[i][None, :3, 3])
        assert uv[0] == pytest.approx(cv_pixel(K, p_cam), abs=1e-6) and depth[0] == pytest.approx(p_cam[2])
    # lidar point 0 is the box centre
    pts = log.lidar[1].load_world(log.root)
    assert pts[0] == pytest.approx(car.track.poses[1][:3, 3], abs=1e-4)
    # the LIDAR's extrinsic is the identity (points in the vehicle frame): rays start at the cameras' centre
    for s, ego in zip(log.lidar, log.ego.poses):
        assert s.s2w[:3, 3] == pytest.approx((ego @ DGP_CAM_IN_VEHICLE)[:3, 3], abs=1e-6)
    assert np.load(tmp_path / "out" / log.lidar[0].file_path).dtype == np.float32


def test_dgp_missing_image_and_cameras(tmp_path):
    scene = write_dgp(tmp_path / "scene", n=2, drop_image=1)
    with pytest.raises(ReaderError, match=r"data\[3\]\.datum\.image\.filename.*skip-missing"):
        read("dgp", scene)
    assert len(read("dgp", scene, skip_missing=True).log.frames) == 1
    with pytest.raises(ReaderError, match="available: CAMERA_01"):
        read("dgp", scene, cameras=["CAMERA_05"])


def test_dgp_bad_calibration_field(tmp_path):
    scene = write_dgp(tmp_path / "scene", n=1)
    cfile = next((scene / "calibration").glob("*.json"))
    data = json.loads(cfile.read_text())
    del data["intrinsics"][1]["fx"]
    cfile.write_text(json.dumps(data))
    with pytest.raises(ReaderError) as exc:
        read("dgp", scene)
    assert str(exc.value) == f"{cfile}: intrinsics[1].fx: missing required key"


# -- CLI ------------------------------------------------------------------------------------------------

def test_convert_command(tmp_path):
    from rich.console import Console

    from simrecon.cli.convert_cmd import convert_command

    src = write_kitti_odometry(tmp_path / "seq", n=3, lidar=True)
    out = tmp_path / "out"
    console = Console(file=open(tmp_path / "console.txt", "w"), width=120)
    log = convert_command("kitti-odometry", src, out, ["image_0"], "0:2", False, False, console=console)
    assert len(log.frames) == 2 and len(log.lidar) == 2
    assert validate_log(out)[1] == []
    with pytest.raises(ReaderError, match="already exists"):
        convert_command("kitti-odometry", src, out, None, None, False, False, console=console)
    log = convert_command("kitti-odometry", src, out, ["image_0,image_2"], None, False, True, console=console)
    assert len(log.frames) == 6
    with pytest.raises(ValueError, match="unknown format"):
        convert_command("kitty", src, tmp_path / "o2", None, None, False, False, console=console)
    assert not (tmp_path / "o2").exists()


# -- Waymo ----------------------------------------------------------------------------------------------

def test_waymo_fixture_camera_lidar_boxes(tmp_path):
    from fixtures_readers import (
        WAYMO_BOX,
        WAYMO_CAM_IN_VEHICLE,
        WAYMO_INCLINATIONS,
        WAYMO_K,
        WAYMO_LIDAR_IN_VEHICLE,
        waymo_pose,
        write_waymo,
    )

    seg = write_waymo(tmp_path / "seg" / "segment-test.tfrecord", n=2)
    log = convert("waymo", seg.parent, tmp_path / "out")
    assert set(log.cameras) == {"FRONT"} and len(log.frames) == 2 and len(log.lidar) == 2
    assert [a.id for a in log.actors] == ["car-abc"] and log.actors[0].cls == "car"
    assert np.allclose(log.actors[0].size, [4.6, 1.9, 1.7])
    # camera time from pose_timestamp, lidar/labels from timestamp_micros
    assert log.frames[1].timestamp - log.lidar[1].timestamp == pytest.approx(0.02)
    # the box centre projects as the Waymo camera model says (x forward, y left, z up; OpenCV K, +0.5)
    f = log.frames[0]
    car = log.actors[0]
    p_cam = WAYMO_BOX - WAYMO_CAM_IN_VEHICLE[:3, 3]  # Waymo camera axes = vehicle axes here
    u = WAYMO_K[0] * (-p_cam[1] / p_cam[0]) + WAYMO_K[2] + 0.5
    v = WAYMO_K[1] * (-p_cam[2] / p_cam[0]) + WAYMO_K[3] + 0.5
    uv, depth = f.project(car.track.poses[0][None, :3, 3])
    assert uv[0] == pytest.approx([u, v], abs=1e-6) and depth[0] == pytest.approx(p_cam[0])
    # heading 0.2 rad about vehicle z
    rel = np.linalg.inv(log.ego.poses[0]) @ car.track.poses[0]
    assert math.atan2(rel[1, 0], rel[0, 0]) == pytest.approx(0.2)
    # the one range-image return, from the devkit's beam geometry, in the lidar frame and in the world
    pts = np.load(tmp_path / "out" / log.lidar[0].file_path)
    assert pts.shape == (1, 4) and pts.dtype == np.float32 and pts[0, 3] == pytest.approx(math.tanh(2.0))
    incl = WAYMO_INCLINATIONS[::-1][0]
    az = ((8 - 3 - 0.5) / 8 * 2 - 1) * math.pi - 0.3
    expected = 10.0 * np.array([math.cos(incl) * math.cos(az), math.cos(incl) * math.sin(az), math.sin(incl)])
    assert pts[0, :3] == pytest.approx(expected, abs=1e-4)
    world = log.lidar[0].load_world(log.root)[0]
    src_world = waymo_pose(0) @ WAYMO_LIDAR_IN_VEHICLE @ np.append(expected, 1.0)
    assert world == pytest.approx(src_world[:3] - log.extra["source"]["world_offset"], abs=1e-3)


def test_waymo_rejects_non_tfrecord(tmp_path):
    (tmp_path / "x.tfrecord").write_bytes(b"not a tfrecord at all")
    with pytest.raises(ReaderError, match="CRC mismatch"):
        read("waymo", tmp_path / "x.tfrecord")


# -- nuScenes -------------------------------------------------------------------------------------------

def test_nuscenes_fixture_projects_box_and_lidar(tmp_path):
    from fixtures_readers import NUS_BOX_VEHICLE, NUS_CAM_IN_VEHICLE, NUS_K, write_nuscenes

    root = write_nuscenes(tmp_path / "nuscenes", n=2)
    log = convert("nuscenes", root, tmp_path / "out")
    assert set(log.cameras) == {"CAM_FRONT"} and len(log.frames) == 2 and len(log.lidar) == 2
    car = log.actors[0]
    assert car.cls == "car" and np.allclose(car.size, [4.5, 1.9, 1.6])  # nuScenes size is [w, l, h]
    assert log.frames[0].timestamp == pytest.approx(0.0) and log.lidar[0].timestamp == pytest.approx(0.01)
    cam_from_vehicle = np.linalg.inv(NUS_CAM_IN_VEHICLE)
    p_cam = cam_from_vehicle[:3, :3] @ NUS_BOX_VEHICLE + cam_from_vehicle[:3, 3]
    for i, f in enumerate(log.frames):
        uv, depth = f.project(car.track.poses[i][None, :3, 3])
        assert uv[0] == pytest.approx(cv_pixel(np.array(NUS_K), p_cam), abs=1e-6)
        assert depth[0] == pytest.approx(p_cam[2])
        # lidar point 0 was written at the box centre (in the LIDAR_TOP frame)
        pts = log.lidar[i].load_world(log.root)
        assert pts[0] == pytest.approx(car.track.poses[i][:3, 3], abs=1e-4)
    assert np.load(log.root / log.lidar[0].file_path)[0, 3] == pytest.approx(200 / 255)


def test_nuscenes_scene_selection(tmp_path):
    from fixtures_readers import write_nuscenes

    root = write_nuscenes(tmp_path / "nuscenes", n=3, scenes=2)
    with pytest.raises(ReaderError, match="expected one scene, found 2"):
        read("nuscenes", root)
    log = read("nuscenes", root / "scene-0062", frames="1:").log
    assert len(log.frames) == 2 and log.extra["source"]["scene"] == "scene-0062"
    assert len(read("nuscenes", f"{root}#scene-0061").log.frames) == 3
    with pytest.raises(ReaderError, match="no scene 'scene-9999'"):
        read("nuscenes", root / "scene-9999")


# -- Argoverse 2 ----------------------------------------------------------------------------------------

def test_argoverse2_fixture_projects_box(tmp_path):
    pytest.importorskip("pyarrow")
    from fixtures_readers import AV2_BOX_EGO, AV2_CAM_IN_EGO, AV2_K, write_argoverse2

    src = write_argoverse2(tmp_path / "val" / "0c6e62d7-bdfa-3061-8d3d-03b13aa21f68", n=2)
    log = convert("argoverse2", src, tmp_path / "out")
    assert len(log.frames) == 2 and len(log.lidar) == 2 and len(log.actors) == 1
    car = log.actors[0]
    assert car.cls == "car" and np.allclose(car.size, [4.4, 1.8, 1.5])
    K = np.array([[AV2_K[0], 0, AV2_K[2]], [0, AV2_K[1], AV2_K[3]], [0, 0, 1]])
    cam_from_ego = np.linalg.inv(AV2_CAM_IN_EGO)
    # camera images are 20 ms after the sweep and the ego turned a little: compare at the sweep's ego pose
    pts = log.lidar[0].load_world(log.root)
    assert pts[0] == pytest.approx(car.track.poses[0][:3, 3], abs=1e-4)  # lidar point 0 is the box centre
    f = log.frames[0]
    uv, depth = f.project(car.track.poses[0][None, :3, 3])
    # expected: box in ego(t_lidar) -> world -> ego(t_cam) -> camera
    from fixtures_readers import av2_ego

    world = av2_ego(0) @ np.append(AV2_BOX_EGO, 1.0)
    p_cam = (cam_from_ego @ np.linalg.inv(av2_ego(1)) @ world)[:3]
    assert uv[0] == pytest.approx(cv_pixel(K, p_cam), abs=1e-6) and depth[0] == pytest.approx(p_cam[2])
    assert np.load(log.root / log.lidar[0].file_path)[0, 3] == pytest.approx(0.2)


def test_argoverse2_missing_pyarrow_is_one_line(tmp_path, monkeypatch):
    import builtins

    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "city_SE3_egovehicle.feather").write_bytes(b"")
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ReaderError, match="needs pyarrow"):
        read("argoverse2", tmp_path / "log")
