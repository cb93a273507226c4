"""Saved scenes, training and meshes under bad input: refused or corrupt weights, a scene folder left by a run
that died before its first checkpoint, non-finite numeric options, and a full disk. Every failure is one line
naming the file or the option, exit code 2, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import tiny_files

from simrecon.cli.main import main
from simrecon.train import TrainConfig, read_scene_info, reconstruct
from simrecon.scene import checkpoint as checkpoint_mod
from simrecon.scene import folder as scene_file_mod
from simrecon.train import trainer as trainer_mod
from simrecon.scene.checkpoint import load_checkpoint

tiny = tiny_files




@pytest.fixture(scope="module")
def scene(xs_log, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "scene"
    reconstruct(xs_log, out, tiny())
    return out


@pytest.fixture()
def scene_copy(scene, tmp_path) -> Path:
    import shutil

    dst = tmp_path / "scene"
    shutil.copytree(scene, dst)
    return dst


def _one_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err and "weights_only" not in err, err
    assert len(lines) == 1, err
    for n in needles:
        assert n in lines[0], err
    return lines[0]


def _error_line(capsys, code: int, *needles: str) -> str:
    """The one ``error:`` line of a command that failed after printing progress (meshes written, a training bar)."""
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and "Traceback" not in err and len(errors) == 1, err
    for n in needles:
        assert n in errors[0], err
    return errors[0]


class _Payload:
    """A pickle that would run a command if it were ever unpickled with weights_only=False."""

    def __reduce__(self):
        return (os.system, ("echo PWNED",))


def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    files = {}
    files["pickle"] = tmp / "pickle.pt"
    files["pickle"].write_bytes(pickle.dumps(_Payload()))
    files["numpy"] = tmp / "numpy.pt"
    torch.save({"a": np.zeros(3)}, files["numpy"])  # a real torch file that weights_only refuses
    files["text"] = tmp / "text.pt"
    files["text"].write_text("hello, not a checkpoint")
    files["empty"] = tmp / "empty.pt"
    files["empty"].write_bytes(b"")
    files["truncated"] = tmp / "truncated.pt"
    data = good.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["list"] = tmp / "list.pt"
    torch.save([torch.zeros(2)], files["list"])
    return files


# ------------------------------------------------------------------------------------------------------ R4
@pytest.mark.parametrize("kind", ["pickle", "numpy", "text", "empty", "truncated", "list"])
def test_unloadable_weights_and_checkpoints_are_one_line_naming_the_file(kind, scene, tmp_path):
    bad = _bad_files(tmp_path, scene / "model.pt")[kind]
    for loader in (load_checkpoint, checkpoint_mod.load_weights):
        with pytest.raises(ValueError) as e:
            loader(bad)
        msg = str(e.value)
        assert msg.startswith(f"{bad}: not a simrecon checkpoint/weights file (") and "\n" not in msg, msg
        assert "weights_only" not in msg, msg


@pytest.mark.parametrize("command", ["render", "eval", "mesh", "compose", "view", "resume"])
def test_every_command_refuses_a_pickled_payload_in_one_line(command, scene_copy, tmp_path, capsys, monkeypatch):
    target = scene_copy / ("checkpoint.pt" if command == "resume" else "model.pt")
    target.write_bytes(pickle.dumps(_Payload()))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"scene: {scene_copy}\ncameras: [front]\ntime: {{times: [0.0]}}\n")
    args = {"render": ["render", str(scene_copy), "-o", str(tmp_path / "r"), "--trajectory"],
            "eval": ["eval", str(scene_copy)],
            "mesh": ["mesh", str(scene_copy), "-o", str(tmp_path / "m"), "--all-actors", "--resolution", "8"],
            "compose": ["compose", str(scenario), "-o", str(tmp_path / "c")],
            "view": ["view", str(scene_copy), "--port", "0"],
            "resume": ["reconstruct", "--resume", "-o", str(scene_copy)]}[command]
    if command == "mesh":
        pytest.importorskip("trimesh")
        pytest.importorskip("skimage")
    if command == "view":
        pytest.importorskip("viser")
        import simrecon.viewer.app

        def served(*a, **k):  # the scene must be refused before a server starts (and blocks)
            raise AssertionError("the viewer started on a refused scene")

        monkeypatch.setattr(simrecon.viewer.app, "SceneViewer", served)
    _one_line(capsys, main(args), str(target), "not a simrecon checkpoint/weights file")
    assert not (tmp_path / "m").exists() and not (tmp_path / "r").exists()


def test_weights_of_another_model_are_one_line_naming_the_file(scene_copy, capsys):
    state = torch.load(scene_copy / "model.pt", weights_only=True)
    key = next(k for k, v in state.items() if v.ndim == 2)
    state[key] = torch.zeros(3, 3)  # a size mismatch
    torch.save(state, scene_copy / "model.pt")
    line = _one_line(capsys, main(["eval", str(scene_copy)]), str(scene_copy / "model.pt"), key)
    assert "does not fit" in line
    del state[key]  # a missing key
    torch.save(state, scene_copy / "model.pt")
    _one_line(capsys, main(["eval", str(scene_copy)]), str(scene_copy / "model.pt"), "missing", key)


def test_a_checkpoint_of_another_model_is_one_line_naming_the_file(scene_copy, capsys):
    ckpt = torch.load(scene_copy / "checkpoint.pt", weights_only=True)
    ckpt["model"]["not.a.parameter"] = torch.zeros(1)
    torch.save(ckpt, scene_copy / "checkpoint.pt")
    _one_line(capsys, main(["reconstruct", "--resume", "-o", str(scene_copy)]), str(scene_copy / "checkpoint.pt"),
              "not.a.parameter")
    torch.save({"model": ckpt["model"]}, scene_copy / "checkpoint.pt")  # no step
    _one_line(capsys, main(["reconstruct", "--resume", "-o", str(scene_copy)]), str(scene_copy / "checkpoint.pt"),
              "step")


@pytest.mark.parametrize("text, field", [
    ("{not json", "malformed JSON"),
    ("[1, 2]", "expected a JSON object"),
    (b"\xff\xfe\x00binary", "not UTF-8"),
    (None, "near"),  # filled in below: wrong types
    (None, "camera_names"),
    (None, "box"),
    (None, "config.schedule.lr"),
    (None, "config.model.background"),
    (None, "config.budget.minutes"),
])
def test_a_bad_scene_json_is_one_line_naming_the_file_and_field(text, field, scene_copy, capsys):
    path = scene_copy / "scene.json"
    if text is None:
        data = json.loads(path.read_text())
        if field == "near":
            data["near"] = "close"
        elif field == "camera_names":
            data["camera_names"] = "front"
        elif field == "box":
            data["box"] = {"center": [0, 0], "half": "x"}
        elif field == "config.schedule.lr":
            data["config"]["schedule"]["lr"] = "fast"
        elif field == "config.model.background":
            data["config"]["model"]["background"] = 5
        elif field == "config.budget.minutes":
            data["config"]["budget"]["minutes"] = float("nan")
        text = json.dumps(data)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    if field not in ("config.schedule.lr", "config.budget.minutes"):  # training settings: read by training only (--resume)
        _one_line(capsys, main(["eval", str(scene_copy)]), str(path), field)
    _one_line(capsys, main(["reconstruct", "--resume", "-o", str(scene_copy)]), str(path), field)


# ------------------------------------------------------------------------------------------------------ R5
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _killed_before_first_checkpoint(scene_copy: Path) -> Path:
    """What a SIGKILL or a full disk before the first checkpoint leaves: scene.json (training), metrics, a
    half-written temporary checkpoint of the dead process; no checkpoint.pt, no model.pt."""
    (scene_copy / "checkpoint.pt").unlink()
    (scene_copy / "model.pt").unlink()
    stale = scene_copy / f".checkpoint.pt.tmp-{_dead_pid()}"
    stale.write_bytes(b"half a checkpoint")
    data = json.loads((scene_copy / "scene.json").read_text())
    data["status"], data["step"] = "training", 0
    (scene_copy / "scene.json").write_text(json.dumps(data))
    return stale


def test_resume_before_the_first_checkpoint_starts_afresh(scene_copy, capsys, caplog):
    stale = _killed_before_first_checkpoint(scene_copy)
    code = main(["reconstruct", "--resume", "-o", str(scene_copy)])
    err = capsys.readouterr().err
    assert code == 0, err
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no checkpoint.pt" in w and "starting afresh" in w for w in warnings), warnings
    assert not stale.exists()
    info = read_scene_info(scene_copy)
    assert info.status == "complete" and info.step == 2
    assert [json.loads(x)["step"] for x in (scene_copy / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    load_checkpoint(scene_copy / "checkpoint.pt")


def test_a_fresh_run_into_a_scene_without_checkpoint_proceeds(scene_copy, xs_log):
    stale = _killed_before_first_checkpoint(scene_copy)
    result = reconstruct(xs_log, scene_copy, tiny(steps=1))
    assert result.status == "complete" and not stale.exists()
    assert (scene_copy / "model.pt").is_file()


def test_stale_temporaries_of_live_processes_are_kept(scene_copy, xs_log):
    _killed_before_first_checkpoint(scene_copy)
    live = scene_copy / f".checkpoint.pt.tmp-{os.getppid()}"  # another, still running, process's
    live.write_bytes(b"x")
    reconstruct(xs_log, scene_copy, tiny(steps=1))
    assert live.exists()


def test_a_finished_or_foreign_folder_is_still_refused(scene, scene_copy, xs_log, tmp_path):
    with pytest.raises(FileExistsError, match="already holds a scene"):
        reconstruct(xs_log, scene, tiny())
    (scene_copy / "checkpoint.pt").unlink()  # finished weights without a checkpoint: not retrained from scratch
    with pytest.raises(ValueError, match="no checkpoint.pt to resume from, yet finished weights"):
        reconstruct(Path(), scene_copy, tiny(), resume=True)
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a scene folder"):
        reconstruct(xs_log, foreign, tiny())
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    file_out = tmp_path / "file"
    file_out.write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        reconstruct(xs_log, file_out, tiny())


# ------------------------------------------------------------------------------------------------------ R8
@pytest.mark.parametrize("args, option, rule", [
    (["reconstruct", "LOG", "-o", "OUT", "--minutes", "nan"], "--minutes", "> 0"),
    (["reconstruct", "LOG", "-o", "OUT", "--minutes", "inf"], "--minutes", "> 0"),
    (["reconstruct", "LOG", "-o", "OUT", "--minutes", "-1"], "--minutes", "> 0"),
    (["reconstruct", "LOG", "-o", "OUT", "--minutes", "0"], "--minutes", "> 0"),
    (["reconstruct", "LOG", "-o", "OUT", "--free-columns", "inf"], "--free-columns", ">= 0"),
    (["reconstruct", "LOG", "-o", "OUT", "--free-columns", "nan"], "--free-columns", ">= 0"),
    (["render", "SCENE", "-o", "OUT", "--trajectory", "--shift-left", "nan"], "--shift-left", ""),
    (["render", "SCENE", "-o", "OUT", "--trajectory", "--shift-left", "-inf"], "--shift-left", ""),
    (["mesh", "SCENE", "-o", "OUT", "--all-actors", "--opacity", "nan"], "--opacity", "in (0, 1)"),
    (["demo", "-o", "OUT", "--minutes", "nan"], "--minutes", "> 0"),  # before the demo synthesises its log
    # (synth's and demo's --seconds and synth's --exposure-drift: SynthConfig.check refuses nan and inf already)
])
def test_non_finite_and_negative_float_options_are_refused(args, option, rule, xs_log, scene, tmp_path, capsys,
                                                           monkeypatch):
    import simrecon.cli.demo
    import simrecon.cli.mesh_cmd
    import simrecon.cli.scene_cmds

    def not_refused(*a, **k):  # an accepted option would start the (unbounded, with --minutes nan) work
        raise AssertionError(f"{option} {args[-1]} was not refused")

    for mod, name in ((simrecon.cli.scene_cmds, "reconstruct_command"), (simrecon.cli.scene_cmds, "render_command"),
                      (simrecon.cli.mesh_cmd, "mesh_command"), (simrecon.cli.demo, "run_demo")):
        monkeypatch.setattr(mod, name, not_refused)
    args = [{"LOG": str(xs_log), "OUT": str(tmp_path / "o"), "SCENE": str(scene)}.get(a, a) for a in args]
    line = _one_line(capsys, main(args), args[-1])
    assert line.startswith(f"error: {option}: must be a finite number {rule} (got ".replace("  ", " ")), line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("field, value", [
    ("budget.minutes", float("nan")), ("budget.minutes", float("inf")), ("budget.minutes", 0.0),
    ("schedule.lr", float("inf")), ("sampling.near_frac", float("nan")), ("priors.lidar_prior.lr", float("nan")),
    ("priors.free_columns.cell", float("inf")), ("model.far", float("nan")),
    ("model.background.density_bias", float("inf")), ("budget.steps", 0),
])
def test_the_config_refuses_non_finite_values(field, value):
    cfg = TrainConfig()
    obj = cfg
    *parents, leaf = field.split(".")
    for p in parents:
        obj = getattr(obj, p)
    setattr(obj, leaf, value)
    with pytest.raises(ValueError, match=re.escape(f"config.{field}: ")):
        cfg.check()


# ----------------------------------------------------------------------------------------------------- R11
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_on_scene_json_names_the_file(xs_log, tmp_path, monkeypatch):
    monkeypatch.setattr(scene_file_mod, "atomic_write_text", _enospc)
    out = tmp_path / "s"
    with pytest.raises(OSError, match=f"^{out / 'scene.json'}: could not be written .*No space left"):
        reconstruct(xs_log, out, tiny())
    assert not out.exists()  # the run created it and wrote nothing


def test_full_disk_on_the_checkpoint_names_the_file_and_keeps_no_temporary(xs_log, tmp_path, monkeypatch, capsys):
    def short_write(obj, f, *a, **k):
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    monkeypatch.setattr(checkpoint_mod.torch, "save", short_write)
    out = tmp_path / "s"
    code = main(["reconstruct", str(xs_log), "-o", str(out), "--preset", "tiny", "--steps", "2",
                 "--free-columns", "0", "--holdout", "none"])
    line = _error_line(capsys, code, f"{out / 'checkpoint.pt'}: could not be written", "--resume")
    assert "is the disk full" in line
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    # the folder holds no checkpoint: it is restartable (R5)
    monkeypatch.undo()
    assert reconstruct(xs_log, out, tiny(steps=1)).status == "complete"


def test_full_disk_on_metrics_names_the_file(xs_log, tmp_path, monkeypatch):
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, s):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if str(path).endswith("metrics.jsonl") else f

    monkeypatch.setattr(trainer_mod, "open", fake_open, raising=False)
    out = tmp_path / "s"
    with pytest.raises(OSError, match=f"^{out / 'metrics.jsonl'}: could not be written"):
        reconstruct(xs_log, out, tiny())


def test_full_disk_on_eval_json_names_the_file(scene_copy, monkeypatch, capsys):
    from simrecon.data import io as io_mod

    monkeypatch.setattr(io_mod.os, "fdopen", _enospc)  # inside atomic_write_text: the write of the JSON
    _error_line(capsys, main(["eval", str(scene_copy)]), f"{scene_copy / 'eval.json'}: could not be written",
                "No space left")
    assert not [p for p in scene_copy.iterdir() if ".tmp" in p.name]


def test_full_disk_on_a_mesh_names_the_file_and_removes_the_folder_it_made(scene, tmp_path, monkeypatch, capsys):
    pytest.importorskip("trimesh")
    pytest.importorskip("skimage")
    from simrecon.mesh import assets as assets_mod
    from simrecon.mesh import extract as extract_mod

    box = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=np.float32)
    faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                      [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], dtype=np.int64)
    mesh = extract_mod.MeshData(box, faces, np.full((8, 3), 200, np.uint8),
                                {"class": "car", "size": [1.0, 1.0, 1.0], "extraction": {}})
    import simrecon.mesh as mesh_pkg

    monkeypatch.setattr(mesh_pkg, "extract_actor", lambda *a, **k: mesh)
    real_fdopen = os.fdopen
    calls = {"n": 0}

    def fdopen_full(fd, *a, **k):
        calls["n"] += 1
        if calls["n"] >= 3:  # the first mesh and its sidecar fit, the second mesh does not
            os.close(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fdopen(fd, *a, **k)

    monkeypatch.setattr(assets_mod.os, "fdopen", fdopen_full)
    out = tmp_path / "meshes"
    code = main(["mesh", str(scene), "-o", str(out), "--actor", "car_0", "--actor", "car_1", "--format", "ply"])
    _error_line(capsys, code, f"{out / 'car_1.ply'}: could not be written", "No space left")
    assert not out.exists()
    # a folder that was there before stays, without temporaries
    out.mkdir()
    calls["n"] = 0
    code = main(["mesh", str(scene), "-o", str(out), "--actor", "car_0", "--actor", "car_1", "--format", "ply"])
    assert code == 2 and out.is_dir()
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    capsys.readouterr()
