"""The fleet driver: plan every (log, stage), hand them to an executor in order, retry, keep the manifest.

The stages of one log run in order, one at a time; logs run side by side, up to ``max_parallel`` tasks (and, on
Ray, up to the resources their stages reserve). A failed stage is tried again up to its ``retries`` unless the
failure is bad input; when it fails for good, the later stages of its log are ``blocked`` and the other logs go
on. ``OUT/fleet.json`` is rewritten (atomically) at every start, finish and failure; each finished stage is also
recorded in its log's ``fleet-log.json``, which a rerun with ``resume`` reads to skip what is done.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..data.safe_paths import safe_name
from .spec import FleetSpec, LogSpec, StageSpec
from .stages import CONVERTED, StageTask
from .state import (MANIFEST, LogRecord, Manifest, StageRecord, forget, read_log_state, read_manifest,
                    write_manifest)
from .summary import write_summary


@dataclass(frozen=True)
class FleetEvent:
    kind: str  # at the start, once per stage: planned (to run) or reused (done earlier); then start, done, retry,
    # failed, blocked
    log: str
    stage: str
    attempt: int = 0
    seconds: float = 0.0  # of the attempt that ended
    error: Optional[str] = None


@dataclass(frozen=True)
class RunOptions:
    resume: bool = False  # continue the run in OUT: skip what is done, redo what failed or was interrupted
    max_parallel: Optional[int] = None  # tasks in flight at once (None: as many as the executor has CPUs)
    poll_s: float = 0.5  # s between looks at the running tasks


def _prepare(out: Path, resume: bool) -> Optional[Manifest]:
    """The previous run's manifest when resuming; refuse an OUT that holds something else."""
    if (out / MANIFEST).is_file():
        if not resume:
            raise FileExistsError(f"{out} holds a fleet run ({MANIFEST}): --resume continues it, or choose another -o")
        return read_manifest(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not a fleet output folder (no {MANIFEST}); choose another -o")
    return None


def _names(logs: list[LogSpec], old: Optional[Manifest]) -> list[str]:
    """Each log's folder in OUT: the name the previous run gave its source, else the spec's name, else the
    source folder's name (``log`` folders take their parent's), made unique with -2, -3, ..."""
    previous = {rec.source: rec.name for rec in old.logs} if old else {}
    taken: set[str] = set()
    names = []
    for log in logs:
        base = previous.get(str(log.source)) or log.name or (
            log.source.parent.name if log.source.name in ("log", CONVERTED) else log.source.name)
        base = safe_name(base, f"log {log.source}")
        name, k = base, 2
        while name in taken or (name != previous.get(str(log.source)) and name in previous.values()):
            name, k = f"{base}-{k}", k + 1
        taken.add(name)
        names.append(name)
    return names


def _plan(spec: FleetSpec, out: Path, old: Optional[Manifest], executor_name: str) -> Manifest:
    manifest = Manifest(str(spec.file), spec.name, executor_name, time.time())
    for log, name in zip(spec.logs, _names(spec.logs, old)):
        done, stages, rerun = read_log_state(out / name), [], False
        for stage in spec.stages_for(log):
            rec = StageRecord(stage.name, stage.kind, stage.key())
            prior = done.get(stage.name)
            if not rerun and prior is not None and prior.key == rec.key:
                rec.status, rec.reused, rec.seconds, rec.node = "done", True, prior.seconds, prior.node
                rec.figures = prior.figures
            else:
                rerun = True
            stages.append(rec)
        forget(out / name, [s.name for s in stages if s.status != "done"])
        log_dir = f"{name}/{CONVERTED}" if log.convert else str(log.source)
        manifest.logs.append(LogRecord(name, str(log.source), log_dir, stages))
    return manifest


class _Run:
    """The state of one ``run_fleet`` call: what is in flight, what is next, the manifest."""

    def __init__(self, spec: FleetSpec, out: Path, manifest: Manifest, executor, on_event):
        self.spec, self.out, self.manifest, self.executor = spec, out, manifest, executor
        self.on_event = on_event or (lambda _e: None)
        self.stages = {rec.name: spec.stages_for(log) for rec, log in zip(manifest.logs, spec.logs)}
        self.inflight: dict = {}  # handle -> (log index, stage index)
        self.ready = deque(i for i, rec in enumerate(manifest.logs) if self._next(i) is not None)

    def _next(self, i: int) -> Optional[int]:
        return next((k for k, s in enumerate(self.manifest.logs[i].stages) if s.status == "pending"), None)

    def _task(self, i: int, k: int) -> StageTask:
        rec, stage = self.manifest.logs[i], self.stages[self.manifest.logs[i].name][k]
        log_dir = Path(rec.log_dir) if os.path.isabs(rec.log_dir) else self.out / rec.log_dir
        earlier = self.stages[rec.name][:k]
        return StageTask(str(self.out), rec.name, str(log_dir), rec.source, self.spec.logs[i].convert, stage,
                         any(s.kind == "reconstruct" for s in earlier), rec.stages[k].attempts)

    def submit(self, i: int) -> None:
        k = self._next(i)
        rec = self.manifest.logs[i].stages[k]
        rec.status, rec.attempts, rec.started, rec.error = "running", rec.attempts + 1, time.time(), None
        self.inflight[self.executor.submit(self._task(i, k))] = (i, k)
        write_manifest(self.out, self.manifest)
        self.on_event(FleetEvent("start", self.manifest.logs[i].name, rec.name, rec.attempts))

    def finish(self, handle, outcome) -> None:
        i, k = self.inflight.pop(handle)
        log, rec = self.manifest.logs[i], self.manifest.logs[i].stages[k]
        stage: StageSpec = self.stages[log.name][k]
        rec.seconds, rec.node = round(outcome.seconds, 3), outcome.node
        if outcome.ok:
            rec.status, rec.figures = "done", outcome.figures
            self.on_event(FleetEvent("done", log.name, rec.name, rec.attempts, outcome.seconds))
        elif outcome.retryable and rec.attempts <= stage.retries:
            rec.status, rec.error = "pending", outcome.error
            self.on_event(FleetEvent("retry", log.name, rec.name, rec.attempts, outcome.seconds, outcome.error))
        else:
            rec.status, rec.error = "failed", outcome.error
            self.on_event(FleetEvent("failed", log.name, rec.name, rec.attempts, outcome.seconds, outcome.error))
            for later in log.stages[k + 1:]:
                later.status = "blocked"
                self.on_event(FleetEvent("blocked", log.name, later.name))
        if self._next(i) is not None:
            self.ready.append(i)
        write_manifest(self.out, self.manifest)

    def interrupted(self) -> None:
        """Stages in flight go back to pending (a rerun with resume does them)."""
        for i, k in self.inflight.values():
            self.manifest.logs[i].stages[k].status = "pending"
        self.inflight.clear()


def run_fleet(spec: FleetSpec, out: str | Path, executor, options: RunOptions = RunOptions(),
              on_event: Callable[[FleetEvent], None] | None = None) -> Manifest:
    """Take every log of ``spec`` through its stages on ``executor`` into ``out``; returns the final manifest
    (``manifest.failed`` counts the stages that failed). Bad input to the fleet itself (``out``, resources no node
    has) raises a one-line ValueError / FileExistsError before any stage runs."""
    out = Path(out).absolute()
    if options.max_parallel is not None and options.max_parallel < 1:
        raise ValueError(f"--max-parallel: expected at least 1, got {options.max_parallel}")
    old = _prepare(out, options.resume)
    try:
        executor.start([s.resources for s in spec.stages + [spec.convert]])
        out.mkdir(parents=True, exist_ok=True)
        manifest = _plan(spec, out, old, executor.name)
    except BaseException:
        executor.close()
        raise
    run = _Run(spec, out, manifest, executor, on_event)
    for log in manifest.logs:
        for rec in log.stages:
            run.on_event(FleetEvent("reused" if rec.status == "done" else "planned", log.name, rec.name,
                                    seconds=rec.seconds))
    limit = options.max_parallel or executor.parallel
    try:
        write_manifest(out, manifest)
        while run.ready or run.inflight:
            while run.ready and len(run.inflight) < limit:
                run.submit(run.ready.popleft())
            for handle, outcome in executor.wait(options.poll_s):
                run.finish(handle, outcome)
        manifest.finished = time.time()
    finally:
        run.interrupted()
        executor.close()
        write_manifest(out, manifest)
        write_summary(out, manifest)
    return manifest
