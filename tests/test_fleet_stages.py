"""The fleet's mesh and lidar stages (local executor): outputs complete, figures in the manifest and the summary,
a log without lidar skipped with its reason, bad options refused in one line."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from helpers import edit_log
from test_fleet_support import RECONSTRUCT, make_logs, write_spec

from simrecon.cli.main import main
from simrecon.data import load_log
from simrecon.data.safe_load import InputFileError
from simrecon.fleet import LocalExecutor, RunOptions, load_spec, read_manifest, run_fleet

# Actor fields made dense (as tests/test_mesh_cli.py does) so that a 3-step reconstruction has surfaces to mesh.
DENSE = {**RECONSTRUCT, "set": RECONSTRUCT["set"] + ["model.actor.density_bias=10"]}
MESH = {"mesh": {"resolution": 16, "format": "ply", "faces": 500}}
NO_LIDAR = "the log has no lidar sweeps"


def _without_lidar(data: dict) -> None:
    data.pop("lidar", None)
    data.pop("lidar_sensors", None)


def _v1_lidar(data: dict) -> None:
    """Sweeps without a sensor model or beam/column layout (drive-log v1)."""
    data.pop("lidar_sensors", None)
    data["simrecon_version"] = 1
    for sweep in data["lidar"]:
        sweep.pop("index_path", None)


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """street0 (synthetic, with v1.1 lidar), nolidar (the same without lidar), v1 (its lidar without a model)."""
    root = make_logs(tmp_path_factory.mktemp("fleet-stages"), n=1, broken=False)
    for name, edit in (("nolidar", _without_lidar), ("v1", _v1_lidar)):
        shutil.copytree(root / "street0", root / name)
        edit_log(root / name / "log", edit)
    return root


@pytest.fixture(scope="module")
def run(logs):
    """validate -> reconstruct -> mesh -> lidar over street0 and nolidar; (manifest, OUT)."""
    spec = write_spec(logs, ["validate", {"reconstruct": DENSE}, MESH, {"lidar": {"sweeps": 2}}],
                      logs=["street0/log", "nolidar/log"])
    out = logs / "out"
    return run_fleet(load_spec(spec), out, LocalExecutor()), out


def _stage(manifest, log, stage):
    rec = next(r for r in manifest.logs if r.name == log)
    return next(s for s in rec.stages if s.name == stage)


def _rows(points):
    """The rows of ``points`` in lexicographic order (two point sets compared whatever their order)."""
    return points[np.lexsort(points.T[::-1])]


def _no_temporaries(folder):
    return not [p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_the_mesh_stage_writes_every_actor_field_as_a_complete_mesh(logs, run):
    import trimesh

    manifest, out = run
    for log in ("street0", "nolidar"):
        stage = _stage(manifest, log, "mesh")
        assert stage.status == "done", stage.error
        index = json.loads((out / log / "mesh" / "meshes.json").read_text())
        actors = [m["actor"] for m in index["meshes"]]
        assert sorted(actors + [s.split("'")[1] for s in index["skipped"]]) == sorted(
            a.id for a in load_log(logs / log / "log").actors)
        assert stage.figures.meshes == len(actors) >= 1
        assert stage.figures.mesh_faces == sum(m["faces"] for m in index["meshes"])
        for m in index["meshes"]:
            path = out / log / "mesh" / m["file"]
            assert path.suffix == ".ply" and path.with_suffix(".json").is_file()
            assert len(trimesh.load(path, process=False).faces) == m["faces"] > 0
        assert stage.figures.mesh_mb == pytest.approx(sum(m["bytes"] for m in index["meshes"]) / 1e6, abs=1e-3)
        assert _no_temporaries(out / log)


def test_the_lidar_stage_renders_the_logged_sweeps_and_scores_them(logs, run):
    manifest, out = run
    stage = _stage(manifest, "street0", "lidar")
    assert stage.status == "done", stage.error
    folder = out / "street0" / "lidar"
    doc = json.loads((folder / "lidar.json").read_text())
    logged = load_log(logs / "street0" / "log").lidar
    # sweeps: 2 of the log's 3, evenly spread: the first and the last, at their logged poses and times
    assert [e["timestamp"] for e in doc["lidar"]] == [logged[0].timestamp, logged[-1].timestamp]
    assert np.allclose(doc["lidar"][1]["transform_matrix"], logged[-1].s2w)
    assert set(doc["lidar_sensors"]) == {"lidar"}
    for entry in doc["lidar"]:
        points, index = np.load(folder / entry["file_path"]), np.load(folder / entry["index_path"])
        assert points.dtype == np.float32 and points.shape[1] in (3, 4) and index.shape == (len(points), 2)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["sweeps"] == stage.figures.lidar_sweeps == 2
    assert stage.figures.lidar_range_m == pytest.approx(metrics["median_range_error_m"], abs=1e-5)
    assert 0 <= stage.figures.lidar_drop_accuracy <= 1 and stage.figures.lidar_chamfer_m > 0
    assert _no_temporaries(out / "street0")


def test_a_log_without_lidar_skips_the_lidar_stage_with_its_reason(run):
    manifest, out = run
    stage = _stage(manifest, "nolidar", "lidar")
    assert stage.status == "done" and stage.figures.skipped == NO_LIDAR and stage.figures.lidar_sweeps is None
    assert not (out / "nolidar" / "lidar").exists()
    assert next(r for r in manifest.logs if r.name == "nolidar").status == "done" and manifest.failed == 0
    row = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| nolidar "))
    assert f"skipped: {NO_LIDAR}" in row


def test_the_figures_land_in_the_manifest_the_summary_and_fleet_status(run, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # the table's every column on one line
    manifest, out = run
    on_disk = read_manifest(out)
    street = next(r for r in on_disk.logs if r.name == "street0")
    figures = street.figures()
    assert figures.meshes == _stage(manifest, "street0", "mesh").figures.meshes
    assert figures.lidar_range_m == _stage(manifest, "street0", "lidar").figures.lidar_range_m
    row = next(line for line in (out / "summary.md").read_text().splitlines() if line.startswith("| street0 "))
    assert f"| {figures.lidar_range_m:.3f} |" in row and f"| {figures.mesh_faces} |" in row
    assert "mesh faces" in (out / "summary.html").read_text()
    assert main(["fleet", "status", str(out)]) == 0
    table = capsys.readouterr().out
    assert "meshes" in table and "drop acc" in table and f"{figures.lidar_drop_accuracy:.3f}" in table


def test_a_rerun_reuses_both_stages_and_redoes_a_changed_mesh(logs, run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(run[1], out)
    stages = ["validate", {"reconstruct": DENSE}, {"mesh": {**MESH["mesh"], "format": "obj"}},
              {"lidar": {"sweeps": 2}}, {"mesh": {"name": "nobody", "actors": ["nobody"]}}]
    events = []
    manifest = run_fleet(load_spec(write_spec(logs, stages, logs=["street0/log"], name="again.yaml")), out,
                         LocalExecutor(), RunOptions(resume=True), on_event=events.append)
    started = [(e.log, e.stage) for e in events if e.kind == "start"]
    # the changed mesh stage runs again, and the stages after it; the other log is not in this spec's logs
    assert started == [("street0", "mesh"), ("street0", "lidar"), ("street0", "nobody")]
    files = [p.suffix for p in (out / "street0" / "mesh").iterdir() if p.suffix != ".json" and p.name[0] != "."]
    assert set(files) == {".obj"}  # the ply meshes were replaced as a whole
    nobody = _stage(manifest, "street0", "nobody")
    assert nobody.status == "failed" and nobody.attempts == 1 and "no actor 'nobody'" in nobody.error
    assert "\n" not in nobody.error and not (out / "street0" / "nobody").exists()
    assert _no_temporaries(out / "street0")


def test_lidar_without_a_reconstruction_renders_the_synthetic_log_exactly(logs, tmp_path):
    """The exact synthetic scene gives back the logged sweeps: zero range error, every drop right."""
    spec = write_spec(logs, ["lidar"], logs=["street0/log", "v1/log"], name="exact.yaml")
    manifest = run_fleet(load_spec(spec), tmp_path / "out", LocalExecutor())
    exact = _stage(manifest, "street0", "lidar").figures
    assert (exact.lidar_sweeps, exact.lidar_range_m, exact.lidar_drop_accuracy) == (3, 0.0, 1.0)
    log = load_log(logs / "street0" / "log")
    doc = json.loads((tmp_path / "out" / "street0" / "lidar" / "lidar.json").read_text())
    rendered = np.load(tmp_path / "out" / "street0" / "lidar" / doc["lidar"][1]["file_path"])[:, :3]
    recorded = log.lidar[1].load(log.root)[:, :3]
    assert rendered.shape == recorded.shape and np.allclose(_rows(rendered), _rows(recorded), atol=1e-4)
    v1 = _stage(manifest, "v1", "lidar")
    assert v1.status == "done" and "no sensor model" in v1.figures.skipped


@pytest.mark.parametrize("stages, field, says", [
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"resolution": 4}}], "stages[1].resolution", "greater than or equal"),
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"format": "stl"}}], "stages[1].format", "'glb', 'ply' or 'obj'"),
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"region": "0,0,0,1,1,1"}}], "stages[1].region", "add background"),
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"background": True}}], "stages[1].region", "with background: true"),
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"background": True, "region": "0,0,0,-1,1,1"}}], "stages[1].region",
     "each max must exceed its min"),
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"actors": []}}], "stages[1].background", "nothing to mesh"),
    ([{"reconstruct": RECONSTRUCT}, {"mesh": {"opacity": 1.5}}], "stages[1].opacity", "less than 1"),
    (["validate", "mesh"], "stages[1]", "mesh needs a reconstruct stage before it"),
    ([{"lidar": {"sweeps": 0}}], "stages[0].sweeps", "greater than or equal to 1"),
    ([{"lidar": {"beams": 64}}], "stages[0].beams", "unknown key (known: name, cpus"),
])
def test_bad_mesh_and_lidar_options_are_one_line(logs, stages, field, says):
    path = logs / "bad.yaml"
    path.write_text(yaml.safe_dump({"logs": ["street0/log"], "stages": stages}))
    with pytest.raises(InputFileError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: ") and says in message and "\n" not in message, message


def test_mesh_file_names_from_actor_ids_stay_in_the_stage_folder(tmp_path):
    from simrecon.fleet.mesh_stage import _file_stem

    for actor_id in ("../../evil", "/abs/path", "..", "a\\b", "", "car 1"):
        stem = _file_stem(actor_id)
        assert "/" not in stem and "\\" not in stem and stem not in ("", ".", "..")
        path = (tmp_path / f"{stem}.glb").resolve()
        assert path.parent == tmp_path.resolve()
