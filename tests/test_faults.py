"""Fault injection: SIGKILL at random points of reconstruct, compose and export, and a full disk (a small
tmpfs, where this process may mount one). After a kill, running the same command again (``--resume``
for reconstruct) finishes with the same result as an uninterrupted run and leaves no temporary file;
a full disk ends with one line naming the path and leaves nothing half-written."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from simrecon.cli.main import main

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "import sys; from simrecon.cli.main import main; sys.exit(main())"]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp" in p.name or ".old-" in p.name]


def _kill_when(argv: list[str], ready, timeout: float = 240.0) -> int:
    """Run the CLI with ``argv`` and SIGKILL it as soon as ``ready()`` is true; the exit code (-9 if killed)."""
    proc = subprocess.Popen(CLI + argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    return proc.returncode


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except OSError:
        return 0


# ------------------------------------------------------------------------------------------------- kill -9
@pytest.mark.parametrize("steps", [(0, 0), (1, 4), (6, 10)], ids=["start-up", "before-checkpoint", "after-one"])
def test_reconstruct_killed_at_a_random_step_resumes(synth_small, tmp_path, steps):
    """Killed as soon as its folder appears, before the first checkpoint (the tiny preset writes one every
    5 steps) or after one, at a step drawn from the range: --resume finishes the run."""
    scene = tmp_path / "scene"
    argv = ["reconstruct", str(synth_small / "log"), "-o", str(scene), "--preset", "tiny", "--steps", "12"]
    kill_at = random.Random(steps[1]).randint(*steps)  # metrics lines written before the kill
    rc = _kill_when(argv, lambda: scene.is_dir() and _lines(scene / "metrics.jsonl") >= kill_at)
    assert rc == -9, "the run ended before the kill point: the test did not test anything"
    proc = subprocess.run(CLI + ["reconstruct", "-o", str(scene), "--resume"], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((scene / "scene.json").read_text())
    assert info["status"] == "complete" and info["step"] == 12, info
    assert (scene / "model.pt").is_file() and not _temporaries(scene.parent)


@pytest.fixture(scope="module")
def scenario(synth_small, tmp_path_factory) -> Path:
    doc = {"scene": str(synth_small / "log"), "cameras": ["front", "front_left"], "visibility": "box",
           "actors": [{"id": "car_0", "remove": True}]}
    p = tmp_path_factory.mktemp("faults") / "scenario.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


@pytest.fixture(scope="module")
def references(scenario, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("refs")
    assert main(["compose", str(scenario), "-o", str(root / "simrecon")]) == 0
    assert main(["export", str(scenario), "--format", "coco", "-o", str(root / "coco")]) == 0
    return root


@pytest.mark.parametrize("fmt,seed", [("simrecon", 0), ("simrecon", 1), ("coco", 2)])
def test_export_killed_at_a_random_frame_resumes_identically(scenario, references, tmp_path, fmt, seed):
    out = tmp_path / "out"
    argv = ["compose", str(scenario), "-o", str(out)] if fmt == "simrecon" else \
        ["export", str(scenario), "--format", fmt, "-o", str(out)]
    frames = out / ".simrecon-export" / "frames"
    kill_at = random.Random(seed).randint(0, 8)  # finished frames before the kill (the log has 10)

    def ready() -> bool:
        return frames.is_dir() and len(list(frames.iterdir())) >= kill_at

    assert _kill_when(argv, ready) == -9
    assert main(argv) == 0
    assert _tree(out) == _tree(references / fmt) and not _temporaries(out)


# ------------------------------------------------------------------------------------------------- disk full
@pytest.fixture()
def full_disk(tmp_path):
    """A 320 KiB tmpfs: room for a start, not for a whole output."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(mnt)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _disk_full_refused(capsys, argv: list[str], out: Path) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err
    assert str(out) in lines[0] and ("No space left" in lines[0] or "cannot write" in lines[0]), lines[0]


def test_disk_full_synth(full_disk, capsys):
    out = full_disk / "street"
    _disk_full_refused(capsys, ["synth", str(out), "--seconds", "1", "--no-gt"], out)
    assert not any(full_disk.iterdir()), list(full_disk.iterdir())  # nothing half-written, no temporary


def test_disk_full_compose(full_disk, scenario, capsys):
    out = full_disk / "out"
    _disk_full_refused(capsys, ["compose", str(scenario), "-o", str(out)], out)
    assert not (out / "manifest.json").exists() and not _temporaries(full_disk)


def test_disk_full_convert(full_disk, synth_small, tmp_path, capsys):
    src = tmp_path / "capture"
    frames = json.loads((synth_small / "log" / "transforms.json").read_text())["frames"]
    (src / "images").mkdir(parents=True)
    pad = os.urandom(64 << 10)  # incompressible bytes so that the images need real room
    doc = {"fl_x": 100.0, "fl_y": 100.0, "cx": 80.0, "cy": 48.0, "w": 160, "h": 96, "frames": []}
    for i, f in enumerate(frames[:8]):
        data = (synth_small / "log" / f["file_path"]).read_bytes()
        (src / "images" / f"{i}.png").write_bytes(data + pad)  # PNG readers stop at IEND
        doc["frames"].append({"file_path": f"images/{i}.png", "transform_matrix": f["transform_matrix"]})
    (src / "transforms.json").write_text(json.dumps(doc))
    out = full_disk / "log"
    _disk_full_refused(capsys, ["convert", "nerfstudio", str(src), str(out)], out)
    assert not any(full_disk.iterdir()), list(full_disk.iterdir())


def test_export_killed_before_its_state_was_recorded_starts_again(scenario, references, tmp_path):
    """A kill between creating the progress folder and writing its state.json (what a kill at frame 0 can hit)
    leaves a folder that the same command must start again, not refuse as another scenario's export."""
    out = tmp_path / "out"
    (out / ".simrecon-export" / "frames").mkdir(parents=True)
    assert main(["export", str(scenario), "--format", "coco", "-o", str(out)]) == 0
    assert _tree(out) == _tree(references / "coco") and not _temporaries(out)
