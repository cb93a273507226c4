"""A closed-loop run folder (``simrecon drive ... -o RUN``, docs/simulation.md) as one MCAP file for Foxglove.

From ``trajectory.json``: ``/tf`` (world -> ego every step), ``/ego/box`` and ``/actors`` (boxes as scene
entities), ``/ego/path``; from ``events.json``: ``/events`` (foxglove.Log, collisions and off-road as
errors); from ``frames/<camera>/<step>.png`` when the run wrote them: ``/camera/<camera>/image``. Log times
are the steps' times. The run folder is read as untrusted input: bounded JSON, camera names checked
before they become paths, one line naming the file and field for anything wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.geometry import rotation_error
from ..data.safe_load import load_json
from ..data.safe_paths import safe_join, safe_name
from .exporter import atomic_write_bytes

SEVERE_EVENTS = ("collision", "off_road", "policy_error")


@dataclass
class RunMcapResult:
    out: Path
    steps: int
    images: int  # camera frames written
    events: int


def _pose(value, file: Path, fld: str) -> np.ndarray:
    try:
        pose = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        pose = np.zeros(0)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"{file}: {fld}: expected a finite 4x4 matrix")
    ortho, det = rotation_error(pose[:3, :3])
    if ortho > 1e-3 or det < 0:
        raise ValueError(f"{file}: {fld}: expected a rotation in the upper-left 3x3")
    return pose


def _size(value, file: Path, fld: str) -> tuple[float, float, float]:
    try:
        size = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        size = ()
    if len(size) != 3 or not all(np.isfinite(size)) or min(size) <= 0:
        raise ValueError(f"{file}: {fld}: expected three positive sizes in metres")
    return size  # type: ignore[return-value]


def _steps(run: Path) -> list[dict]:
    file = run / "trajectory.json"
    traj = load_json(file)
    steps = traj.get("steps") if isinstance(traj, dict) else None
    if not isinstance(steps, list) or not steps or not all(isinstance(s, dict) for s in steps):
        raise ValueError(f"{file}: steps: expected a non-empty list of steps (is {run} a run folder?)")
    for i, s in enumerate(steps):
        if not isinstance(s.get("time"), (int, float)) or not isinstance(s.get("actors", []), list):
            raise ValueError(f"{file}: steps[{i}]: expected a numeric time and a list of actors")
    return steps


def _cameras(run: Path) -> list[str]:
    file = run / "metrics.json"
    if not file.is_file():
        return []
    cams = (load_json(file).get("run") or {}).get("cameras") or []
    if not isinstance(cams, list):
        raise ValueError(f"{file}: run.cameras: expected a list of camera names")
    return [safe_name(c, f"{file}: run.cameras: camera name") for c in cams]


def _write_step(out, run: Path, i: int, step: dict, cameras: list[str]) -> int:
    from .mcap_writer import Box

    file, t = run / "trajectory.json", float(step["time"])
    ego = _pose(step.get("ego_pose"), file, f"steps[{i}].ego_pose")
    out.transforms(t, [("world", "ego", ego)])
    box = step.get("ego_box") or {}
    out.boxes(t, [Box("ego", "ego", _pose(box.get("pose"), file, f"steps[{i}].ego_box.pose"),
                      _size(box.get("size"), file, f"steps[{i}].ego_box.size"))], topic="/ego/box")
    actors = []
    for j, a in enumerate(step.get("actors", [])):
        where = f"steps[{i}].actors[{j}]"
        if not isinstance(a, dict):
            raise ValueError(f"{file}: {where}: expected an object")
        actors.append(Box(str(a.get("id")), str(a.get("cls", "other")), _pose(a.get("pose"), file, f"{where}.pose"),
                          _size(a.get("size"), file, f"{where}.size")))
    out.boxes(t, actors)
    images = 0
    for cam in cameras:
        png = safe_join(run, "frames", cam, f"{int(step.get('step', i)):06d}.png", what=f"{run}: frame")
        if png.is_file():
            out.image(t, cam, png.read_bytes(), "png")
            images += 1
    return images


def run_to_mcap(run: str | Path, out: str | Path, force: bool = False) -> RunMcapResult:
    """Write the run folder ``run`` as the MCAP file ``out`` (atomically: whole or not at all)."""
    from .mcap_writer import FoxgloveMcap

    run, out = Path(run), Path(out)
    if not (run / "trajectory.json").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no trajectory.json; write one with simrecon drive -o)")
    if out.exists() and not force:
        raise FileExistsError(f"{out}: already exists (use --force to replace it)")
    if out.exists() and not out.is_file():
        raise FileExistsError(f"{out}: exists and is not a file")
    steps, cameras = _steps(run), _cameras(run)
    events = load_json(run / "events.json") if (run / "events.json").is_file() else []
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        raise ValueError(f"{run / 'events.json'}: expected a list of events")
    writer = FoxgloveMcap({"run": str(run), "source": "simrecon drive"})
    path = np.stack([_pose(s.get("ego_pose"), run / "trajectory.json", f"steps[{i}].ego_pose")[:3, 3]
                     for i, s in enumerate(steps)])
    writer.path(float(steps[0]["time"]), path)
    images = sum(_write_step(writer, run, i, s, cameras) for i, s in enumerate(steps))
    for e in events:
        t = e.get("time")
        if isinstance(t, (int, float)) and np.isfinite(t):
            kind = str(e.get("kind", "event"))
            text = str(e.get("message") or "") or f"{kind} {e.get('actor') or ''}".strip()
            writer.event(float(t), kind, text, kind in SEVERE_EVENTS)
    atomic_write_bytes(out, writer.close())
    return RunMcapResult(out, len(steps), images, len(events))
