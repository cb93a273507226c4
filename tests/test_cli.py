"""The command line as a user runs it: exit codes, one-line errors, no tracebacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from simrecon.cli.main import main


def run(capsys, *args):
    code = main(list(map(str, args)))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_console_script_help_teaches_the_first_steps():
    proc = subprocess.run([sys.executable, "-m", "simrecon", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for word in ("demo", "synth", "validate", "info", "convert"):
        assert word in proc.stdout


def test_validate_ok_prints_one_summary_line(capsys, synth_small):
    code, out, err = run(capsys, "validate", synth_small / "log")
    assert code == 0 and out.startswith("OK ") and "15 frames from 3 camera(s)" in out.replace("\n", "")


def test_validate_bad_log_lists_every_problem_and_exits_2(capsys, synth_small, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(synth_small / "log", bad)
    data = json.loads((bad / "transforms.json").read_text())
    data["frames"][3]["transform_matrix"][0][0] = 7.0
    data["actors"][1]["id"] = data["actors"][0]["id"]
    (bad / "images/front/000001.png").unlink()
    (bad / "transforms.json").write_text(json.dumps(data))
    code, out, err = run(capsys, "validate", bad)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert any("frames[3].transform_matrix: expected a proper rotation" in line for line in lines)
    assert any("repeats actors[0].id" in line for line in lines)
    assert any("000001.png' does not exist" in line for line in lines)
    assert "INVALID: 3 problem(s)" in lines[-1]
    assert "Traceback" not in err


def test_info_shows_cameras_lidar_actors(capsys, synth_small):
    code, out, _ = run(capsys, "info", synth_small / "log")
    assert code == 0
    for word in ("front_left", "160x96", "Lidar", "pedestrian", "Ego: 5 poses"):
        assert word in out


@pytest.mark.parametrize("args, message", [
    (["validate", "/no/such/log"], "/no/such/log: no such file or folder"),
    (["info", "/no/such/log"], "no such file or folder"),
    (["synth"], "Missing argument 'OUT'"),
    (["synth", "x", "--bogus"], "No such option: --bogus"),
    (["synth", "x", "--width", "abc"], "Invalid value for '--width'"),
    (["synth", "x", "--seconds", "-1"], "--seconds must be in (0, 120]"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["convert", "no-such-format", "/tmp", "/tmp/../simrecon-never-written"], "unknown format"),
    (["compose", "/no/scenario.yaml", "-o", "x"], "/no/scenario.yaml: no such file or folder"),
    (["export", "/no/scenario.yaml", "--format", "coco", "-o", "x"], "no such file or folder"),
    (["regress", "/no/suite.yaml"], "no such file or folder"),
    (["mesh", "/no/scene", "-o", "x", "--all-actors"], "no such file or folder"),
    (["view", "/no/scene"], "no such file or folder"),
])
def test_user_errors_are_one_line_and_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_info_on_invalid_log_lists_problems_and_exits_2(capsys, tmp_path):
    (tmp_path / "transforms.json").write_text("{not json")
    code, _, err = run(capsys, "info", tmp_path)
    assert code == 2 and "malformed JSON" in err


def test_synth_refuses_existing_output_without_force(capsys, tmp_path):
    (tmp_path / "out").mkdir()
    code, _, err = run(capsys, "synth", tmp_path / "out", "--seconds", "0.2", "--width", "32", "--height", "24")
    assert code == 2 and "already exists (use --force" in err


def test_demo_writes_report_and_reuses_the_log(capsys, tmp_path):
    code, out, err = run(capsys, "demo", "-o", tmp_path / "demo", "--seconds", "0.3", "--no-reconstruct")
    assert code == 0 and "report:" in out
    html = (tmp_path / "demo/report.html").read_text()
    assert "contact_sheet.jpg" in html and "front_right" in html
    assert (tmp_path / "demo/report_files/contact_sheet.jpg").stat().st_size > 5000
    assert (tmp_path / "demo/report_files/overlay.jpg").is_file()
    assert "Closed-loop drive" in html and "drive/video.gif" in html and "lane-follow behind a car" in err
    steps = json.loads((tmp_path / "demo/drive/metrics.json").read_text())["steps"]  # 0.3 s: a short route
    assert Image.open(tmp_path / "demo/drive/video.gif").n_frames == steps + 1
    code, out, _ = run(capsys, "demo", "-o", tmp_path / "demo", "--seconds", "0.3", "--no-reconstruct")
    assert code == 0 and "reusing synthetic street" in out
