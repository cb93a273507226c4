"""Export formats (simrecon, KITTI, COCO, nerfstudio), atomic writes and resume after an interruption."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from simrecon.compose import load_scenario
from simrecon.data import validate_log
from simrecon.export import export, verify
from simrecon.export import rle
from simrecon.synth import GroundTruthScene

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(synth_small):
    return GroundTruthScene.from_log(synth_small / "log")


@pytest.fixture(scope="module")
def scenario(synth_small, tmp_path_factory):
    """Front and (half-size) front_left cameras, 2 timestamps, car_0 removed and an inserted car: 4 frames."""
    doc = {"scene": str(synth_small / "log"), "cameras": ["front", {"name": "front_left", "scale": 0.5}],
           "time": {"times": [0.0, 0.2]},
           "visibility": "box",
           "actors": [{"id": "car_0", "remove": True},
                      {"id": "car_new", "source": "car_1", "trajectory": [{"t": 0.0, "position": [14.0, -1.75]},
                                                                         {"t": 0.4, "position": [15.0, -1.75]}]}]}
    p = tmp_path_factory.mktemp("export") / "scenario.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def exports(scenario, scene, tmp_path_factory):
    """One uninterrupted export per format (the references)."""
    root = tmp_path_factory.mktemp("exports")
    for fmt in ("simrecon", "kitti", "coco", "nerfstudio"):
        res = export(scenario, fmt, root / fmt, scene=scene)
        assert res.frames == 4 and res.rendered == 4 and res.reused == 0
    return root


class Counting:
    """A scene wrapper counting full-frame renders (calls with every placed actor)."""

    def __init__(self, scene):
        self.scene, self.frames, self.calls = scene, 0, 0

    @property
    def log(self):
        return self.scene.log

    def render(self, c2w, intrinsics, time, placements, outputs=("rgb", "depth", "instance")):
        self.calls += 1
        if "rgb" in outputs:
            self.frames += 1
        return self.scene.render(c2w, intrinsics, time, placements, outputs)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_simrecon_layout_and_manifest(tmp_path, exports):
    out = tmp_path / "out"
    shutil.copytree(exports / "simrecon", out)
    assert verify(out) == []
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["files"]) == {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {"manifest.json"}
    assert not (out / ".simrecon-export").exists()
    rec = json.loads((out / "frames/front/000001.json").read_text())
    depth = np.load(out / rec["files"]["depth"])
    inst = np.asarray(Image.open(out / rec["files"]["instance"]))
    sem = np.asarray(Image.open(out / rec["files"]["semantic"]))
    assert depth.dtype == np.float32 and inst.dtype == np.uint16 and sem.dtype == np.uint8
    assert np.isinf(depth).any() and np.isfinite(depth).any()
    comp = json.loads((out / "composition.json").read_text())
    ids = {a["id"]: a["instance_id"] for a in comp["actors"]}
    assert "car_0" not in ids and "car_new" in ids and ids["car_new"] == len(ids)
    for o in rec["objects"]:
        assert (inst == o["instance_id"]).sum() == o["visible_pixels"]
    assert ((sem > 0) == (inst > 0)).all()
    (out / rec["files"]["rgb"]).write_bytes(b"corrupt")
    assert verify(out) == [rec["files"]["rgb"]]


def test_existing_output_is_refused(tmp_path, scenario, scene, exports):
    with pytest.raises(FileExistsError, match="already exists"):
        export(scenario, "simrecon", exports / "simrecon", scene=scene)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not an export folder"):
        export(scenario, "coco", tmp_path / "other", force=True, scene=scene)
    with pytest.raises(ValueError, match="unknown export format 'yolo'"):
        export(scenario, "yolo", tmp_path / "y", scene=scene)


def test_nerfstudio_validates(exports):
    log, problems = validate_log(exports / "nerfstudio")
    assert problems == []
    assert len(log.frames) == 4 and set(log.cameras) == {"front", "front_left"}
    assert {a.id for a in log.actors} >= {"car_new", "car_1"} and "car_0" not in {a.id for a in log.actors}
    assert len(log.ego) == 2
    raw = json.loads((exports / "nerfstudio" / "transforms.json").read_text())
    fr = raw["frames"][0]
    mm = np.asarray(Image.open(exports / "nerfstudio" / fr["depth_file_path"]))
    assert mm.dtype == np.uint16 and raw["depth_unit_scale_factor"] == 0.001
    # the same frame in our layout: depth in metres
    rec = json.loads((exports / "simrecon/frames/front/000000.json").read_text())
    depth = np.load(exports / "simrecon" / rec["files"]["depth"])
    ok = np.isfinite(depth) & (depth < 65)
    assert np.abs(mm[ok] / 1000.0 - depth[ok]).max() <= 0.0005 + 1e-6
    assert (mm[~np.isfinite(depth)] == 0).all()
    assert np.allclose(fr["transform_matrix"], rec["camera_to_world"])


def test_coco_rle_decodes_to_the_masks(exports):
    doc = json.loads((exports / "coco" / "annotations.json").read_text())
    assert len(doc["images"]) == 4 and doc["annotations"]
    assert {c["name"] for c in doc["categories"]} >= {"car", "pedestrian"}
    images = {im["id"]: im for im in doc["images"]}
    for ann in doc["annotations"]:
        im = images[ann["image_id"]]
        assert (exports / "coco" / im["file_name"]).is_file()
        rec = json.loads((exports / "simrecon/frames" / f"{im['camera']}/{im['frame_index']:06d}.json").read_text())
        inst = np.asarray(Image.open(exports / "simrecon" / rec["files"]["instance"]))
        mask = rle.decode(ann["segmentation"])
        assert np.array_equal(mask, inst == ann["track_id"])
        assert rle.area(ann["segmentation"]) == ann["area"] == mask.sum()
        assert rle.bbox(ann["segmentation"]) == ann["bbox"]
        assert isinstance(ann["segmentation"]["counts"], str)


def test_rle_matches_pycocotools_vectors():
    # reference strings produced by pycocotools 2.0.11 mask.encode
    m = np.zeros((7, 9), bool)
    m[2:5, 3:8] = True
    m[0, 0] = m[6, 8] = True
    assert rle.encode(m) == {"size": [7, 9], "counts": "01f02^O00000004N"}
    r = np.random.default_rng(1).random((40, 50)) < 0.5
    enc = rle.encode(r)
    assert enc["counts"].startswith("62100O20N031MO01030M221MM20O41NNO0O30O0N0022N00O2132KL72LN10")
    assert rle.area(enc) == 1002 and np.array_equal(rle.decode(enc), r)
    big = np.zeros((300, 400), bool)
    big[10:290, 20:380] = True
    enc = rle.encode(big)
    assert enc["counts"] == "jk5h8d0" + "0" * (len(enc["counts"]) - 10) + "Vk5"
    assert np.array_equal(rle.decode({"size": [300, 400], "counts": rle.mask_to_counts(big)}), big)
    empty = np.zeros((3, 4), bool)
    assert np.array_equal(rle.decode(rle.encode(empty)), empty) and rle.area(rle.encode(empty)) == 0
    full = np.ones((3, 4), bool)
    assert rle.mask_to_counts(full) == [0, 12] and np.array_equal(rle.decode(rle.encode(full)), full)


def _kitti_corners(h, w, length, x, y, z, ry):
    """KITTI box corners [8, 3] in the camera frame (location = bottom centre, y down)."""
    xs = np.array([1, 1, -1, -1, 1, 1, -1, -1]) * length / 2
    ys = np.array([0, 0, 0, 0, -1, -1, -1, -1]) * h
    zs = np.array([1, -1, -1, 1, 1, -1, -1, 1]) * w / 2
    rot = np.array([[math.cos(ry), 0, math.sin(ry)], [0, 1, 0], [-math.sin(ry), 0, math.cos(ry)]])
    return (rot @ np.stack([xs, ys, zs])).T + [x, y, z]


def test_kitti_labels_parse_and_project(exports):
    root = exports / "kitti"
    frames = json.loads((root / "frames.json").read_text())["frames"]
    assert len(frames) == 4
    checked = 0
    for fr in frames:
        n = fr["index"]
        img = np.asarray(Image.open(root / "image_2" / f"{n}.png"))
        calib = {}
        for line in (root / "calib" / f"{n}.txt").read_text().splitlines():
            key, vals = line.split(":", 1)
            calib[key] = np.array([float(v) for v in vals.split()])
        assert set(calib) == {"P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo"}
        p2 = calib["P2"].reshape(3, 4)
        for line in (root / "label_2" / f"{n}.txt").read_text().splitlines():
            f = line.split()
            assert len(f) == 15
            kind, trunc, occ, alpha = f[0], float(f[1]), int(f[2]), float(f[3])
            box = np.array([float(v) for v in f[4:8]])
            h, w, length, x, y, z, ry = (float(v) for v in f[8:15])
            assert kind in {"Car", "Pedestrian", "Truck", "Cyclist", "Misc"}
            assert 0 <= trunc <= 1 and occ in (0, 1, 2, 3) and -math.pi <= alpha <= math.pi
            assert 0 <= box[0] <= box[2] <= img.shape[1] - 1 and 0 <= box[1] <= box[3] <= img.shape[0] - 1
            if z < 1.0 or trunc > 0 or occ != 0 or (box[2] - box[0]) < 6:
                continue
            uvw = p2 @ np.c_[_kitti_corners(h, w, length, x, y, z, ry), np.ones(8)].T
            uv = (uvw[:2] / uvw[2]).T
            proj = np.array([uv[:, 0].min(), uv[:, 1].min(), uv[:, 0].max(), uv[:, 1].max()])
            # label box = centres of the extreme mask pixels (OpenCV coordinates): within a pixel of the projection
            assert np.all(proj[:2] <= box[:2] + 1.0) and np.all(proj[2:] >= box[2:] - 1.0), (line, proj)
            assert np.all(np.abs(proj - box) < 0.25 * max(box[2] - box[0], box[3] - box[1]) + 2), (line, proj)
            checked += 1
    assert checked >= 3


def test_resume_after_an_exception(tmp_path, scenario, scene, exports):
    ref = exports / "coco"

    def stop_after_two(done, total, label):
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export(scenario, "coco", out, progress=stop_after_two, scene=scene)
    assert (out / ".simrecon-export").is_dir() and not (out / "manifest.json").exists()
    counting = Counting(scene)
    res = export(load_scenario(scenario, scene=counting), "coco", out)
    assert res.rendered == 2 and res.reused == 2 and counting.frames == 2
    assert _tree(out) == _tree(ref)


def test_resume_after_a_kill(tmp_path, scenario, exports):
    """SIGKILL in the middle of writing frame 3's files (a temporary file is on disk), then resume."""
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal
        from simrecon.export import export
        real, calls = os.replace, [0]
        def replace(src, dst):
            calls[0] += 1
            if calls[0] == 1 + 2 * 4 + 1:  # state.json, 2 frames x (3 files + record), then frame 3's 1st file
                os.kill(os.getpid(), signal.SIGKILL)
            return real(src, dst)
        os.replace = replace
        export({str(scenario)!r}, "kitti", {str(out)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert list(out.rglob(".*.tmp")), "the kill should leave a temporary file behind"
    done = sorted(p.name for p in (out / ".simrecon-export" / "frames").iterdir())
    assert len(done) == 2
    counting = Counting(GroundTruthScene.from_log(load_scenario(scenario).scene.log.root))
    res = export(load_scenario(scenario, scene=counting), "kitti", out)
    assert res.reused == 2 and res.rendered == 2 and counting.frames == 2
    assert not list(out.rglob(".*.tmp")) and not (out / ".simrecon-export").exists()
    assert _tree(out) == _tree(exports / "kitti")


def test_interrupted_export_of_another_scenario_is_not_resumed(tmp_path, scenario, scene):
    out = tmp_path / "out"

    def stop(done, total, label):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(scenario, "simrecon", out, progress=stop, scene=scene)
    with pytest.raises(FileExistsError, match="interrupted export of another scenario or format"):
        export(scenario, "kitti", out, scene=scene)
    res = export(scenario, "kitti", out, force=True, scene=scene)
    assert res.rendered == 4 and not (out / "rgb").exists()
