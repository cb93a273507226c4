"""Outputs stay where the user pointed them: names from files never escape ``-o``, ``--force`` never
deletes a folder simrecon did not write, sizes from files are bounded before anything is allocated, and a
resumed export never reuses a frame whose bytes changed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from simrecon.cli.main import main
from simrecon.compose import ScenarioError, load_scenario
from simrecon.data import safe_join, safe_name
from simrecon.data.outdir import MARKER
from simrecon.export import export
from simrecon.synth import GroundTruthScene
from simrecon.train import preset, reconstruct


def _escaped(root: Path) -> list[Path]:
    return [p for p in root.rglob("*ESCAPED*")]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def scene(synth_small):
    return GroundTruthScene.from_log(synth_small / "log")


@pytest.fixture()
def base(tmp_path, synth_small) -> dict:
    return {"scene": str(synth_small / "log"), "cameras": ["front"], "time": {"times": [0.0]}, "visibility": "box"}


# ------------------------------------------------------------------------------------------------- S1, S2
def test_safe_name_and_join_refuse_escapes(tmp_path):
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", "/etc", "x\n"):
        with pytest.raises(ValueError, match="^camera: "):
            safe_name(bad, "camera")
    assert safe_name("front_left", "camera") == "front_left"
    for bad in ("../x", "a/../../b", "/etc/passwd", "C:\\x", ""):
        with pytest.raises(ValueError):
            safe_join(tmp_path, bad)
    assert safe_join(tmp_path, "rgb/front/000001.png") == tmp_path / "rgb/front/000001.png"


@pytest.mark.parametrize("name", ["../../../ESCAPED_CAM", "/tmp/ESCAPED_ABS", "sub/ESCAPED"])
@pytest.mark.parametrize("command", ["compose", "export-coco", "export-nerfstudio"])
def test_scenario_camera_name_cannot_escape(tmp_path, base, capsys, name, command):
    intr = {"w": 32, "h": 24, "hfov_deg": 90}
    doc = {**base, "cameras": [{"name": name, "intrinsics": intr, "mount": {"position": [0, 0, 1.6]}}]}
    sc = tmp_path / "work" / "s.yaml"
    sc.parent.mkdir()
    sc.write_text(yaml.safe_dump(doc))
    out = tmp_path / "work" / "out"
    argv = ["compose", str(sc), "-o", str(out)] if command == "compose" else \
        ["export", str(sc), "--format", command.split("-")[1], "-o", str(out)]
    assert main(argv) == 2
    line = _one_error_line(capsys)
    assert f"{sc}: cameras[0].name:" in line, line
    assert not _escaped(tmp_path) and not Path("/tmp/ESCAPED_ABS").exists() and not out.exists()


def test_suite_case_name_cannot_escape(tmp_path, base, capsys):
    root = tmp_path / "a" / "b"
    root.mkdir(parents=True)
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    (root / "suite.yaml").write_text(yaml.safe_dump({"scenarios": [{"scenario": "base.yaml",
                                                                    "name": "../../ESCAPED_SUITE"}]}))
    assert main(["regress", str(root / "suite.yaml"), "--update-golden"]) == 2
    assert "scenarios[0].name:" in _one_error_line(capsys)
    assert not _escaped(tmp_path)


# ------------------------------------------------------------------------------------------------- R3, R7
@pytest.mark.parametrize("edit,field", [
    ({"time": {"rate": 1.0e12}}, "time.rate"),
    ({"cameras": [{"name": "front", "scale": 8}]}, None),  # 480x270 x 8: fine (about 8 MP)
    ({"cameras": [{"name": "big", "intrinsics": {"w": 16384, "h": 16384, "hfov_deg": 90},
                   "mount": {"position": [0, 0, 1.6]}}]}, "cameras[0].intrinsics"),
])
def test_sizes_from_a_scenario_are_bounded(tmp_path, base, scene, edit, field):
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump({**base, **edit}))
    if field is None:
        load_scenario(sc, scene=scene)
        return
    with pytest.raises(ScenarioError, match="^" + re.escape(f"{sc}: {field}: ")):
        load_scenario(sc, scene=scene)


@pytest.mark.parametrize("edit,field", [
    ({"actors": [{"id": "car_1", "trajectory": [{"t": 0.0, "position": [".nan", 0.0]}]}]},
     "actors[0].trajectory[0].position[0]"),
    ({"actors": [{"id": "car_1", "translate": [".inf", 0.0, 0.0]}]}, "actors[0].translate[0]"),
    ({"ego": {"lateral": ".nan"}}, "ego.lateral"),
    ({"time": {"times": [".nan"]}}, "time.times[0]"),
])
def test_non_finite_numbers_in_a_scenario_are_refused(tmp_path, base, capsys, edit, field):
    text = yaml.safe_dump({**base, **edit}).replace("'.nan'", ".nan").replace("'.inf'", ".inf")
    sc = tmp_path / "s.yaml"
    sc.write_text(text)
    out = tmp_path / "out"
    assert main(["compose", str(sc), "-o", str(out)]) == 2
    line = _one_error_line(capsys)
    assert f"{sc}: {field}:" in line and "finite" in line, line
    assert not out.exists()


# ------------------------------------------------------------------------------------------------- R6
def test_force_never_deletes_a_folder_simrecon_did_not_write(tmp_path, capsys, tiny_scene):
    d = tmp_path / "d"
    d.mkdir()
    (d / "important.txt").write_text("x")
    for argv in (["synth", str(d), "--force", "--seconds", "0.2", "--no-gt"],
                 ["convert", "nerfstudio", str(tmp_path / "src"), str(d), "--force"],
                 ["render", str(tiny_scene), "--trajectory", "-o", str(d), "--force"]):
        (tmp_path / "src").mkdir(exist_ok=True)
        assert main(argv) == 2, argv
        line = _one_error_line(capsys)
        assert str(d) in line and "simrecon wrote" in line, line
        assert (d / "important.txt").read_text() == "x"


def test_force_replaces_what_simrecon_wrote(tmp_path):
    d = tmp_path / "d"
    argv = ["synth", str(d), "--seconds", "0.2", "--no-gt", "--width", "64", "--height", "48"]
    assert main(argv) == 0 and (d / MARKER).is_file()
    (d / "stale.txt").write_text("old run")
    assert main(argv) == 2  # exists, no --force
    assert main(argv + ["--force"]) == 0
    assert not (d / "stale.txt").exists() and (d / "log" / "transforms.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


# ------------------------------------------------------------------------------------------------- R10
def test_resume_rerenders_a_frame_whose_bytes_changed(tmp_path, base, scene):
    sc = tmp_path / "s.yaml"
    sc.write_text(yaml.safe_dump({**base, "time": {"times": [0.0, 0.1, 0.2]}}))
    ref = export(sc, "simrecon", tmp_path / "ref", scene=scene)
    assert ref.frames == 3

    def stop_after_two(done, total, label):
        if done == 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export(sc, "simrecon", out, progress=stop_after_two, scene=scene)
    png = out / "rgb" / "front" / "000000.png"
    arr = Image.open(png).convert("RGB")
    arr.putpixel((0, 0), (255, 0, 255))
    arr.save(png)  # same size class, different bytes: a finished frame corrupted between the two runs
    res = export(sc, "simrecon", out, scene=scene)
    assert res.rendered == 2 and res.reused == 1, res
    assert png.read_bytes() == (tmp_path / "ref" / "rgb" / "front" / "000000.png").read_bytes()


# ------------------------------------------------------------------------------------------------- R12
@pytest.fixture(scope="module")
def tiny_scene(synth_small, tmp_path_factory) -> Path:
    cfg = preset("tiny")
    cfg.budget.steps = 2
    out = tmp_path_factory.mktemp("scene") / "scene"
    reconstruct(synth_small / "log", out, cfg)
    return out


def _poses(paths: list[str]) -> dict:
    frame = {"transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1.6], [0, 0, 0, 1]], "timestamp": 0.0}
    return {"fl_x": 20.0, "fl_y": 20.0, "cx": 16.0, "cy": 12.0, "w": 32, "h": 24,
            "frames": [{**frame, "file_path": p, "camera": p.split("/")[1]} for p in paths]}


def test_render_poses_keeps_every_camera(tmp_path, tiny_scene):
    paths = ["images/front/0001.png", "images/front_left/0001.png", "images/front_right/0001.png"]
    (tmp_path / "poses.json").write_text(json.dumps(_poses(paths)))
    out = tmp_path / "r"
    assert main(["render", str(tiny_scene), "-o", str(out), "--poses", str(tmp_path / "poses.json")]) == 0
    written = sorted(str(p.relative_to(out / "rgb")) for p in (out / "rgb").rglob("*.png"))
    assert written == sorted(paths), written  # rgb/<file_path>: three files, not one written three times
    cams = json.loads((out / "cameras.json").read_text())["frames"]
    assert len({c["file_path"] for c in cams}) == 3 and all((out / c["file_path"]).is_file() for c in cams)


def test_render_poses_refuses_two_frames_with_one_output(tmp_path, tiny_scene, capsys):
    (tmp_path / "poses.json").write_text(json.dumps(_poses(["images/front/0001.png", "images/front/0001.png"])))
    out = tmp_path / "r"
    assert main(["render", str(tiny_scene), "-o", str(out), "--poses", str(tmp_path / "poses.json")]) == 2
    line = _one_error_line(capsys)
    assert "frames[1].file_path" in line and "same output" in line, line
    assert not out.exists()
