"""Fleet runs on an embedded Ray (2 CPUs): the same results as the local executor, one task per (log, stage) in
parallel, and a worker killed in the middle of a reconstruction is retried and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from test_fleet_support import RECONSTRUCT, make_logs, pipeline, write_spec

from simrecon.fleet import LocalExecutor, RayExecutor, load_spec, run_fleet

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def embedded_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return make_logs(tmp_path_factory.mktemp("fleet-ray"))


def _figures(manifest) -> dict:
    return {log.name: (log.status, [s.status for s in log.stages], log.figures().psnr, log.figures().steps,
                       log.figures().rendered) for log in manifest.logs}


def test_ray_and_local_executors_give_the_same_fleet(logs, embedded_ray):
    spec = load_spec(write_spec(logs, pipeline()))
    events = []
    on_ray = run_fleet(spec, logs / "ray", RayExecutor(), on_event=events.append)
    local = run_fleet(spec, logs / "local", LocalExecutor())
    assert on_ray.executor.startswith("ray") and local.executor == "local"
    assert _figures(on_ray) == _figures(local)
    assert [log.status for log in on_ray.logs] == ["done", "done", "failed"]
    # tasks of different logs overlapped: a second one started before the first finished
    running, most = 0, 0
    for e in events:
        running += {"start": 1, "done": -1, "failed": -1, "retry": -1}.get(e.kind, 0)
        most = max(most, running)
    assert most == 2
    assert ray.is_initialized()  # a Ray the caller started stays up


def test_a_stage_that_no_node_can_hold_is_refused_before_anything_runs(logs, embedded_ray, tmp_path):
    spec = load_spec(write_spec(logs, [{"reconstruct": {**RECONSTRUCT, "cpus": 64}}], name="big.yaml"))
    with pytest.raises(ValueError, match="reserves 64 CPU.*largest node of the Ray cluster has 2 CPU"):
        run_fleet(spec, tmp_path / "out", RayExecutor())
    assert not (tmp_path / "out" / "fleet.json").exists()


def _worker_of(title: str) -> int | None:
    """The pid of the Ray worker whose process title is ``title`` (Ray names it after the task it runs)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
            except OSError:
                continue
            if cmdline == title:
                return int(entry.name)
    return None


def test_a_worker_killed_mid_reconstruction_is_retried_and_resumes(logs, embedded_ray):
    victim = f"victim{os.getpid()}"
    steps = 150
    reconstruct = {**RECONSTRUCT, "steps": steps, "set": RECONSTRUCT["set"] + ["budget.checkpoint_every=5"],
                   "retries": 1}
    spec = load_spec(write_spec(logs, [{"reconstruct": reconstruct}], logs=[{"path": "street0/log", "name": victim}],
                                name="victim.yaml"))
    out, events, result = logs / "killed", [], {}
    runner = threading.Thread(target=lambda: result.update(m=run_fleet(spec, out, RayExecutor(),
                                                                       on_event=events.append)))
    runner.start()
    checkpoint, deadline, killed = out / victim / "scene" / "checkpoint.pt", time.time() + 120, None
    while killed is None and time.time() < deadline and runner.is_alive():
        pid = _worker_of(f"ray::{victim}/reconstruct") if checkpoint.is_file() else None
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed = (out / victim / "scene" / "metrics.jsonl").read_text().splitlines()[0]
        time.sleep(0.05)
    runner.join(timeout=180)
    assert killed is not None, "the reconstruction ended before it could be killed"
    stage = result["m"].logs[0].stages[0]
    assert stage.status == "done" and stage.attempts == 2, stage
    assert [e.kind for e in events if e.kind in ("retry", "done")] == ["retry", "done"]
    assert "died" in next(e.error for e in events if e.kind == "retry").lower()
    scene = json.loads((out / victim / "scene" / "scene.json").read_text())
    assert scene["status"] == "complete" and scene["step"] == steps
    # the retry resumed from the checkpoint: a fresh start would have rewritten the killed run's records
    records = (out / victim / "scene" / "metrics.jsonl").read_text().splitlines()
    assert records[0] == killed and len(records) >= steps
