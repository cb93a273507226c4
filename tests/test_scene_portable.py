"""A scene folder is portable: scene.json records its drive log relative to the scene folder (and the absolute
path as a fallback), so a scene copied or moved with its log still opens; a scene whose log moved apart opens
with --log; a scene.json written before (an absolute ``source_log`` only) still opens, renders and resumes."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from helpers import tiny_files

from simrecon.cli.main import main
from simrecon.scene import load_scene
from simrecon.train import read_scene_info, reconstruct

tiny = tiny_files




@pytest.fixture()
def project(xs_log, tmp_path) -> Path:
    """``tmp/orig/street/log`` (a copy of the log) and ``tmp/orig/scene`` reconstructed from it (2 steps)."""
    root = tmp_path / "orig"
    shutil.copytree(xs_log, root / "street" / "log")
    reconstruct(root / "street" / "log", root / "scene", tiny())
    return root


def _scene_json(scene: Path) -> dict:
    return json.loads((scene / "scene.json").read_text())


def _render(scene: Path, out: Path, *extra: str) -> int:
    return main(["render", str(scene), "-o", str(out), "--trajectory", "--device", "cpu", *extra])


def _one_line(capsys, code: int) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_scene_json_records_the_log_relative_to_the_scene(project, tmp_path, monkeypatch):
    data = _scene_json(project / "scene")
    assert data["source_log"] == "../street/log"
    assert data["source_log_absolute"] == str((project / "street" / "log").resolve())
    # a scene folder named by a relative path records the same relative path
    monkeypatch.chdir(project)
    reconstruct(Path("street/log"), Path("again"), tiny(steps=1))
    assert _scene_json(project / "again")["source_log"] == "../street/log"


def test_scene_moved_with_its_log_opens_and_renders(project, tmp_path, capsys):
    moved = tmp_path / "elsewhere" / "project"
    moved.parent.mkdir()
    os.rename(project, moved)  # scene and log together, the originals gone
    assert not project.exists()
    assert _render(moved / "scene", tmp_path / "r") == 0, capsys.readouterr().err
    assert (tmp_path / "r" / "video.mp4").is_file()
    assert load_scene(moved / "scene", device="cpu").log.frames


@pytest.mark.parametrize("command", ["render", "eval", "mesh"])
def test_scene_whose_log_moved_apart_needs_log(command, project, tmp_path, capsys):
    scene = tmp_path / "copies" / "scene"
    shutil.copytree(project / "scene", scene)
    new_log = tmp_path / "archive" / "drive-7"
    new_log.parent.mkdir()
    os.rename(project / "street" / "log", new_log)
    if command == "mesh":
        pytest.importorskip("trimesh")
        pytest.importorskip("skimage")

    def args(out: str, *extra: str) -> list[str]:
        return {"render": ["render", str(scene), "-o", str(tmp_path / out), "--trajectory", "--device", "cpu"],
                "eval": ["eval", str(scene), "--device", "cpu"],
                "mesh": ["mesh", str(scene), "-o", str(tmp_path / out), "--all-actors", "--resolution", "8",
                         "--opacity", "0.001"]}[command] + list(extra)

    line = _one_line(capsys, main(args("r")))
    assert line == (f"error: {scene / 'scene.json'}: source_log: the drive log ../street/log is not found "
                    "(moved?); give its place with --log PATH")
    assert not (tmp_path / "r").exists()
    # a --log that is not there either is one line naming the option
    line = _one_line(capsys, main(args("r", "--log", str(tmp_path / "nowhere"))))
    assert line == f"error: --log {tmp_path / 'nowhere'}: no such file or folder"
    assert not (tmp_path / "r").exists()
    assert main(args("r", "--log", str(new_log))) == 0, capsys.readouterr().err
    if command == "render":
        assert (tmp_path / "r" / "video.mp4").is_file()
    elif command == "mesh":
        assert list((tmp_path / "r").glob("*.glb"))
    # the scene folder itself is unchanged: only a resumed run records a new place
    assert _scene_json(scene)["source_log"] == "../street/log"


def test_view_opens_a_scene_with_log(project, tmp_path, monkeypatch):
    pytest.importorskip("viser")
    import simrecon.viewer.app
    from simrecon.cli.view_cmd import view_command

    opened = []

    class Served(Exception):
        pass

    class Viewer:  # records the scene it would serve, and starts no server
        def __init__(self, scene, path, **kw):
            opened.append(scene)
            raise Served

    monkeypatch.setattr(simrecon.viewer.app, "SceneViewer", Viewer)
    scene = tmp_path / "copies" / "scene"
    shutil.copytree(project / "scene", scene)
    new_log = tmp_path / "drive-7"
    os.rename(project / "street" / "log", new_log)
    with pytest.raises(ValueError, match="source_log: the drive log ../street/log is not found"):
        view_command(scene, port=0, block=False)
    with pytest.raises(Served):
        view_command(scene, port=0, block=False, log=new_log)
    assert len(opened) == 1 and opened[0].log.frames


@pytest.mark.parametrize("how", ["argument", "option"])
def test_resume_with_a_moved_log_records_its_new_place(how, project, tmp_path, capsys):
    new_log = tmp_path / "archive" / "drive-7"
    new_log.parent.mkdir()
    os.rename(project / "street" / "log", new_log)
    scene = project / "scene"
    line = _one_line(capsys, main(["reconstruct", "--resume", "-o", str(scene), "--steps", "3"]))
    assert "source_log: the drive log ../street/log is not found" in line and "--log PATH" in line
    where = [str(new_log)] if how == "argument" else ["--log", str(new_log)]
    assert main(["reconstruct", "--resume", "-o", str(scene), "--steps", "3", *where]) == 0, capsys.readouterr().err
    data = _scene_json(scene)
    assert data["step"] == 3 and data["status"] == "complete"
    assert data["source_log"] == "../../archive/drive-7"
    assert data["source_log_absolute"] == str(new_log.resolve())
    assert _render(scene, tmp_path / "r") == 0  # found without --log from now on


def test_scene_json_written_before_relative_paths_opens_renders_and_resumes(project, tmp_path, capsys):
    scene = project / "scene"
    data = _scene_json(scene)
    data.pop("source_log_absolute", None)
    data["source_log"] = str((project / "street" / "log").resolve())  # as scene.json was written before
    (scene / "scene.json").write_text(json.dumps(data, indent=1))
    assert read_scene_info(scene).source_log == data["source_log"]
    assert load_scene(scene, device="cpu").log.frames
    assert _render(scene, tmp_path / "r") == 0, capsys.readouterr().err
    assert main(["reconstruct", "--resume", "-o", str(scene), "--steps", "3"]) == 0, capsys.readouterr().err
    resumed = _scene_json(scene)
    assert resumed["step"] == 3 and resumed["status"] == "complete"
    # the resumed run writes scene.json as it is written now: relative, with the absolute fallback
    assert resumed["source_log"] == "../street/log"
    assert resumed["source_log_absolute"] == data["source_log"]


def test_old_scene_json_whose_log_moved_opens_with_log(project, tmp_path, capsys):
    scene = project / "scene"
    data = _scene_json(scene)
    data.pop("source_log_absolute", None)
    old = str((project / "street" / "log").resolve())
    data["source_log"] = old
    (scene / "scene.json").write_text(json.dumps(data, indent=1))
    new_log = tmp_path / "drive-7"
    os.rename(project / "street" / "log", new_log)
    line = _one_line(capsys, _render(scene, tmp_path / "r"))
    assert line == (f"error: {scene / 'scene.json'}: source_log: the drive log {old} is not found (moved?); "
                    "give its place with --log PATH")
    assert _render(scene, tmp_path / "r", "--log", str(new_log)) == 0, capsys.readouterr().err


@pytest.mark.parametrize("key, value, needle", [
    ("source_log_absolute", 7, "source_log_absolute: expected"),
    ("source_log_absolute", "relative/log", "source_log_absolute: expected an absolute path"),
    ("source_log", "log\u0000x", "source_log: expected"),
])
def test_bad_log_reference_is_one_line_naming_the_field(key, value, needle, project, capsys):
    scene = project / "scene"
    data = _scene_json(scene)
    data[key] = value
    (scene / "scene.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=needle):
        read_scene_info(scene)


def test_reconstruct_log_option_is_for_resume_only(tmp_path, capsys):
    log = tmp_path / "log"
    log.mkdir()
    line = _one_line(capsys, main(["reconstruct", str(log), "-o", str(tmp_path / "s"), "--log", str(log)]))
    assert line == "error: --log: only with --resume (a new scene takes its drive log as LOG)"
    line = _one_line(capsys, main(["reconstruct", "--resume", "-o", str(tmp_path / "s"), str(log),
                                   "--log", str(tmp_path / "other")]))
    assert line.startswith(f"error: --log {tmp_path / 'other'}: and LOG {log} differ")
    assert not (tmp_path / "s").exists()
