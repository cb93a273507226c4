"""Logs the team has not seen: official layouts, other sequence / camera / class names (no special cases)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from fixtures_readers import (
    ODO_P2,
    PANDA_CAM_IN_VEHICLE,
    panda_vehicle,
    write_dgp,
    write_kitti_odometry,
    write_kitti_tracking,
    write_pandaset,
)

from simrecon.cli.main import main
from simrecon.data import validate_log
from simrecon.data.readers import read
from simrecon.data.readers.kitti_odometry import R_WORLD_FROM_CAM


def test_kitti_odometry_official_layout_colour_only(tmp_path):
    """dataset/sequences/07 with image_2 + image_3 only (the colour download), poses in dataset/poses/07.txt."""
    seq = write_kitti_odometry(tmp_path / "dataset" / "sequences" / "07", n=3, lidar=False)
    shutil.rmtree(seq / "image_0")
    shutil.copytree(seq / "image_2", seq / "image_3")
    (tmp_path / "dataset" / "poses").mkdir()
    (seq / "poses.txt").rename(tmp_path / "dataset" / "poses" / "07.txt")
    log = read("kitti-odometry", seq).log
    assert set(log.cameras) == {"image_2", "image_3"} and len(log.frames) == 6
    p_cam0 = np.array([0.5, -0.2, 8.0])  # camera 0 of frame 0 = the KITTI world
    uv, _ = log.cameras["image_2"][0].project((R_WORLD_FROM_CAM @ p_cam0)[None])
    q = ODO_P2 @ np.append(p_cam0, 1.0)
    assert uv[0] == pytest.approx(q[:2] / q[2] + 0.5, abs=1e-6)


def test_kitti_tracking_other_sequences_and_cli_path(tmp_path, capsys):
    split = tmp_path / "training"
    write_kitti_tracking(split, seq="0013", colons=True, with_images=(0, 1, 2))
    write_kitti_tracking(split, seq="0020", with_images=(0, 1, 2))
    log = read("kitti-tracking", split / "0020").log  # <split>/<seq>: the API accepts the virtual path
    assert log.extra["source"]["sequence"] == "0020" and len(log.cameras["image_02"]) == 3
    out = tmp_path / "out"
    code = main(["convert", "kitti-tracking", str(split / "image_02" / "0013"), str(out)])
    assert code == 0, capsys.readouterr().err
    assert validate_log(out)[1] == []
    assert json.loads((out / "transforms.json").read_text())["source"]["sequence"] == "0013"


def test_dgp_other_camera_names_and_ontology(tmp_path):
    scene = write_dgp(tmp_path / "scene", n=2)
    for f in scene.rglob("*.json"):
        text = f.read_text().replace("CAMERA_01", "camera_front_wide").replace("LIDAR", "lidar_roof")
        f.write_text(text)
    (scene / "rgb" / "CAMERA_01").rename(scene / "rgb" / "camera_front_wide")
    (scene / "point_cloud" / "LIDAR").rename(scene / "point_cloud" / "lidar_roof")
    (scene / "bounding_box_3d" / "LIDAR").rename(scene / "bounding_box_3d" / "lidar_roof")
    onto = next((scene / "ontology").glob("*.json"))
    onto.write_text(json.dumps({"items": [{"id": 11, "name": "Bus/RV/Caravan", "isthing": True}]}))
    for b in (scene / "bounding_box_3d" / "lidar_roof").glob("*.json"):
        data = json.loads(b.read_text())
        data["annotations"][0]["class_id"] = 11
        b.write_text(json.dumps(data))
    log = read("dgp", scene).log
    assert set(log.cameras) == {"camera_front_wide"} and {s.sensor for s in log.lidar} == {"lidar_roof"}
    assert log.actors[0].cls == "bus" and log.actors[0].extra["source_class"] == "Bus/RV/Caravan"


def test_pandaset_without_front_camera_uses_first_camera_for_ego(tmp_path):
    pytest.importorskip("pandas")
    seq = write_pandaset(tmp_path / "042", n=2)
    shutil.rmtree(seq / "camera" / "front_camera")
    log = read("pandaset", seq).log
    assert set(log.cameras) == {"left_camera"} and log.extra["source"]["sequence"] == "042"
    # ego x = the left camera's optical axis = the vehicle's left (y) axis
    assert log.ego.poses[0][:3, 0] == pytest.approx(panda_vehicle(0)[:3, 1], abs=1e-9)
    assert "left_camera" in log.extra["source"]["ego"]
    assert PANDA_CAM_IN_VEHICLE["left_camera"][:3, 2] == pytest.approx([0, 1, 0])  # the premise of the check
