"""Hostile and broken drive logs and nerfstudio sources: each is refused with one line naming the file and field.

Cases: names from the log that become output path components (S1), path strings a reader links or copies
(S3), numbers out of float range or non-finite (R1), deeply nested JSON (R2), sizes beyond their bound (R3),
truncated images (R9) and symlinked image or lidar folders, which are followed (R13). CLI cases check exit
code 2, exactly one problem line naming the file and the field, and no traceback.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import edit_log
from simrecon.cli.main import main
from simrecon.data import LogError, load_log, parse_log, validate_log
from simrecon.data import lidar_io
from simrecon.data.readers import ReaderError, read

# -- helpers --------------------------------------------------------------------------------------------


@pytest.fixture
def log_dir(synth_small, tmp_path) -> Path:
    """A private copy of the small synthetic log (15 PNG frames, 5 lidar sweeps, actors, ego)."""
    out = tmp_path / "log"
    shutil.copytree(synth_small / "log", out)
    return out




def _problems(root: Path, **kwargs) -> list[str]:
    log, problems = validate_log(root, **kwargs)
    assert log is None, "a bad log must be refused whole"
    return [str(p) for p in problems]


def _only(problems: list[str], *needles: str) -> str:
    """The one problem; it must hold every needle."""
    assert len(problems) == 1, problems
    for n in needles:
        assert n in problems[0], (n, problems[0])
    return problems[0]


def _cli(capsys, *args: str) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return rc, err


def _one_line(err: str, *needles: str) -> str:
    """Exactly one stderr line names the problem (the others are the summary: INVALID / error: N problem(s))."""
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith(("INVALID:", "error: 1 problem(s) in"))]
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# -- S1: names that become output path components --------------------------------------------------------

BAD_NAMES = ["../../../X", "/etc", "a/b", "a\\b", ".", "..", "", "a\x00b", "cam\nera", "x" * 300]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_camera_name_that_is_not_a_plain_name_is_refused(log_dir, name):
    edit_log(log_dir, lambda d: d["frames"][0].__setitem__("camera", name))
    _only(_problems(log_dir), "transforms.json: frames[0].camera:")


@pytest.mark.parametrize("section, key", [("actors", "id"), ("lidar", "sensor")])
def test_actor_id_and_lidar_sensor_must_be_plain_names(log_dir, section, key):
    edit_log(log_dir, lambda d: d[section][0].__setitem__(key, "../../escape"))
    _only(_problems(log_dir), f"transforms.json: {section}[0].{key}:", "'../../escape'")


def test_cli_validate_and_info_refuse_a_camera_name_with_a_path(log_dir, capsys):
    edit_log(log_dir, lambda d: d["frames"][0].__setitem__("camera", "../../../X"))
    for cmd in ("validate", "info"):
        rc, err = _cli(capsys, cmd, log_dir)
        assert rc == 2
        _one_line(err, str(log_dir / "transforms.json"), "frames[0].camera", "'../../../X'")


def test_safe_name_accepts_plain_names_and_refuses_path_like_ones():
    from simrecon.data import safe_name

    assert safe_name("CAM_FRONT", "camera") == "CAM_FRONT"
    assert safe_name("car 0.5-a_b", "actor id") == "car 0.5-a_b"
    for bad in BAD_NAMES + [None, 3]:
        with pytest.raises(ValueError, match="camera name"):
            safe_name(bad, "camera name")


def test_safe_join_stays_inside_root(tmp_path):
    from simrecon.data import safe_join

    assert safe_join(tmp_path, "a", "b/c.png") == tmp_path / "a" / "b" / "c.png"
    for parts in (("..",), ("a", "../../x"), ("/etc/passwd",), ("a", "/b"), ("",), ("a\x00",), ("a\\..\\..\\x",)):
        with pytest.raises(ValueError):
            safe_join(tmp_path, *parts)


# -- S3: path strings a reader links or copies ------------------------------------------------------------

@pytest.mark.parametrize("key, value", [
    ("mask_path", "../../../../../../../../etc/passwd"),
    ("mask_path", "/etc/passwd"),
    ("file_path", "/etc/passwd"),
    ("file_path", "../../../../../../../../etc/passwd"),
    ("depth_file_path", "../../../../etc/passwd"),
])
def test_convert_nerfstudio_refuses_path_strings_that_leave_the_source(log_dir, tmp_path, capsys, key, value):
    edit_log(log_dir, lambda d: d["frames"][0].__setitem__(key, value))
    out = tmp_path / "out"
    rc, err = _cli(capsys, "convert", "nerfstudio", log_dir, out)
    assert rc == 2
    _one_line(err, str(log_dir / "transforms.json"), f"frames[0].{key}", repr(value))
    assert not out.exists() and not list(tmp_path.glob("out.tmp-*"))


def test_masks_are_validated_like_images(log_dir):
    (log_dir / "masks").mkdir()
    Image.new("L", (160, 96), 255).save(log_dir / "masks/ok.png")
    Image.new("L", (10, 10), 255).save(log_dir / "masks/small.png")
    (log_dir / "masks/junk.png").write_bytes(b"not an image")

    def edit(d):
        d["frames"][0]["mask_path"] = "masks/ok.png"
        d["frames"][1]["mask_path"] = "masks/small.png"
        d["frames"][2]["mask_path"] = "masks/junk.png"
    edit_log(log_dir, edit)
    problems = _problems(log_dir)
    assert len(problems) == 2, problems
    assert "frames[1].mask_path: mask 'masks/small.png' is 10x10, expected 160x96" in problems[0]
    assert "frames[2].mask_path: mask 'masks/junk.png' is not a readable image" in problems[1]


def test_truncated_mask_cannot_be_decoded(log_dir):
    (log_dir / "masks").mkdir()
    arr = np.random.default_rng(0).integers(0, 255, (96, 160), np.uint8)
    Image.fromarray(arr).save(log_dir / "masks/m.png")
    _truncate(log_dir / "masks/m.png", (log_dir / "masks/m.png").stat().st_size // 3)
    edit_log(log_dir, lambda d: d["frames"][0].__setitem__("mask_path", "masks/m.png"))
    _only(_problems(log_dir), f"{log_dir / 'masks/m.png'}: cannot decode:")


# -- R1: numbers out of float range and non-finite numbers -------------------------------------------------

def _set_raw(root: Path, key: str, literal: str) -> None:
    """Set top-level ``key`` to ``literal`` as raw JSON text (literals json.dumps would not write)."""
    path = root / "transforms.json"
    data = json.loads(path.read_text())
    data[key] = "@@RAW@@"
    path.write_text(json.dumps(data).replace('"@@RAW@@"', literal))


def test_integer_beyond_float_range_is_one_problem_naming_the_field(log_dir, capsys):
    _set_raw(log_dir, "fl_x", "1" + "0" * 400)
    _only(_problems(log_dir), "transforms.json: fl_x:", "finite")
    for cmd in ("validate", "info"):
        rc, err = _cli(capsys, cmd, log_dir)
        assert rc == 2
        _one_line(err, "transforms.json: fl_x:")


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_intrinsics_are_one_problem(log_dir, literal):
    _set_raw(log_dir, "fl_x", literal)
    _only(_problems(log_dir), "transforms.json: fl_x:", "finite")


@pytest.mark.parametrize("where, edit", [
    ("frames[0].timestamp", lambda d: d["frames"][0].__setitem__("timestamp", float("nan"))),
    ("frames[0].transform_matrix", lambda d: d["frames"][0]["transform_matrix"][0].__setitem__(3, float("inf"))),
    ("frames[0].transform_matrix", lambda d: d["frames"][0]["transform_matrix"][0].__setitem__(3, 10**400)),
    ("actors[0].size", lambda d: d["actors"][0].__setitem__("size", [10**400, 1, 1])),
    ("world_up", lambda d: d.__setitem__("world_up", [0, 0, 10**400])),
    ("k1", lambda d: d.__setitem__("k1", float("nan"))),
    ("lidar[0].timestamp", lambda d: d["lidar"][0].__setitem__("timestamp", float("-inf"))),
    ("ego[0].timestamp", lambda d: d["ego"][0].__setitem__("timestamp", 10**400)),
])
def test_bad_numbers_in_any_numeric_field_name_the_field(log_dir, where, edit):
    edit_log(log_dir, edit)
    _only(_problems(log_dir), f"transforms.json: {where}:")


def test_convert_nerfstudio_with_a_huge_integer_is_one_line(log_dir, tmp_path, capsys):
    _set_raw(log_dir, "fl_x", "9" * 401)
    rc, err = _cli(capsys, "convert", "nerfstudio", log_dir, tmp_path / "out")
    assert rc == 2
    _one_line(err, "transforms.json", "fl_x")


# -- R2: deeply nested JSON --------------------------------------------------------------------------------

def test_deeply_nested_json_is_one_problem_naming_the_file(log_dir, capsys):
    (log_dir / "transforms.json").write_text("[" * 100000)
    _only(_problems(log_dir), f"{log_dir / 'transforms.json'}: ", "nested")
    for cmd in ("validate", "info"):
        rc, err = _cli(capsys, cmd, log_dir)
        assert rc == 2
        _one_line(err, str(log_dir / "transforms.json"), "nested")


def test_nesting_below_the_parsers_limit_is_refused_too(log_dir, tmp_path, capsys):
    """500 levels parse, but break every recursive consumer (deepcopy in the reader, json.dumps on write)."""
    edit_log(log_dir, lambda d: d.__setitem__("notes", json.loads("[" * 500 + "]" * 500)))
    _only(_problems(log_dir), "nested")
    rc, err = _cli(capsys, "convert", "nerfstudio", log_dir, tmp_path / "out")
    assert rc == 2
    _one_line(err, str(log_dir / "transforms.json"), "nested")


# -- R3: sizes read from files are bounded -----------------------------------------------------------------

def test_huge_image_size_is_refused_with_the_bound(log_dir):
    edit_log(log_dir, lambda d: d.update(w=10**9))
    _only(_problems(log_dir), "transforms.json: w:", "16384")
    edit_log(log_dir, lambda d: d.update(w=10**9, h=10**9))
    problems = _problems(log_dir)
    assert [p.split(": ")[1] for p in problems] == ["w", "h"], problems


def test_huge_image_size_is_refused_without_looking_at_files(log_dir):
    data = json.loads((log_dir / "transforms.json").read_text())
    data["h"] = 10**9
    log, problems, _ = parse_log(log_dir, data, check_files=False)
    assert log is None and len(problems) == 1 and "at most 16384" in str(problems[0])


def _npy_header(shape: tuple[int, ...]) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buf.getvalue()


MAX_POINTS = getattr(lidar_io, "MAX_POINTS", 10_000_000)


def test_lidar_npy_claiming_too_many_points_is_refused_from_its_header(log_dir):
    (log_dir / "lidar/000000.npy").write_bytes(_npy_header((MAX_POINTS + 1, 4)))
    _only(_problems(log_dir), "lidar[0].file_path", f"at most {MAX_POINTS} points")
    with pytest.raises(ValueError, match=f"at most {MAX_POINTS} points"):
        lidar_io.read_points(log_dir / "lidar/000000.npy")


def test_lidar_ply_claiming_too_many_points_is_refused_from_its_header(log_dir):
    header = b"ply\nformat binary_little_endian 1.0\nelement vertex 1000000000000\nproperty float x\n" \
             b"property float y\nproperty float z\nend_header\n"
    (log_dir / "lidar/a.ply").write_bytes(header + struct.pack("<3f", 1, 2, 3))
    edit_log(log_dir, lambda d: d["lidar"][0].__setitem__("file_path", "lidar/a.ply"))
    _only(_problems(log_dir), "lidar[0].file_path", f"at most {MAX_POINTS} points")


# -- R9: truncated images ----------------------------------------------------------------------------------

def test_truncated_png_is_refused_by_validate_but_not_by_quick(log_dir, capsys):
    img = log_dir / "images/front/000003.png"
    _truncate(img, img.stat().st_size // 3)
    _only(_problems(log_dir), f"{img}: cannot decode:")
    assert validate_log(log_dir, decode=False)[1] == []
    rc, err = _cli(capsys, "validate", log_dir)
    assert rc == 2
    _one_line(err, f"{img}: cannot decode:")
    rc, _ = _cli(capsys, "validate", "--quick", log_dir)
    assert rc == 0


def test_truncated_jpeg_is_refused(log_dir):
    noise = np.random.default_rng(1).integers(0, 255, (96, 160, 3), np.uint8)
    big = np.kron(noise, np.ones((4, 4, 1), np.uint8))  # 640x384 noise: well over 20 KB as JPEG
    Image.fromarray(big).save(log_dir / "big.jpg", quality=95)
    assert (log_dir / "big.jpg").stat().st_size > 40_000
    _truncate(log_dir / "big.jpg", 20_000)
    edit_log(log_dir, lambda d: d["frames"][0].update(file_path="big.jpg", w=640, h=384))
    _only(_problems(log_dir), f"{log_dir / 'big.jpg'}: cannot decode:")


def test_convert_refuses_a_truncated_image_naming_the_source_file(log_dir, tmp_path, capsys):
    img = log_dir / "images/front/000003.png"
    _truncate(img, img.stat().st_size // 3)
    out = tmp_path / "out"
    rc, err = _cli(capsys, "convert", "nerfstudio", log_dir, out)
    assert rc == 2
    _one_line(err, str(img), "cannot decode")
    assert not out.exists()


def test_training_image_loader_names_the_file(log_dir):
    from simrecon.train.data import load_image

    log = load_log(log_dir)
    frame = log.frames[0]
    path = log_dir / frame.file_path
    _truncate(path, path.stat().st_size // 3)
    with pytest.raises(ValueError, match=str(path)):
        load_image(path, frame)


# -- R13: symlinked folders are followed, '..' strings are not ---------------------------------------------

def test_symlinked_image_and_lidar_folders_are_followed(log_dir, tmp_path):
    for sub in ("images", "lidar"):
        shutil.move(str(log_dir / sub), str(tmp_path / f"elsewhere_{sub}"))
        (log_dir / sub).symlink_to(tmp_path / f"elsewhere_{sub}")
    log, problems = validate_log(log_dir)
    assert problems == [] and len(log.frames) == 15 and len(log.lidar) == 5


def test_dotdot_path_strings_are_refused_even_when_they_land_inside(log_dir):
    rel = f"../{log_dir.name}/images/front/000000.png"
    edit_log(log_dir, lambda d: d["frames"][0].__setitem__("file_path", rel))
    _only(_problems(log_dir), "frames[0].file_path", "'..'")


def test_reader_read_refuses_a_dotdot_mask_that_exists(log_dir):
    Image.new("L", (160, 96), 255).save(log_dir.parent / "outside.png")
    edit_log(log_dir, lambda d: d["frames"][0].__setitem__("mask_path", "../outside.png"))
    with pytest.raises(ReaderError, match=r"frames\[0\]\.mask_path: .*'\.\.'"):
        read("nerfstudio", log_dir)


def test_load_log_raises_log_error_for_bad_names(log_dir):
    edit_log(log_dir, lambda d: d["actors"][0].__setitem__("id", "a/b"))
    with pytest.raises(LogError):
        load_log(log_dir)
