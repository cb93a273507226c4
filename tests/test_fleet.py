"""Fleet runs without Ray (the local executor): spec checks, every stage, a failing log, reruns, the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest
import yaml
from helpers import XS
from test_fleet_support import RECONSTRUCT, make_logs, pipeline, write_spec

from simrecon.cli.main import main
from simrecon.data.safe_load import InputFileError
from simrecon.fleet import LocalExecutor, RunOptions, load_spec, read_manifest, run_fleet
from simrecon.synth import generate


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    return make_logs(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def first_run(logs):
    """The pipeline over two good logs and a broken one; (events, manifest, OUT)."""
    spec = load_spec(write_spec(logs, pipeline()))
    events = []
    manifest = run_fleet(spec, logs / "out", LocalExecutor(), on_event=events.append)
    return events, manifest, logs / "out"


def _stage(manifest, log, stage):
    rec = next(r for r in manifest.logs if r.name == log)
    return next(s for s in rec.stages if s.name == stage)


@pytest.mark.parametrize("doc, field, says", [
    ({"logs": ["street*/log"], "stages": ["validate", "fly"]}, "stages[1]", "unknown stage 'fly'"),
    ({"logs": ["street*/log"], "stages": [{"reconstruct": {"presets": "tiny"}}]}, "stages[0].presets",
     "unknown key"),
    ({"logs": ["street*/log"], "stages": [{"reconstruct": {"steps": 0}}]}, "stages[0].steps", "greater than"),
    ({"logs": ["street*/log"], "stages": ["validate", "eval"]}, "stages[1]", "needs a reconstruct stage"),
    ({"logs": ["nowhere*/log"], "stages": ["validate"]}, "logs[0].path", "the glob matches nothing"),
    ({"logs": ["street0/log"], "stages": ["validate", "validate"]}, "stages[1]", "a second stage named"),
    ({"logs": ["street0/log"], "stages": [{"compose": {"scenarios": ["missing.yaml"]}}]},
     "stages[0].scenarios[0]", "no such file"),
    ({"logs": [{"path": "street0/log", "convert": "betamax"}], "stages": ["validate"]}, "logs[0].convert",
     "unknown format"),
    ({"logs": ["street0/log"], "stages": []}, "stages", "non-empty list"),
    ({"logs": ["street0/log"], "stages": ["validate"], "defaults": {"cpus": -1}}, "defaults.cpus", "greater than"),
    ({"logs": ["street0/log"], "stages": ["validate"], "colour": 1}, "colour", "unknown key"),
])
def test_a_bad_spec_is_one_line_naming_file_and_field(logs, doc, field, says):
    path = logs / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(InputFileError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: "), message
    assert says in message and "\n" not in message


def test_a_spec_that_is_not_yaml_is_refused(logs):
    path = logs / "bad.yaml"
    path.write_text("logs: [a\nstages: ]")
    with pytest.raises(InputFileError, match="malformed YAML at line"):
        load_spec(path)


def test_globs_paths_resources_and_names(logs):
    spec = load_spec(write_spec(logs, [{"reconstruct": {"cpus": 2, "gpus": 0.5, "retries": 3}}, "validate"],
                                logs=["street*/log", "broken/log", "street0/log"],  # street0 twice: runs once
                                defaults={"cpus": 1, "memory_gb": 4}))
    assert [l.source for l in spec.logs] == [logs / "street0" / "log", logs / "street1" / "log",
                                             logs / "broken" / "log"]
    rec, val = spec.stages
    assert (rec.resources.cpus, rec.resources.gpus, rec.resources.memory_gb, rec.retries) == (2, 0.5, 4, 3)
    assert (val.resources.cpus, val.retries) == (1, 1)
    assert rec.key() != load_spec(write_spec(logs, [{"reconstruct": {"steps": 9}}, "validate"])).stages[0].key()


def test_every_log_goes_through_every_stage(first_run):
    events, manifest, out = first_run
    for log in ("street0", "street1"):
        rec = next(r for r in manifest.logs if r.name == log)
        assert rec.status == "done" and [s.status for s in rec.stages] == ["done"] * 4
        figures = rec.figures()
        assert figures.frames == 9 and figures.steps == RECONSTRUCT["steps"] and figures.rendered == 3
        assert 5 < figures.psnr < 60 and figures.lidar_error_m is not None
        assert (out / log / "scene" / "model.pt").is_file() and (out / log / "scene" / "eval.json").is_file()
        assert json.loads((out / log / "scene" / "eval.json").read_text())["psnr"] == figures.psnr
        assert (out / log / "compose" / "front" / "composition.json").is_file()
        assert (out / figures.thumbnail).is_file()
    # each log's stages ran in order
    order = [(e.log, e.stage) for e in events if e.kind == "start" and e.log == "street1"]
    assert [s for _, s in order] == ["validate", "reconstruct", "eval", "compose"]


def test_a_broken_log_fails_alone_with_its_error(first_run):
    _, manifest, out = first_run
    broken = next(r for r in manifest.logs if r.name == "broken")
    validate = broken.stages[0]
    assert broken.status == "failed" and validate.status == "failed"
    assert validate.attempts == 1  # bad input is not retried
    assert "broken/log/images" in validate.error and "\n" not in validate.error
    assert [s.status for s in broken.stages[1:]] == ["blocked"] * 3
    assert manifest.failed == 1
    on_disk = read_manifest(out)
    assert on_disk.finished is not None and on_disk.logs[2].stages[0].error == validate.error
    assert "broken" in (out / "summary.md").read_text() and "validate:" in (out / "summary.html").read_text()


def test_a_rerun_skips_what_is_done_and_redoes_what_changed(logs, first_run):
    _, _, out = first_run
    with pytest.raises(FileExistsError, match="--resume continues it"):
        run_fleet(load_spec(logs / "fleet.yaml"), out, LocalExecutor(), RunOptions())
    stages = pipeline()
    stages[3] = {"compose": {"scenarios": ["front.yaml"], "renderer": "reference"}}  # the last stage changed
    events = []
    manifest = run_fleet(load_spec(write_spec(logs, stages, name="fleet2.yaml")), out, LocalExecutor(),
                         RunOptions(resume=True), on_event=events.append)
    started = {(e.log, e.stage) for e in events if e.kind == "start"}
    assert started == {("street0", "compose"), ("street1", "compose"), ("broken", "validate")}
    reused = _stage(manifest, "street0", "reconstruct")
    assert reused.reused and reused.status == "done" and reused.figures.steps == RECONSTRUCT["steps"]
    assert _stage(manifest, "street0", "compose").status == "done"
    assert _stage(manifest, "broken", "validate").status == "failed"


def test_the_cli_runs_reports_and_exits_nonzero_on_a_failed_log(logs, tmp_path, capsys):
    spec = write_spec(logs, ["validate"], name="cli.yaml")
    assert main(["fleet", "run", str(spec), "-o", str(tmp_path / "o"), "--executor", "local"]) == 1
    captured = capsys.readouterr()
    assert "broken: validate failed" in captured.err and "2 of 3 log(s) done, 1 failed" in captured.out
    assert main(["fleet", "status", str(tmp_path / "o"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in doc["logs"]] == ["street0", "street1", "broken"]
    good = write_spec(logs, ["validate"], logs=["street0/log"], name="good.yaml")
    assert main(["fleet", "run", str(good), "-o", str(tmp_path / "g"), "--executor", "local"]) == 0


@pytest.mark.parametrize("args, says", [
    (["fleet", "run", "{spec}", "-o", "{out}", "--executor", "sometimes"], "--executor 'sometimes'"),
    (["fleet", "run", "{spec}", "-o", "{out}", "--executor", "local", "--address", "auto"], "--executor local"),
    (["fleet", "run", "{missing}", "-o", "{out}"], "no such fleet spec"),
    (["fleet", "status", "{missing}"], "no fleet manifest here"),
])
def test_cli_bad_input_is_one_line_and_exit_2(logs, tmp_path, capsys, args, says):
    spec = write_spec(logs, ["validate"], logs=["street0/log"], name="one.yaml")
    fill = {"spec": str(spec), "out": str(tmp_path / "o"), "missing": str(tmp_path / "missing")}
    assert main([a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1, err


def test_resume_after_the_driver_is_killed_finishes_only_what_was_left(logs, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    steps = 60
    reconstruct = {**RECONSTRUCT, "steps": steps, "set": RECONSTRUCT["set"] + ["budget.checkpoint_every=5"]}
    spec = write_spec(logs, ["validate", {"reconstruct": reconstruct}, "eval"], logs=["street*/log"],
                      name="killed.yaml")
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "simrecon", "fleet", "run", str(spec), "-o", str(out),
                               "--executor", "local"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    checkpoint, deadline = out / "street1" / "scene" / "checkpoint.pt", time.time() + 120
    while not checkpoint.is_file() and driver.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # the second log's reconstruction is under way: the first log's is done
    driver.wait()
    assert driver.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    before = (out / "street1" / "scene" / "metrics.jsonl").read_text().splitlines()[0]
    assert read_manifest(out).logs[1].stages[1].status == "running"
    events = []
    manifest = run_fleet(load_spec(spec), out, LocalExecutor(), RunOptions(resume=True), on_event=events.append)
    assert {(e.log, e.stage) for e in events if e.kind == "start"} == {
        ("street1", "reconstruct"), ("street0", "eval"), ("street1", "eval")}
    assert [log.status for log in manifest.logs] == ["done", "done"]
    assert manifest.logs[0].stages[1].reused and not manifest.logs[1].stages[1].reused
    scene = json.loads((out / "street1" / "scene" / "scene.json").read_text())
    assert scene["status"] == "complete" and scene["step"] == steps
    # resumed from its checkpoint: the killed run's training records are kept, not rewritten by a fresh start
    assert (out / "street1" / "scene" / "metrics.jsonl").read_text().splitlines()[0] == before


def test_a_raw_dataset_is_converted_and_the_output_folder_can_move(logs, tmp_path):
    import shutil

    from test_fleet_support import make_capture

    make_capture(tmp_path / "capture", logs / "street0" / "log")
    first = write_spec(tmp_path, ["validate", {"reconstruct": RECONSTRUCT}],
                       logs=[{"path": "capture", "convert": "nerfstudio"}])
    manifest = run_fleet(load_spec(first), tmp_path / "out", LocalExecutor())
    log = manifest.logs[0]
    assert [s.name for s in log.stages] == ["convert", "validate", "reconstruct"] and log.status == "done"
    assert log.log_dir == "capture/log" and log.figures().frames == 9
    shutil.move(tmp_path / "out", tmp_path / "moved")  # another node, or shared storage mounted elsewhere
    more = write_spec(tmp_path, ["validate", {"reconstruct": RECONSTRUCT}, "eval"],
                      logs=[{"path": "capture", "convert": "nerfstudio"}], name="more.yaml")
    events = []
    manifest = run_fleet(load_spec(more), tmp_path / "moved", LocalExecutor(), RunOptions(resume=True),
                         on_event=events.append)
    assert [e.stage for e in events if e.kind == "start"] == ["eval"]
    assert manifest.logs[0].status == "done" and manifest.logs[0].figures().psnr > 5


def test_regress_drive_and_export_stages_on_synthetic_logs(logs, tmp_path):
    """Without a reconstruct stage the rendering stages render the synthetic logs themselves (exact renderer)."""
    (logs / "suite.yaml").write_text(yaml.safe_dump({"name": "s", "scenarios": [{"scenario": "front.yaml"}]}))
    (logs / "boxes.yaml").write_text(yaml.safe_dump({"name": "boxes", "scene": "street0/log", "cameras": ["front"],
                                                     "outputs": ["rgb", "boxes"]}))
    spec = write_spec(logs, [
        {"regress": {"name": "golden", "suite": "suite.yaml", "update_golden": True}},
        {"regress": {"suite": "suite.yaml"}},
        {"drive": {"duration": 0.3, "set": ["sensors.width=32", "sensors.height=24"]}},
        {"export": {"scenarios": ["boxes.yaml"], "format": "coco"}}], logs=["street*/log"], name="render.yaml")
    manifest = run_fleet(load_spec(spec), tmp_path / "out", LocalExecutor())
    for log in manifest.logs:
        assert log.status == "done", [(s.name, s.error) for s in log.stages]
        figures = log.figures()
        assert (figures.regress_passed, figures.regress_failed) == (1, 0)
        assert 0 <= figures.drive_score <= 1 and figures.collisions == 0 and figures.rendered == 3
        out = tmp_path / "out" / log.name
        assert (out / "golden-renders" / "front").is_dir() and (out / "regress" / "junit.xml").is_file()
        assert json.loads((out / "drive" / "logged" / "metrics.json").read_text())["steps"] >= 1
        assert (out / "export" / "boxes" / "annotations.json").is_file()


@pytest.mark.parametrize("failures, status, attempts", [(1, "done", 2), (5, "failed", 3)])
def test_a_failure_that_is_not_bad_input_is_retried_a_bounded_number_of_times(logs, tmp_path, monkeypatch,
                                                                              failures, status, attempts):
    from simrecon.fleet import stages

    calls = []

    def flaky(task):  # a crash (not bad input) for the first ``failures`` attempts
        calls.append(task.attempt)
        if len(calls) <= failures:
            raise RuntimeError(f"lost the disk, attempt {task.attempt}")
        return stages.StageFigures(frames=1)

    monkeypatch.setitem(stages.RUNNERS, "validate", flaky)
    spec = write_spec(logs, [{"validate": {"retries": 2}}], logs=["street0/log"], name="flaky.yaml")
    events = []
    manifest = run_fleet(load_spec(spec), tmp_path / "out", LocalExecutor(), on_event=events.append)
    stage = manifest.logs[0].stages[0]
    assert (stage.status, stage.attempts, calls) == (status, attempts, list(range(1, attempts + 1)))
    assert [e.kind for e in events if e.kind in ("retry", "done", "failed")][-1] == ("done" if status == "done"
                                                                                       else "failed")
    if status == "failed":
        assert stage.error == "RuntimeError: lost the disk, attempt 3" and manifest.failed == 1


def test_a_drive_suite_stage_runs_the_suite_on_every_log(logs, tmp_path):
    """drive-suite: the suite's scenarios drive on each log's scene; the same policy as its own baseline passes,
    replay against lane-follow behind a slow car regresses (the stage fails, the report names it)."""
    generate(logs / "long", dataclasses.replace(XS, seconds=3.0, width=32, height=24))  # long enough to catch up
    lead = {"id": "lead_car", "source": "car_1", "trajectory": [{"t": 0.0, "position": [14.0, -1.75]},
                                                               {"t": 2.9, "position": [22.7, -1.75]}]}
    (logs / "slow_lead.yaml").write_text(yaml.safe_dump({"scene": "long/log", "cameras": ["front"],
                                                         "actors": [lead]}))
    (logs / "drives.yaml").write_text(yaml.safe_dump({"name": "drives", "scenarios": [{"scenario": "slow_lead.yaml"}]}))
    spec = write_spec(logs, [
        {"drive-suite": {"name": "same", "suite": "drives.yaml", "policy": "lane-follow", "baseline": "lane-follow"}},
        {"drive-suite": {"name": "worse", "suite": "drives.yaml", "policy": "replay", "baseline": "lane-follow"}}],
        logs=["long/log"], name="suites.yaml")
    manifest = run_fleet(load_spec(spec), tmp_path / "out", LocalExecutor())
    stages = {s.name: s for s in manifest.logs[0].stages}
    assert stages["same"].status == "done", stages["same"].error
    assert stages["worse"].status == "failed" and "1 of 1 case(s) regressed (slow_lead)" in stages["worse"].error
    summary = json.loads((tmp_path / "out" / manifest.logs[0].name / "worse" / "summary.json").read_text())
    assert {r["metric"] for r in summary["cases"][0]["regressions"]} >= {"collision", "score"}
