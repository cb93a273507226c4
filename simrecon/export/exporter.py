"""Resumable, atomic export of a scenario's frames (``simrecon export`` / ``simrecon compose``).

Every file is written under a temporary name in its folder and renamed into place, so a file either
exists whole or not at all. After a frame's files are in place, its record (labels, file checksums, the
format's extra data) is written to ``OUT/.simrecon-export/frames/<n>.json``: that is the progress
record. An interrupted export run again with the same scenario and format skips every recorded frame
whose files still have the recorded size and sha256 (no re-rendering), removes stale temporary files, renders the rest, then writes the aggregate files and
``manifest.json`` (sha256 of every file) last and removes the progress folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..compose.composer import render_frame
from ..compose.lidar import LidarPlan, lidar_plan, render_sweep
from ..compose.scenario import LIDAR_OUTPUT, Plan, load_scenario
from ..data.outdir import naming_failures
from ..data.safe_paths import safe_join
from ..data.scene_api import RenderableScene
from .formats import get_format, json_bytes
from .lidar_files import check_lidar_format, final_files, sweep_files

STATE = ".simrecon-export"
MANIFEST = "manifest.json"
ENGINE_VERSION = 1
Progress = Callable[[int, int, str], None]  # (frames done, total, label) after each frame


@dataclass
class ExportResult:
    out: Path
    format: str
    frames: int
    rendered: int  # frames rendered by this call (the rest were done by an interrupted earlier call)
    reused: int
    files: int
    sweeps: int = 0  # lidar sweeps written (the ``lidar`` output)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write through ``.<name>.<pid>.tmp`` in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        with naming_failures(path), open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _clean_temp(out: Path) -> None:
    for p in out.rglob(".*.tmp"):
        if p.is_file():
            p.unlink()


def _intact(out: Path, files: dict) -> bool:
    """Every file of a frame record is there with the bytes it was written with."""
    for rel, meta in files.items():
        p = out / rel
        try:
            if p.stat().st_size != meta["bytes"] or sha256(p.read_bytes()) != meta["sha256"]:
                return False
        except OSError:
            return False
    return True


def _recorded_frame(out: Path, rec_path: Path, key: list) -> dict | None:
    """The progress record of a finished frame, or None when it must be rendered (again): no record, an
    unreadable one, another frame's, or any of its files missing or changed since it was written."""
    try:
        rec = json.loads(rec_path.read_text(encoding="utf-8"))
        ok = rec.get("key") == key and _intact(out, rec["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return rec if ok else None


def _fingerprint(plan: Plan, fmt: str) -> str:
    key = {"engine": ENGINE_VERSION, "format": fmt, "scenario": plan.text, "scene": str(plan.scene_path)}
    return sha256(json.dumps(key, sort_keys=True).encode())


def _prepare(out: Path, fmt: str, fingerprint: str, force: bool) -> None:
    """Make ``out`` ready: fresh, or holding an interrupted export of the same scenario and format."""
    state = out / STATE
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a folder")
    if state.is_dir() and not (state / "state.json").exists() and not (out / MANIFEST).exists():
        shutil.rmtree(out)  # killed while starting (before its state was recorded): nothing to keep, start again
    if out.exists() and any(out.iterdir()):
        ours = (out / MANIFEST).is_file() or state.is_dir()
        same = False
        if state.is_dir():
            try:
                same = json.loads((state / "state.json").read_text())["fingerprint"] == fingerprint
            except (OSError, ValueError, KeyError):
                same = False
        if same and not force:
            return  # resume
        if not force:
            if state.is_dir():
                raise FileExistsError(f"{out}: holds an interrupted export of another scenario or format "
                                      "(use --force to replace it)")
            raise FileExistsError(f"{out}: already exists (use --force to replace it)")
        if not ours:
            raise FileExistsError(f"{out}: exists and is not an export folder; refusing to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(state / "state.json", json_bytes({"format": fmt, "fingerprint": fingerprint}))
    (state / "frames").mkdir(parents=True, exist_ok=True)  # after the state: a frames folder means it is recorded


def _export_sweeps(plan: Plan, lp: LidarPlan, fmt: str, out: Path, progress: Progress | None,
                   done: int, total: int) -> list[dict]:
    """Render and write every sweep (``lidar`` output), resuming recorded ones like frames; returns the records."""
    records = []
    for k in range(len(plan.times)):
        rec_path = out / STATE / "sweeps" / f"{k:06d}.json"
        rec = _recorded_frame(out, rec_path, [LIDAR_OUTPUT, k])
        if rec is None:
            sweep = render_sweep(plan, lp, k)
            files, extra = sweep_files(fmt, plan, lp, sweep)
            for rel, data in files.items():
                atomic_write_bytes(safe_join(out, rel, what=f"{plan.file}: output file"), data)
            rec = {"key": [LIDAR_OUTPUT, k], "labels": sweep.record,
                   "files": {rel: {"sha256": sha256(data), "bytes": len(data)} for rel, data in files.items()},
                   "extra": extra}
            atomic_write_bytes(rec_path, json_bytes(rec))
        records.append(rec)
        if progress is not None:
            progress(done + k + 1, total, f"lidar t={plan.times[k]:.2f}s")
    return records


def export(scenario: str | Path | Plan, format: str, out: str | Path, force: bool = False,
           progress: Progress | None = None, scene: RenderableScene | None = None) -> ExportResult:
    """Render ``scenario`` and write it as ``format`` into ``out`` (resuming an interrupted export)."""
    fmt = get_format(format)
    plan = scenario if isinstance(scenario, Plan) else load_scenario(scenario, scene=scene)
    check_lidar_format(plan, format)
    fmt.check(plan)
    lp = lidar_plan(plan) if LIDAR_OUTPUT in plan.outputs else None
    out = Path(out)
    _prepare(out, format, _fingerprint(plan, format), force)
    state = out / STATE
    _clean_temp(out)
    keys = plan.frame_keys() if set(plan.outputs) - {LIDAR_OUTPUT} else []  # lidar only: no camera frames
    total = len(keys) + (len(plan.times) if lp is not None else 0)
    records: list[dict] = []
    rendered = reused = 0
    for n, (cam, k) in enumerate(keys):
        rec_path = state / "frames" / f"{n:06d}.json"
        rec = _recorded_frame(out, rec_path, [cam, k])
        if rec is None:
            frame = render_frame(plan, cam, k, scene=scene)
            files, extra = fmt.frame_files(plan, frame, n)
            for rel, data in files.items():
                atomic_write_bytes(safe_join(out, rel, what=f"{plan.file}: output file"), data)
            rec = {"key": [cam, k], "n": n, "labels": frame.record,
                   "files": {rel: {"sha256": sha256(data), "bytes": len(data)} for rel, data in files.items()},
                   "extra": extra}
            atomic_write_bytes(rec_path, json_bytes(rec))
            rendered += 1
        else:
            reused += 1
        records.append(rec)
        if progress is not None:
            progress(n + 1, total, f"{cam} t={plan.times[k]:.2f}s")
    sweeps = _export_sweeps(plan, lp, format, out, progress, len(keys), total) if lp is not None else []
    finals = fmt.final_files(plan, records, lp, sweeps) if getattr(fmt, "takes_sweeps", False) else \
        fmt.final_files(plan, records)
    if lp is not None:
        finals.update(final_files(format, lp, sweeps))
    finals["scenario.yaml"] = plan.text.encode("utf-8")
    for rel, data in finals.items():
        atomic_write_bytes(safe_join(out, rel, what=f"{plan.file}: output file"), data)
    listing = {}
    for r in records + sweeps:
        listing.update(r["files"])
    listing.update({rel: {"sha256": sha256(data), "bytes": len(data)} for rel, data in finals.items()})
    manifest = {"format": format, "scenario": plan.name, "scenario_file": str(plan.file),
                "scene": str(plan.scene_path), "frames": len(keys), "cameras": [c.name for c in plan.cameras],
                "times": [float(t) for t in plan.times],
                "files": {rel: listing[rel] for rel in sorted(listing)}}
    atomic_write_bytes(out / MANIFEST, json_bytes(manifest))
    shutil.rmtree(state)
    return ExportResult(out, format, len(keys), rendered, reused, len(listing) + 1, len(sweeps))


def compose(scenario: str | Path | Plan, out: str | Path, force: bool = False, progress: Progress | None = None,
            scene: RenderableScene | None = None) -> ExportResult:
    """``simrecon compose``: the scenario in our own layout (the ``simrecon`` export format)."""
    return export(scenario, "simrecon", out, force=force, progress=progress, scene=scene)


def verify(out: str | Path) -> list[str]:
    """Files of a finished export whose checksum or presence disagrees with its manifest (empty: all good)."""
    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text())
    bad = []
    for rel, meta in manifest["files"].items():
        p = out / rel
        if not p.is_file() or sha256(p.read_bytes()) != meta["sha256"]:
            bad.append(rel)
    return bad
