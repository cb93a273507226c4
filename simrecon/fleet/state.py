"""What a fleet run knows about itself, on disk: the per-log state and the fleet manifest.

- ``OUT/<log>/fleet-log.json`` (per-log state) records each stage of that log that finished, with the key of the
  spec it ran with, its figures and its time. The task that ran the stage writes it (atomically) as its last act,
  on whatever node ran it: a rerun, or a driver that died and came back, skips a stage recorded there.
- ``OUT/fleet.json`` (the manifest) is the driver's view: every (log, stage) with its status, attempts, timings
  and one-line error, rewritten atomically whenever one starts, finishes or fails.

Both hold paths relative to OUT where they point inside it, so OUT can move to another machine.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from ..data.io import atomic_write_text
from ..data.safe_load import InputFileError, load_json

MANIFEST = "fleet.json"
LOG_STATE = "fleet-log.json"
FORMAT = "simrecon-fleet"
VERSION = 1
STATUSES = ("pending", "running", "done", "failed", "blocked")  # blocked: an earlier stage of its log failed


@dataclass
class StageFigures:
    """The figures a stage reports (None: not this stage's)."""

    frames: Optional[int] = None  # camera frames of the log (validate, convert)
    rendered: Optional[int] = None  # camera frames rendered (compose, export)
    steps: Optional[int] = None  # training steps of the reconstruction
    train_minutes: Optional[float] = None  # minutes the reconstruction trained (all its runs)
    psnr: Optional[float] = None  # dB, mean over the held-out frames (eval)
    ssim: Optional[float] = None  # mean over the held-out frames (eval)
    lidar_error_m: Optional[float] = None  # m, mean absolute depth error against the lidar returns (eval)
    regress_passed: Optional[int] = None  # scenarios of the suite that passed (regress)
    regress_failed: Optional[int] = None  # scenarios that failed or could not render (regress)
    drive_score: Optional[float] = None  # 0..1, mean score of the drives (drive)
    collisions: Optional[int] = None  # drives that ended in a collision (drive)
    meshes: Optional[int] = None  # mesh files written (mesh)
    mesh_faces: Optional[int] = None  # faces of those meshes together (mesh)
    mesh_mb: Optional[float] = None  # MB (10^6 bytes) of mesh files and sidecars (mesh)
    lidar_sweeps: Optional[int] = None  # sweeps rendered at their logged poses (lidar)
    lidar_range_m: Optional[float] = None  # m, median |rendered - recorded| range where both returned (lidar)
    lidar_drop_accuracy: Optional[float] = None  # 0..1, rays returned in both or dropped in both (lidar)
    lidar_chamfer_m: Optional[float] = None  # m, symmetric mean nearest-neighbour distance of the points (lidar)
    skipped: Optional[str] = None  # why the stage had nothing to do (a log without lidar); it counts as done
    thumbnail: Optional[str] = None  # an image of the result, relative to OUT

    @classmethod
    def from_json(cls, data: Any) -> "StageFigures":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def merge(self, other: "StageFigures") -> "StageFigures":
        """These figures with ``other``'s where it has them."""
        return StageFigures(**{**asdict(self), **other.to_json()})


@dataclass
class StageRecord:
    name: str
    kind: str
    key: str  # StageSpec.key() it runs with
    status: str = "pending"  # one of STATUSES
    attempts: int = 0  # tasks started for it in this run (retries included)
    seconds: float = 0.0  # wall time of its last attempt (a reused stage: of the run that did it)
    reused: bool = False  # done by an earlier run, skipped in this one
    error: Optional[str] = None  # the one-line error of its last failure
    node: str = ""  # the host (on Ray: host/node id) that ran it
    started: Optional[float] = None  # unix time its last attempt was handed to the executor
    figures: StageFigures = field(default_factory=StageFigures)


@dataclass
class LogRecord:
    name: str  # its folder in OUT
    source: str  # what the spec names (absolute)
    log_dir: str  # the drive log the stages read: absolute, or relative to OUT when converted into it
    stages: list[StageRecord]

    @property
    def status(self) -> str:
        states = {s.status for s in self.stages}
        for status in ("failed", "running", "pending"):
            if status in states:
                return status
        return "done"

    def figures(self) -> StageFigures:
        out = StageFigures()
        for s in self.stages:
            out = out.merge(s.figures)
        return out


@dataclass
class Manifest:
    spec: str  # the spec file (absolute)
    name: str
    executor: str  # local or ray (with the cluster's address)
    started: float  # unix time
    finished: Optional[float] = None
    logs: list[LogRecord] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(1 for log in self.logs for s in log.stages if s.status == "failed")

    def to_json(self) -> dict:
        doc = asdict(self)
        for log in doc["logs"]:
            for s in log["stages"]:
                s["figures"] = {k: v for k, v in s["figures"].items() if v is not None}
        return {"format": FORMAT, "version": VERSION, **doc}


def write_manifest(out: Path, manifest: Manifest) -> None:
    atomic_write_text(Path(out) / MANIFEST, json.dumps(manifest.to_json(), indent=1))


def _stage_record(data: dict) -> StageRecord:
    known = {f.name for f in fields(StageRecord)} - {"figures"}
    rec = StageRecord(**{k: v for k, v in data.items() if k in known})
    rec.figures = StageFigures.from_json(data.get("figures"))
    return rec


def read_manifest(out: Path) -> Manifest:
    """The manifest of the fleet run in ``out``; one InputFileError line when it is missing or not one."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise InputFileError(path, "no fleet manifest here (not the output folder of simrecon fleet run)")
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputFileError(path, f"format: expected {FORMAT!r}")
    if data.get("version") != VERSION:
        raise InputFileError(path, f"version: expected {VERSION}, got {data.get('version')!r}")
    try:
        logs = [LogRecord(d["name"], d["source"], d["log_dir"], [_stage_record(s) for s in d["stages"]])
                for d in data["logs"]]
        return Manifest(data["spec"], data["name"], data["executor"], data["started"], data.get("finished"), logs)
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputFileError(path, f"logs: not a fleet manifest ({type(exc).__name__}: {exc})") from None


@dataclass
class DoneStage:
    """A stage of one log that finished, as its per-log state records it."""

    key: str
    seconds: float
    node: str
    figures: StageFigures


def read_log_state(log_out: Path) -> dict[str, DoneStage]:
    """The stages recorded done in ``log_out/fleet-log.json`` by name; empty when there is none (or it is
    unreadable: then every stage runs again, which is always safe)."""
    path = Path(log_out) / LOG_STATE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: DoneStage(d["key"], float(d["seconds"]), str(d.get("node", "")),
                                StageFigures.from_json(d.get("figures")))
                for name, d in data["done"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write_log_state(log_out: Path, states: dict[str, DoneStage]) -> None:
    doc = {"done": {n: {"key": d.key, "seconds": round(d.seconds, 3), "node": d.node,
                        "figures": d.figures.to_json()} for n, d in states.items()}}
    atomic_write_text(Path(log_out) / LOG_STATE, json.dumps(doc, indent=1))


def record_done(log_out: Path, name: str, done: DoneStage) -> None:
    """Add stage ``name`` to the per-log state (a read, then an atomic rewrite: a log's stages run one at a time)."""
    states = read_log_state(log_out)
    states[name] = done
    _write_log_state(log_out, states)


def forget(log_out: Path, names: list[str]) -> None:
    """Drop ``names`` from the per-log state (stages that will run again)."""
    states = read_log_state(log_out)
    if any(n in states for n in names):
        _write_log_state(log_out, {n: d for n, d in states.items() if n not in names})
