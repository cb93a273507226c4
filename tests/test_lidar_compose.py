"""Scenario ``lidar`` output: compose writes drive-log sweeps of the edited scene, export writes KITTI velodyne."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from simrecon.compose import ScenarioError, load_scenario
from simrecon.data import load_log
from simrecon.data.lidar_io import read_points, read_sidecar
from simrecon.data.scene_api import logged_placements
from simrecon.export import compose, export
from simrecon.synth import GroundTruthScene


def _scenario(tmp_path: Path, log: Path, name: str = "s", **doc) -> Path:
    body = {"name": name, "scene": str(log), "cameras": ["front"], **doc}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def _world(points: np.ndarray, s2w) -> np.ndarray:
    s2w = np.asarray(s2w)
    return points[:, :3].astype(np.float64) @ s2w[:3, :3].T + s2w[:3, 3]


def _in_box(pts: np.ndarray, pose: np.ndarray, size, margin: float = 0.05) -> np.ndarray:
    """Points in the box and above the road it stands on."""
    local = (pts - pose[:3, 3]) @ pose[:3, :3]
    above_road = local[:, 2] > -size[2] / 2 + 0.1
    return np.all(np.abs(local) <= np.asarray(size) / 2 + margin, axis=1) & above_road


def test_compose_lidar_removes_the_actor_and_keeps_the_drive_log_format(tmp_path, xs_log):
    sc = _scenario(tmp_path, xs_log, actors=[{"id": "car_1", "remove": True}], outputs=["lidar"])
    out = tmp_path / "out"
    result = compose(sc, out)
    assert result.sweeps == 3 and result.frames == 0, "lidar only: no camera frames"
    log = load_log(xs_log)
    car = log.actor("car_1")
    doc = json.loads((out / "lidar.json").read_text())
    sensor = log.lidar_sensors["lidar"]
    assert doc["lidar_sensors"]["lidar"] == sensor.to_json()
    seen_before = 0
    for entry, logged in zip(doc["lidar"], log.lidar):
        assert entry["timestamp"] == pytest.approx(logged.timestamp)
        np.testing.assert_allclose(entry["transform_matrix"], logged.s2w, atol=1e-9)  # unshifted ego: same pose
        pts = read_points(out / entry["file_path"])
        index = read_sidecar(out / entry["index_path"], "index_path", len(pts))
        assert pts.shape[1] == 4 and index.max(axis=0).tolist() < [sensor.beams, sensor.columns]
        pose = car.pose_at(logged.timestamp)
        seen_before += _in_box(logged.load_world(log.root), pose, car.size).sum()
        assert _in_box(_world(pts, entry["transform_matrix"]), pose, car.size).sum() == 0, "car_1's points vanish"
        ply = read_points(out / entry["ply_path"])
        np.testing.assert_allclose(ply, pts, atol=1e-6)
    assert seen_before > 50, "the logged sweeps do see car_1"


def test_compose_lidar_equals_the_exact_scene_and_follows_the_ego(tmp_path, xs_log):
    sc = _scenario(tmp_path, xs_log, ego={"lateral": 2.0}, outputs=["rgb", "lidar"])
    out = tmp_path / "out"
    compose(sc, out)
    gt = GroundTruthScene.from_log(xs_log)
    log = gt.log
    sensor = log.lidar_sensors["lidar"]
    comp = json.loads((out / "composition.json").read_text())
    ids = {a["instance_id"]: a["id"] for a in comp["actors"]}
    for k, logged in enumerate(log.lidar):
        rec = json.loads((out / f"lidar/{k:06d}.json").read_text())
        s2w = np.asarray(rec["sensor_to_world"])
        np.testing.assert_allclose(s2w[:3, 3] - logged.s2w[:3, 3], logged.s2w[:3, :3] @ [0, 2.0, 0], atol=1e-9)
        placed = logged_placements(log, logged.timestamp)
        want = gt.render_lidar(sensor, s2w, logged.timestamp, placed)
        pts = read_points(out / f"lidar/{k:06d}.npy")
        np.testing.assert_allclose(pts[:, :3], want.points(), atol=1e-5)
        inst = read_sidecar(out / f"lidar/{k:06d}.index.npy", "index_path", len(pts))
        assert len(inst) == len(pts)
        local = np.load(out / f"lidar/{k:06d}.instance.npy")
        names = [ids[i] if i else "" for i in local]
        expect = [want.instance_names[i - 1] if i else "" for i in want.instance[want.returned]]
        assert names == expect, "per-point instance ids name the scenario's actors"
        assert {o["id"] for o in rec["objects"]} == set(placed)


def test_kitti_export_writes_velodyne_in_the_calibrated_frame(tmp_path, xs_log):
    sc = _scenario(tmp_path, xs_log, outputs=["rgb", "boxes", "lidar"])
    out = tmp_path / "kitti"
    export(sc, "kitti", out)
    log = load_log(xs_log)
    for n, logged in enumerate(log.lidar):
        pts = np.fromfile(out / f"velodyne/{n:06d}.bin", dtype="<f4").reshape(-1, 4)
        labels = np.fromfile(out / f"velodyne_labels/{n:06d}.label", dtype="<u4")
        assert len(labels) == len(pts) > 1000
        ego = log.ego.pose_at(logged.timestamp, hold=True)
        world = pts[:, :3].astype(np.float64) @ ego[:3, :3].T + ego[:3, 3]
        np.testing.assert_allclose(np.sort(world[:, 2]), np.sort(logged.load_world(log.root)[:, 2]), atol=1e-4)
        # Tr_velo_to_cam takes the points into the front camera (OpenCV axes): ahead has z > 0
        calib = dict(line.split(": ", 1) for line in (out / f"calib/{n:06d}.txt").read_text().splitlines())
        tr = np.array(calib["Tr_velo_to_cam"].split(), float).reshape(3, 4)
        ahead = pts[:, 0] > 5
        cam = pts[ahead, :3] @ tr[:, :3].T + tr[:, 3]
        assert np.all(cam[:, 2] > 0)
        assert np.any(labels >> 16 > 0) and np.all((labels & 0xFFFF)[labels >> 16 == 0] == 0)


def test_lidar_output_errors_name_the_field(tmp_path, xs_log):
    sc = _scenario(tmp_path, xs_log, outputs=["rgb", "lidar"])
    with pytest.raises(ScenarioError, match="outputs: the coco format has no lidar layout"):
        export(sc, "coco", tmp_path / "coco")
    with pytest.raises(ScenarioError, match="outputs"):
        _scenario(tmp_path, xs_log, name="bad", outputs=["radar"]) and load_scenario(tmp_path / "bad.yaml")
    plan = load_scenario(sc)

    class CameraOnly:  # a RenderableScene without render_lidar
        log = plan.scene.log

        def render(self, *a, **k):
            raise AssertionError("not reached")

    plan.scene = CameraOnly()
    with pytest.raises(ScenarioError, match="does not render lidar"):
        compose(plan, tmp_path / "x")


def test_inserted_actor_returns_points_with_its_instance_id(tmp_path, xs_log):
    traj = [{"t": 0.0, "position": [10.0, -1.75]}, {"t": 0.2, "position": [11.0, -1.75]}]  # ahead in the ego lane
    sc = _scenario(tmp_path, xs_log, actors=[{"id": "car_new", "source": "car_1", "trajectory": traj}],
                   outputs=["lidar"])
    out = tmp_path / "out"
    compose(sc, out)
    comp = json.loads((out / "composition.json").read_text())
    new = next(a for a in comp["actors"] if a["id"] == "car_new")
    plan = load_scenario(sc)
    size = plan.actor("car_new").size
    for k, t in enumerate(plan.times):
        rec = json.loads((out / f"lidar/{k:06d}.json").read_text())
        pts = _world(read_points(out / f"lidar/{k:06d}.npy"), rec["sensor_to_world"])
        inst = np.load(out / f"lidar/{k:06d}.instance.npy")
        mine = inst == new["instance_id"]
        assert mine.sum() > 50
        pose = plan.actor("car_new").pose_at(float(t))
        local = (pts[mine] - pose[:3, 3]) @ pose[:3, :3]
        assert np.all(np.abs(local) <= size / 2 + 0.01), "its points lie on it, where it now is"
        obj = next(o for o in rec["objects"] if o["id"] == "car_new")
        assert obj["points"] == mine.sum()
        box_sensor = np.linalg.inv(rec["sensor_to_world"]) @ plan.actor("car_new").pose_at(float(t))
        np.testing.assert_allclose(np.asarray(obj["box_sensor"]["pose"])[:3, 3], box_sensor[:3, 3])


def test_a_mesh_asset_returns_points_in_the_composed_sweeps(tmp_path, xs_log):
    import trimesh

    from simrecon.mesh.assets import MeshData, save_mesh

    box = trimesh.creation.box(extents=[4.0, 2.0, 2.0])
    colors = np.full((len(box.vertices), 3), 200, np.uint8)
    save_mesh(MeshData(np.asarray(box.vertices, np.float32), np.asarray(box.faces), colors,
                       {"class": "truck", "size": [4, 2, 2]}), tmp_path / "van.ply")
    traj = [{"t": 0.0, "position": [12.0, -1.75]}, {"t": 0.2, "position": [13.0, -1.75]}]
    sc = _scenario(tmp_path, xs_log, actors=[{"id": "van_1", "source": "asset:van.ply", "trajectory": traj}],
                   outputs=["lidar"])
    out = tmp_path / "out"
    compose(sc, out)
    plan = load_scenario(sc)
    van = plan.actor("van_1")
    for k, t in enumerate(plan.times):
        rec = json.loads((out / f"lidar/{k:06d}.json").read_text())
        pts = _world(read_points(out / f"lidar/{k:06d}.npy"), rec["sensor_to_world"])
        mine = np.load(out / f"lidar/{k:06d}.instance.npy") == van.instance_id
        assert mine.sum() > 50
        local = (pts[mine] - van.pose_at(float(t))[:3, 3]) @ van.pose_at(float(t))[:3, :3]
        assert np.all(np.abs(local) <= np.asarray(van.size) / 2 + 0.01), "the van's points lie on the mesh"
        assert next(o for o in rec["objects"] if o["id"] == "van_1")["points"] == mine.sum()
