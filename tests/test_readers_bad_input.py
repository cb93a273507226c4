"""Bad input through ``simrecon convert``: one line naming the file and line/field, exit 2, no output left.

Issue 3: "A missing calibration file, a truncated .bin, a label line with the wrong field count, a
quaternion of zero norm: each gives one clear line naming file and line/field, exit 2, and no partial
output folder." Every case runs the CLI entry point and checks that neither OUT nor OUT.tmp-* exists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixtures_readers import (
    write_argoverse2,
    write_dgp,
    write_kitti_odometry,
    write_kitti_tracking,
    write_nuscenes,
    write_pandaset,
    write_waymo,
)

from simrecon.cli.main import main


def _truncate(path: Path, drop: int) -> None:
    path.write_bytes(path.read_bytes()[:-drop])


def _json_edit(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _zero_quat_dgp(data: dict) -> None:
    data["data"][1]["datum"]["image"]["pose"]["rotation"] = {"qw": 0.0, "qx": 0.0, "qy": 0.0, "qz": 0.0}


# Each case: build a broken source under tmp; returns (format, SRC, [substrings the error line must hold]).

def case_odometry_missing_calib(tmp: Path):
    src = write_kitti_odometry(tmp / "seq", n=2)
    (src / "calib.txt").unlink()
    return "kitti-odometry", src, [f"{src / 'calib.txt'}: calibration file does not exist"]


def case_odometry_truncated_bin(tmp: Path):
    src = write_kitti_odometry(tmp / "seq", n=2)
    _truncate(src / "velodyne" / "000001.bin", 3)
    return "kitti-odometry", src, [f"{src / 'velodyne' / '000001.bin'}: points:", "29 bytes", "truncated"]


def case_odometry_bin_short_by_a_byte(tmp: Path):  # 4 whole floats + 1 byte: np.fromfile alone would not notice
    src = write_kitti_odometry(tmp / "seq", n=2)
    (src / "velodyne" / "000000.bin").write_bytes((src / "velodyne" / "000000.bin").read_bytes()[:17])
    return "kitti-odometry", src, [f"{src / 'velodyne' / '000000.bin'}: points:", "17 bytes"]


def case_odometry_pose_line_not_a_rotation(tmp: Path):
    src = write_kitti_odometry(tmp / "seq", n=3)
    lines = (src / "poses.txt").read_text().splitlines()
    lines[2] = " ".join(["0"] * 12)
    (src / "poses.txt").write_text("\n".join(lines) + "\n")
    return "kitti-odometry", src, [f"{src / 'poses.txt'}: line 3: expected a rotation"]


def case_odometry_pose_line_field_count(tmp: Path):
    src = write_kitti_odometry(tmp / "seq", n=3)
    lines = (src / "poses.txt").read_text().splitlines()
    lines[1] = " ".join(lines[1].split()[:11])
    (src / "poses.txt").write_text("\n".join(lines) + "\n")
    return "kitti-odometry", src, [f"{src / 'poses.txt'}: line 2: expected 12 numbers, got 11"]


def case_tracking_missing_calib(tmp: Path):
    split = write_kitti_tracking(tmp / "training", seq="0007", with_images=(0, 1, 2))
    (split / "calib" / "0007.txt").unlink()
    return "kitti-tracking", split, [f"{split / 'calib' / '0007.txt'}: calibration file does not exist"]


def case_tracking_missing_calib_entry(tmp: Path):
    split = write_kitti_tracking(tmp / "training", seq="0007", with_images=(0, 1, 2))
    calib = split / "calib" / "0007.txt"
    calib.write_text("\n".join(ln for ln in calib.read_text().splitlines() if not ln.startswith("Tr_velo_cam")))
    return "kitti-tracking", split, [f"{calib}: Tr_velo_cam: missing calibration entry"]


def case_tracking_truncated_bin(tmp: Path):
    split = write_kitti_tracking(tmp / "training", seq="0007", with_images=(0, 1, 2))
    _truncate(split / "velodyne" / "0007" / "000002.bin", 5)
    return "kitti-tracking", split, [f"{split / 'velodyne' / '0007' / '000002.bin'}: points:", "27 bytes"]


def case_tracking_label_field_count(tmp: Path):
    split = write_kitti_tracking(tmp / "training", seq="0007", with_images=(0, 1, 2))
    labels = split / "label_02" / "0007.txt"
    lines = labels.read_text().splitlines()
    lines[4] = " ".join(lines[4].split()[:-2])  # 15 fields
    labels.write_text("\n".join(lines) + "\n")
    return "kitti-tracking", split, [f"{labels}: line 5: expected 17 fields", "got 15"]


def case_tracking_oxts_field_count(tmp: Path):
    split = write_kitti_tracking(tmp / "training", seq="0007", with_images=(0, 1, 2))
    oxts = split / "oxts" / "0007.txt"
    lines = oxts.read_text().splitlines()
    lines[1] += " 1.0"
    oxts.write_text("\n".join(lines) + "\n")
    return "kitti-tracking", split, [f"{oxts}: line 2: expected 30 numbers, got 31"]


def case_dgp_missing_calibration(tmp: Path):
    scene = write_dgp(tmp / "scene", n=2)
    cfile = next((scene / "calibration").glob("*.json"))
    cfile.unlink()
    return "dgp", scene, [f"{cfile}: file does not exist"]


def case_dgp_zero_quaternion(tmp: Path):
    scene = write_dgp(tmp / "scene", n=2)
    sfile = next(scene.glob("scene_*.json"))
    _json_edit(sfile, _zero_quat_dgp)
    return "dgp", scene, [f"{sfile}: data[1].datum.image.pose.rotation: expected a non-zero (w, x, y, z) quaternion"]


def case_dgp_zero_quaternion_extrinsic(tmp: Path):
    scene = write_dgp(tmp / "scene", n=2)
    cfile = next((scene / "calibration").glob("*.json"))

    def edit(data):
        data["extrinsics"][0]["rotation"] = {"qw": 0, "qx": 0, "qy": 0, "qz": 0}

    _json_edit(cfile, edit)
    return "dgp", scene, [f"{cfile}: extrinsics[0].rotation: expected a non-zero"]


def case_dgp_zero_quaternion_box(tmp: Path):
    scene = write_dgp(tmp / "scene", n=2)
    bfile = sorted((scene / "bounding_box_3d" / "LIDAR").glob("*.json"))[1]

    def edit(data):
        data["annotations"][0]["box"]["pose"]["rotation"] = {"qw": 0, "qx": 0, "qy": 0, "qz": 0}

    _json_edit(bfile, edit)
    return "dgp", scene, [f"{bfile}: annotations[0].box.pose.rotation: expected a non-zero"]


def case_dgp_truncated_npz(tmp: Path):
    scene = write_dgp(tmp / "scene", n=2)
    npz = sorted((scene / "point_cloud" / "LIDAR").glob("*.npz"))[1]  # the second sweep
    _truncate(npz, 30)
    return "dgp", scene, [f"{npz}: not a readable .npz"]


def case_nuscenes_missing_calibration(tmp: Path):
    root = write_nuscenes(tmp / "nuscenes", n=2)
    (root / "v1.0-mini" / "calibrated_sensor.json").unlink()
    return "nuscenes", root, [f"{root / 'v1.0-mini' / 'calibrated_sensor.json'}: file does not exist"]


def case_nuscenes_zero_quaternion(tmp: Path):
    root = write_nuscenes(tmp / "nuscenes", n=2)
    table = root / "v1.0-mini" / "ego_pose.json"

    def edit(data):
        data[1]["rotation"] = [0.0, 0.0, 0.0, 0.0]

    _json_edit(table, edit)
    return "nuscenes", root, [f"{table}: token ep_lid0_0.rotation: expected a non-zero"]


def case_nuscenes_truncated_bin(tmp: Path):
    root = write_nuscenes(tmp / "nuscenes", n=2)
    pcd = min((root / "samples" / "LIDAR_TOP").glob("*.pcd.bin"))
    _truncate(pcd, 4)
    return "nuscenes", root, [f"{pcd}: points:", "36 bytes"]


def case_odometry_truncated_png(tmp: Path):  # the header reads; the pixel data stops a third of the way
    src = write_kitti_odometry(tmp / "seq", n=2)
    png = src / "image_2" / "000001.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 3])
    return "kitti-odometry", src, [f"{png}: cannot decode:"]


def case_nuscenes_truncated_jpeg(tmp: Path):
    root = write_nuscenes(tmp / "nuscenes", n=2)
    jpg = min((root / "samples" / "CAM_FRONT").glob("*.jpg"))
    jpg.write_bytes(jpg.read_bytes()[: jpg.stat().st_size // 3])
    return "nuscenes", root, [f"{jpg}: cannot decode:"]


def case_nuscenes_filename_climbs(tmp: Path):  # a record naming a file outside the dataroot is not linked
    root = write_nuscenes(tmp / "nuscenes", n=2)
    table = root / "v1.0-mini" / "sample_data.json"
    rows = json.loads(table.read_text())
    cam = next(i for i, r in enumerate(rows) if "CAM_FRONT" in r["filename"])
    rows[cam]["filename"] = "../../../../../../etc/passwd"
    table.write_text(json.dumps(rows))
    return "nuscenes", root, [f"{table}: token {rows[cam]['token']}.filename:", "'..'"]


def case_dgp_camera_name_climbs(tmp: Path):  # the camera name becomes the output folder images/<name>/
    scene = write_dgp(tmp / "scene", n=2)
    sfile = next(scene.glob("scene_*.json"))
    _json_edit(sfile, lambda d: d["data"][1]["id"].__setitem__("name", "../../ESCAPED"))
    return "dgp", scene, [f"{sfile}: data[1].id.name: sensor name '../../ESCAPED'"]


def case_dgp_image_filename_absolute(tmp: Path):
    scene = write_dgp(tmp / "scene", n=2)
    sfile = next(scene.glob("scene_*.json"))
    _json_edit(sfile, lambda d: d["data"][1]["datum"]["image"].__setitem__("filename", "/etc/passwd"))
    return "dgp", scene, [f"{sfile}: data[1].datum.image.filename:", "absolute"]


def case_waymo_truncated_record(tmp: Path):
    seg = write_waymo(tmp / "seg" / "segment-x.tfrecord", n=2)
    _truncate(seg, 10)
    return "waymo", seg.parent, [f"{seg}: record 1: truncated record"]


def case_pandaset_missing_intrinsics(tmp: Path):
    pytest.importorskip("pandas")
    seq = write_pandaset(tmp / "001", n=2)
    (seq / "camera" / "left_camera" / "intrinsics.json").unlink()
    return "pandaset", seq, [f"{seq / 'camera' / 'left_camera' / 'intrinsics.json'}: file does not exist"]


def case_pandaset_zero_quaternion(tmp: Path):
    pytest.importorskip("pandas")
    seq = write_pandaset(tmp / "001", n=2)
    poses = seq / "lidar" / "poses.json"

    def edit(data):
        data[1]["heading"] = {"w": 0.0, "x": 0.0, "y": 0.0, "z": 0.0}

    _json_edit(poses, edit)
    return "pandaset", seq, [f"{poses}: [1].heading: expected a non-zero"]


def case_pandaset_truncated_pickle(tmp: Path):
    pytest.importorskip("pandas")
    seq = write_pandaset(tmp / "001", n=2)
    sweep = seq / "lidar" / "01.pkl.gz"
    _truncate(sweep, 20)
    return "pandaset", seq, [f"{sweep}: not a readable pickled DataFrame"]


def case_argoverse2_missing_calibration(tmp: Path):
    pytest.importorskip("pyarrow")
    log = write_argoverse2(tmp / "val" / "log-1", n=2)
    (log / "calibration" / "egovehicle_SE3_sensor.feather").unlink()
    return "argoverse2", log, [f"{log / 'calibration' / 'egovehicle_SE3_sensor.feather'}: file does not exist"]


def case_argoverse2_zero_quaternion(tmp: Path):
    pa = pytest.importorskip("pyarrow")
    from pyarrow import feather

    log = write_argoverse2(tmp / "val" / "log-1", n=2)
    path = log / "city_SE3_egovehicle.feather"
    table = feather.read_table(path)
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    for k in ("qw", "qx", "qy", "qz"):
        cols[k][2] = 0.0
    feather.write_feather(pa.table(cols), str(path))
    return "argoverse2", log, [f"{path}: row 2.qw: expected a non-zero"]


CASES = [v for k, v in sorted(globals().items()) if k.startswith("case_")]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__[5:] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_no_output(tmp_path, capsys, case):
    fmt, src, expected = case(tmp_path / "src")
    out = tmp_path / "out" / "log"
    capsys.readouterr()
    code = main(["convert", fmt, str(src), str(out)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not out.exists()
    leftovers = list(out.parent.glob("log.tmp-*")) + list(out.parent.glob("log.old-*")) if out.parent.exists() else []
    assert leftovers == []


def test_bad_input_does_not_touch_an_existing_output_with_force(tmp_path, capsys):
    """--force on a bad source: the old OUT stays as it was (the new log is built aside, then swapped in)."""
    good = write_kitti_odometry(tmp_path / "good", n=2)
    out = tmp_path / "out"
    assert main(["convert", "kitti-odometry", str(good), str(out)]) == 0
    before = (out / "transforms.json").read_text()
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    _truncate(bad / "velodyne" / "000001.bin", 3)
    capsys.readouterr()
    assert main(["convert", "kitti-odometry", str(bad), str(out), "--force"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert (out / "transforms.json").read_text() == before
    assert not list(tmp_path.glob("out.tmp-*")) and not list(tmp_path.glob("out.old-*"))
