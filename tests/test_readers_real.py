"""Readers on the real data excerpts in ../shared/data (skipped when absent).

Each test checks geometry against what the dataset itself ships: the devkit projection chain, 2D boxes,
or image content, so that a silent convention error (axes, pixel centres, pose direction) fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_readers import shared_data
from PIL import Image

from simrecon.data import validate_log
from simrecon.data.readers import convert, read
from simrecon.data.readers.kitti_common import homogeneous, read_calib, read_velodyne


def box_corners(pose: np.ndarray, size: np.ndarray) -> np.ndarray:
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    return (signs * size / 2) @ pose[:3, :3].T + pose[:3, 3]


def points_in_box(points: np.ndarray, pose: np.ndarray, size: np.ndarray) -> int:
    local = (points - pose[:3, 3]) @ pose[:3, :3]
    return int(np.sum(np.all(np.abs(local) <= size / 2, axis=1)))


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


# -- KITTI odometry -------------------------------------------------------------------------------------

def _bilinear(im: np.ndarray, uv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    u, v = uv[:, 0] - 0.5, uv[:, 1] - 0.5  # pixel centres at +0.5
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    ok = (u0 >= 0) & (v0 >= 0) & (u0 < im.shape[1] - 1) & (v0 < im.shape[0] - 1)
    u0, v0 = np.clip(u0, 0, im.shape[1] - 2), np.clip(v0, 0, im.shape[0] - 2)
    a, b = u - u0, v - v0
    val = (im[v0, u0] * (1 - a) * (1 - b) + im[v0, u0 + 1] * a * (1 - b) + im[v0 + 1, u0] * (1 - a) * b
           + im[v0 + 1, u0 + 1] * a * b)
    return val, ok


def test_kitti_odometry_real_devkit_projection_and_z_up():
    src = shared_data("kitti_odometry_excerpt") / "KITTI_sequence_1"
    conv = read("kitti-odometry", src)
    log = conv.log
    assert len(log.frames) == 51 and log.frames[0].intrinsics.w == 1226
    calib = read_calib(src / "calib.txt")
    poses = [np.vstack([np.array(line.split(), float).reshape(3, 4), [0, 0, 0, 1]])
             for line in (src / "poses.txt").read_text().splitlines() if line.strip()]
    rng = np.random.default_rng(0)
    worst = 0.0
    for i in (0, 25, 50):
        # random points in front of camera 0 of frame i, in KITTI's world (camera 0 at frame 0)
        p_cam = np.c_[rng.uniform(-10, 10, 50), rng.uniform(-2, 2, 50), rng.uniform(3, 60, 50)]
        p_kitti = p_cam @ poses[i][:3, :3].T + poses[i][:3, 3]
        q = (calib["P0"] @ np.linalg.inv(poses[i]) @ np.c_[p_kitti, np.ones(50)].T).T
        expected = q[:, :2] / q[:, 2:] + 0.5
        # the same points in the converted (z-up) world
        p_world = p_kitti @ np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float).T
        uv, depth = log.frames[i].project(p_world)
        worst = max(worst, float(np.abs(uv - expected).max()))
        assert depth == pytest.approx(q[:, 2], abs=1e-4)
    assert worst < 1e-3, f"reprojection offset vs KITTI devkit {worst:.2e} px"
    # z-up: the camera's up axis is world z, and ~60 m of driving is along world +x
    assert log.frames[0].c2w[:3, 1] == pytest.approx([0, 0, 1], abs=1e-6)
    travel = log.frames[-1].c2w[:3, 3] - log.frames[0].c2w[:3, 3]
    assert travel[0] > 55 and abs(travel[2]) < 3


def test_kitti_odometry_real_road_photoconsistency():
    """Road points 7-20 m ahead, seen from frame i and i+2: the converted poses make the images agree."""
    src = shared_data("kitti_odometry_excerpt") / "KITTI_sequence_1"
    conv = read("kitti-odometry", src, frames="10:33")
    frames = conv.log.frames

    def gray(f):
        return np.asarray(Image.open(conv.images[f.file_path]).convert("L"), float)

    xs, zs = np.meshgrid(np.linspace(-3, 3, 50), np.linspace(7, 20, 60))
    for i, j in ((0, 2), (10, 13), (20, 22)):
        a, b = frames[i], frames[j]
        ground_cam = np.stack([xs.ravel(), -1.65 * np.ones(xs.size), -zs.ravel()], 1)  # 1.65 m below, GL axes
        world = ground_cam @ a.c2w[:3, :3].T + a.c2w[:3, 3]
        va, oka = _bilinear(gray(a), a.project(world)[0])
        vb, okb = _bilinear(gray(b), b.project(world)[0])
        vstale, oks = _bilinear(gray(b), a.project(world)[0])
        good = np.corrcoef(va[oka & okb], vb[oka & okb])[0, 1]
        stale = np.corrcoef(va[oka & oks], vstale[oka & oks])[0, 1]
        assert good > 0.75 and good > stale + 0.1, (i, j, good, stale)


def test_kitti_odometry_real_convert_validates(tmp_path):
    src = shared_data("kitti_odometry_excerpt") / "KITTI_sequence_1"
    log = convert("kitti-odometry", src, tmp_path / "out", frames="0:5")
    assert len(log.frames) == 5 and validate_log(tmp_path / "out")[1] == []


# -- KITTI tracking -------------------------------------------------------------------------------------

def _kitti_tracking():
    split = shared_data("kitti_tracking_0001_2frames") / "tracking" / "training"
    return split, read("kitti-tracking", split / "0001")


def test_kitti_tracking_real_lidar_matches_devkit():
    split, conv = _kitti_tracking()
    log = conv.log
    assert len(log.frames) == 4 and len(log.lidar) == 2 and any("445 of 447" in w for w in conv.warnings)
    calib = read_calib(split / "calib" / "0001.txt")
    chain = calib["P2"] @ homogeneous(calib["R_rect"]) @ homogeneous(calib["Tr_velo_cam"])
    for k in (0, 1):
        f = log.cameras["image_02"][k]
        s = log.lidar[k]
        pts = read_velodyne(split / "velodyne" / "0001" / f"{k:06d}.bin")[:, :3].astype(float)
        uv, depth = f.project(pts @ s.s2w[:3, :3].T + s.s2w[:3, 3])
        q = (chain @ np.c_[pts, np.ones(len(pts))].T).T
        front = q[:, 2] > 1.0
        expected = q[front, :2] / q[front, 2:] + 0.5
        assert np.abs(uv[front] - expected).max() < 0.01  # devkit chain, +0.5 pixel-centre shift
        inside = front & (uv[:, 0] >= 0) & (uv[:, 0] < f.intrinsics.w) & (uv[:, 1] >= 0) & (uv[:, 1] < f.intrinsics.h)
        assert inside.sum() > 10000
        assert 3.0 < np.median(depth[inside]) < 40.0


def test_kitti_tracking_real_boxes_fall_on_their_2d_boxes():
    split, conv = _kitti_tracking()
    log = conv.log
    lines = [ln.split() for ln in (split / "label_02" / "0001.txt").read_text().splitlines()]
    lines = [w for w in lines if w[0] in ("0", "1") and w[2] != "DontCare"]
    assert len(lines) == 14
    for w in lines:
        f = log.cameras["image_02"][int(w[0])]
        pose = log.actor(w[1]).pose_at(f.timestamp)
        uv, depth = f.project(pose[None, :3, 3])
        x1, y1, x2, y2 = map(float, w[6:10])
        assert x1 <= uv[0, 0] <= x2 and y1 <= uv[0, 1] <= y2 and depth[0] > 0, w
    # lidar points fall inside the labelled boxes of nearby cars
    s = log.lidar[0]
    raw = read_velodyne(split / "velodyne" / "0001" / "000000.bin")[:, :3].astype(float)
    world = raw @ s.s2w[:3, :3].T + s.s2w[:3, 3]
    near = [a for a in log.actors if a.pose_at(0.0) is not None
            and np.linalg.norm(a.pose_at(0.0)[:3, 3] - s.s2w[:3, 3]) < 20]
    assert near
    for a in near:
        assert points_in_box(world, a.pose_at(0.0), a.size * 1.1) > 30, a.id


def test_kitti_tracking_real_convert_validates(tmp_path):
    split = shared_data("kitti_tracking_0001_2frames") / "tracking" / "training"
    log = convert("kitti-tracking", split / "0001", tmp_path / "out", cameras=["image_02"])
    assert len(log.frames) == 2 and validate_log(tmp_path / "out")[1] == []
    pts = np.load(tmp_path / "out" / log.lidar[0].file_path)
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and 0 <= pts[:, 3].min() and pts[:, 3].max() <= 1


# -- DGP ------------------------------------------------------------------------------------------------

def _dgp_scene(name: str) -> Path:
    return shared_data("dgp_test_scene") / name


@pytest.mark.parametrize("scene_name", ["scene_01", "scene_02"])
def test_dgp_real_3d_boxes_match_2d_boxes(scene_name):
    scene = _dgp_scene(scene_name)
    conv = read("dgp", scene)
    log = conv.log
    raw = json.loads(next(scene.glob("scene_*.json")).read_text())
    by_file = {d["datum"]["image"]["filename"]: d for d in raw["data"] if "image" in d["datum"]}
    ious, inside = [], []
    for f in log.frames:
        d = by_file[f"rgb/{f.camera}/{Path(f.file_path).name}"]
        boxes2d = json.loads((scene / d["datum"]["image"]["annotations"]["0"]).read_text())["annotations"]
        for b in boxes2d:
            actor = log.actor(str(b["instance_id"]))
            k = int(np.argmin(np.abs(actor.track.timestamps - f.timestamp)))  # the box of the same sample
            pose = actor.track.poses[k]
            uv, depth = f.project(box_corners(pose, actor.size))
            assert (depth > 0).all()
            hull = [*np.clip(uv.min(0), 0, [f.intrinsics.w, f.intrinsics.h]),
                    *np.clip(uv.max(0), 0, [f.intrinsics.w, f.intrinsics.h])]
            bb = b["box"]
            ref = [bb["x"], bb["y"], bb["x"] + bb["w"], bb["y"] + bb["h"]]
            ious.append(iou(hull, ref))
            c, _ = f.project(pose[None, :3, 3])
            inside.append(ref[0] <= c[0, 0] <= ref[2] and ref[1] <= c[0, 1] <= ref[3])
    assert len(ious) >= 30
    assert np.mean(ious) > 0.8, f"mean IoU {np.mean(ious):.3f}"  # measured: 0.944 (scene_01), 0.913 (scene_02)
    assert np.mean(inside) == 1.0


def test_dgp_real_lidar_in_cameras_and_boxes():
    scene = _dgp_scene("scene_02")
    conv = read("dgp", scene, frames="0:1")
    log = conv.log
    s = log.lidar[0]
    pts = conv.lidar[s.file_path]()
    assert pts.dtype == np.float32 and pts.shape[1] == 4 and 0 <= pts[:, 3].min() and pts[:, 3].max() <= 1
    world = pts[:, :3].astype(float) @ s.s2w[:3, :3].T + s.s2w[:3, 3]
    for f in log.frames:
        uv, depth = f.project(world)
        inside = (depth > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < f.intrinsics.w) & (uv[:, 1] >= 0) & \
                 (uv[:, 1] < f.intrinsics.h)
        assert inside.sum() > 1000, f.camera
        assert 3.0 < np.median(depth[inside]) < 60.0
        # the lidar sees the road below the cameras: points in the lower image half are nearer than the upper
        low = inside & (uv[:, 1] > 0.75 * f.intrinsics.h)
        assert np.median(depth[low]) < np.median(depth[inside]), f.camera
    # boxes with many annotated points contain lidar returns (the clouds are subsampled ~5x)
    ego = log.ego.poses[0]
    assert ego[:3, 3] == pytest.approx([0, 0, 0])
    checked = 0
    for a in log.actors:
        pose = a.track.poses[0]
        if np.linalg.norm(pose[:3, 3] - ego[:3, 3]) < 30:
            assert points_in_box(world, pose, a.size * 1.05) > 100, a.id  # measured 276 and 627
            checked += 1
    assert checked >= 2


def test_dgp_real_convert_validates(tmp_path):
    scene = _dgp_scene("scene_01")
    log = convert("dgp", scene, tmp_path / "out", cameras=["CAMERA_01"], frames="0:2")
    assert len(log.frames) == 2 and len(log.lidar) == 2 and len(log.actors) > 0
    assert validate_log(tmp_path / "out")[1] == []
    # scene_01's ego is stationary
    assert np.abs(log.ego.poses[:, :3, 3]).max() < 1e-3
