"""``simrecon export SCENARIO --format mcap``: read the file back with the mcap reader and check topics,
message counts, log times, the transforms and an actor box's pose against the scenario's plan."""

from __future__ import annotations

import io

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("foxglove")
pytest.importorskip("mcap_protobuf")

from mcap.reader import make_reader  # noqa: E402
from mcap_protobuf.decoder import DecoderFactory  # noqa: E402

from simrecon.cli.main import main  # noqa: E402
from simrecon.compose import load_scenario  # noqa: E402
from simrecon.data.geometry import quat_to_matrix  # noqa: E402
from simrecon.export import export, verify  # noqa: E402
from simrecon.synth import GroundTruthScene  # noqa: E402

TIMES = [0.0, 0.2]


@pytest.fixture(scope="module")
def scenario(synth_small, tmp_path_factory):
    doc = {"scene": str(synth_small / "log"), "cameras": ["front", {"name": "front_left", "scale": 0.5}],
           "time": {"times": TIMES}, "outputs": ["rgb", "depth", "instance", "boxes"],
           "actors": [{"id": "car_0", "remove": True}]}
    p = tmp_path_factory.mktemp("mcap") / "scenario.yaml"
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


@pytest.fixture(scope="module")
def exported(scenario, synth_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("mcap_out") / "run"
    res = export(scenario, "mcap", out, scene=GroundTruthScene.from_log(synth_small / "log"))
    assert res.frames == 4 and verify(out) == []
    return out


def _messages(path):
    with open(path, "rb") as fh:
        reader = make_reader(fh, decoder_factories=[DecoderFactory()])
        return [(ch.topic, schema.name, msg.log_time, proto)
                for schema, ch, msg, proto in reader.iter_decoded_messages()]


def _pose(p) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]))
    out[:3, 3] = [p.position.x, p.position.y, p.position.z]
    return out


def test_topics_counts_and_times(exported):
    msgs = _messages(exported / "scenario.mcap")
    counts: dict[str, int] = {}
    for topic, _, _, _ in msgs:
        counts[topic] = counts.get(topic, 0) + 1
    per_time = {"/tf": 1, "/actors": 1}
    for cam in ("front", "front_left"):
        per_time.update({f"/camera/{cam}/image": 1, f"/camera/{cam}/calibration": 1, f"/camera/{cam}/depth": 1,
                         f"/camera/{cam}/instance": 1})
    assert counts == {**{k: v * len(TIMES) for k, v in per_time.items()}, "/ego/path": 1}
    schemas = {topic: schema for topic, schema, _, _ in msgs}
    assert schemas["/camera/front/image"] == "foxglove.CompressedImage"
    assert schemas["/actors"] == "foxglove.SceneUpdate" and schemas["/tf"] == "foxglove.FrameTransforms"
    times = sorted({t for topic, _, t, _ in msgs if topic == "/camera/front/image"})
    assert times == [round(t * 1e9) for t in TIMES]
    image = next(p for topic, _, t, p in msgs if topic == "/camera/front_left/image" and t == times[1])
    assert image.format == "jpeg" and image.frame_id == "front_left"
    assert Image.open(io.BytesIO(image.data)).size == (80, 48)  # the half-size camera
    assert image.timestamp.seconds * 10**9 + image.timestamp.nanos == times[1]


def test_boxes_transforms_and_calibration_match_the_plan(exported, scenario, synth_small):
    plan = load_scenario(scenario, scene=GroundTruthScene.from_log(synth_small / "log"))
    msgs = _messages(exported / "scenario.mcap")
    t = TIMES[1]
    update = next(p for topic, _, lt, p in msgs if topic == "/actors" and lt == round(t * 1e9))
    entities = {e.id: e for e in update.entities}
    assert "car_0" not in entities  # removed by the scenario
    present = [a for a in plan.actors if a.pose_at(t) is not None]
    assert sorted(entities) == sorted(a.id for a in present) and len(present) >= 3
    actor = present[0]
    cube = entities[actor.id].cubes[0]
    assert np.abs(_pose(cube.pose) - actor.pose_at(t)).max() < 1e-6
    assert [cube.size.x, cube.size.y, cube.size.z] == pytest.approx(list(actor.size))
    tf = next(p for topic, _, lt, p in msgs if topic == "/tf" and lt == round(t * 1e9))
    links = {(x.parent_frame_id, x.child_frame_id): x for x in tf.transforms}
    ego = links[("world", "ego")]
    assert np.allclose([ego.translation.x, ego.translation.y, ego.translation.z], plan.ego_fn(t)[:3, 3])
    # ego -> camera (optical axes) composed with world -> ego gives the frame record's camera pose
    cam = links[("ego", "front")]
    rot = quat_to_matrix(np.array([cam.rotation.w, cam.rotation.x, cam.rotation.y, cam.rotation.z]))
    optical_z = plan.ego_fn(t)[:3, :3] @ rot[:, 2]
    front = next(c for c in plan.cameras if c.name == "front")
    c2w = plan.ego_fn(t) @ front.cam_to_vehicle
    assert np.allclose(optical_z, -c2w[:3, 2], atol=1e-9)  # optical +z looks along OpenGL -z
    calib = next(p for topic, _, _, p in msgs if topic == "/camera/front/calibration")
    assert calib.K[2] == pytest.approx(front.intrinsics.cx - 0.5) and calib.width == front.intrinsics.w


def test_depth_is_millimetres(exported):
    msgs = _messages(exported / "scenario.mcap")
    depth = next(p for topic, _, _, p in msgs if topic == "/camera/front/depth")
    arr = np.frombuffer(depth.data, "<u2").reshape(depth.height, depth.width)
    assert depth.encoding == "16UC1" and 1000 < np.median(arr[arr > 0]) < 65535


def test_instance_masks_are_the_composed_ones(exported, scenario, synth_small, tmp_path):
    """/camera/<cam>/instance: the composer's instance ids (the simrecon export's instance PNGs), pixel for pixel."""
    export(scenario, "simrecon", tmp_path / "s", scene=GroundTruthScene.from_log(synth_small / "log"))
    masks = [p for topic, _, _, p in _messages(exported / "scenario.mcap") if topic == "/camera/front/instance"]
    assert len(masks) == len(TIMES)
    for k, m in enumerate(masks):
        got = np.frombuffer(m.data, "<u2").reshape(m.height, m.width)
        want = np.array(Image.open(sorted((tmp_path / "s" / "instance" / "front").glob("*.png"))[k]))
        assert m.encoding == "16UC1" and got.max() > 0 and np.array_equal(got, want)


def test_cli_export_mcap(scenario, tmp_path, capsys):
    assert main(["export", str(scenario), "--format", "mcap", "-o", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "scenario.mcap").is_file()
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["manifest.json", "scenario.mcap", "scenario.yaml"]


@pytest.fixture(scope="module")
def drive_run(tmp_path_factory):
    from simrecon.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("mcap_drive")
    log = generate(root / "street", SynthConfig(seconds=2.0, width=32, height=24, seed=0, lidar_beams=4,
                                                lidar_azimuths=32, ground_truth=False, antialias=1))
    run = root / "run"
    assert main(["drive", str(log), "--policy", "replay", "-o", str(run), "--frames", "--width", "16",
                 "--height", "12", "--dt", "0.2"]) == 0
    return run


def test_closed_loop_run_as_mcap(drive_run, tmp_path, capsys):
    import json

    out = tmp_path / "run.mcap"
    assert main(["export-run", str(drive_run), "-o", str(out)]) == 0
    traj = json.loads((drive_run / "trajectory.json").read_text())
    events = json.loads((drive_run / "events.json").read_text())
    msgs = _messages(out)
    counts: dict[str, int] = {}
    for topic, _, _, _ in msgs:
        counts[topic] = counts.get(topic, 0) + 1
    n = len(traj["steps"])
    assert counts == {"/tf": n, "/ego/box": n, "/actors": n, "/camera/front/image": n, "/ego/path": 1,
                      "/events": len(events)}
    step = traj["steps"][3]
    update = next(p for topic, _, t, p in msgs if topic == "/actors" and t == round(step["time"] * 1e9))
    first = step["actors"][0]
    cube = next(e for e in update.entities if e.id == first["id"]).cubes[0]
    assert np.abs(_pose(cube.pose) - np.asarray(first["pose"])).max() < 1e-6
    log = next(p for topic, _, _, p in msgs if topic == "/events")
    assert log.name == events[0]["kind"]
    assert main(["export-run", str(drive_run), "-o", str(out)]) == 2  # exists: refused without --force
    assert "already exists" in capsys.readouterr().err
    assert main(["export-run", str(tmp_path), "-o", str(tmp_path / "x.mcap")]) == 2  # not a run folder
    assert "not a run folder" in capsys.readouterr().err and not (tmp_path / "x.mcap").exists()


def test_preview_from_the_file_alone_puts_boxes_where_the_log_projects_them(exported, scenario, synth_small):
    """Boxes drawn from the MCAP's own /tf, calibration and /actors land where the drive-log camera model
    projects the plan's actors (to 1e-6 px): the file's frames and conventions agree with ours."""
    from simrecon.data.model import Frame
    from simrecon.export.mcap_preview import preview

    plan = load_scenario(scenario, scene=GroundTruthScene.from_log(synth_small / "log"))
    shot = preview(exported / "scenario.mcap", "front", 1)
    assert shot.time_ns == round(TIMES[1] * 1e9) and shot.image.shape == (96, 160, 3)
    front = next(c for c in plan.cameras if c.name == "front")
    frame = Frame("x", plan.ego_fn(TIMES[1]) @ front.cam_to_vehicle, front.intrinsics)
    assert len(shot.centres) >= 2
    for actor_id, (u, v) in shot.centres.items():
        actor = next(a for a in plan.actors if a.id == actor_id)
        uv, depth = frame.project(actor.pose_at(TIMES[1])[None, :3, 3])
        assert depth[0] > 0 and np.allclose(uv[0], [u + 0.5, v + 0.5], atol=1e-6)


def test_drive_mcap_writes_the_run_as_mcap_beside_it(drive_run, tmp_path):
    """simrecon drive --mcap: RUN/run.mcap, the same messages export-run writes."""
    run = tmp_path / "run"
    log = drive_run.parent / "street" / "log"
    assert main(["drive", str(log), "--policy", "replay", "-o", str(run), "--frames", "--width", "16",
                 "--height", "12", "--dt", "0.2", "--mcap"]) == 0
    ref = tmp_path / "ref.mcap"
    assert main(["export-run", str(drive_run), "-o", str(ref)]) == 0
    ours = [(topic, t) for topic, _, t, _ in _messages(run / "run.mcap")]
    assert ours and ours == [(topic, t) for topic, _, t, _ in _messages(ref)]


def test_lidar_sweeps_become_point_clouds_in_the_sensor_frame(synth_small, tmp_path):
    """outputs [rgb, lidar]: one foxglove.PointCloud per time on /lidar/lidar, in the sensor's frame (linked to
    the ego on /tf), with the same points, intensity and instance ids as the simrecon export of the sweep."""
    doc = {"scene": str(synth_small / "log"), "cameras": ["front"], "time": {"times": TIMES},
           "outputs": ["rgb", "lidar"], "actors": [{"id": "car_0", "remove": True}]}
    path = tmp_path / "lidar.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    scene = GroundTruthScene.from_log(synth_small / "log")
    res = export(path, "mcap", tmp_path / "m", scene=scene)
    assert res.sweeps == len(TIMES) and verify(tmp_path / "m") == []
    export(path, "simrecon", tmp_path / "s", scene=scene)
    clouds = [(t, p) for topic, _, t, p in _messages(tmp_path / "m" / "scenario.mcap") if topic == "/lidar/lidar"]
    assert [t for t, _ in clouds] == [round(x * 1e9) for x in TIMES]
    for k, (_, cloud) in enumerate(clouds):
        assert cloud.frame_id == "lidar" and [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "instance"]
        got = np.frombuffer(cloud.data, "<f4").reshape(-1, 5)
        want = np.load(tmp_path / "s" / "lidar" / f"{k:06d}.npy")
        inst = np.load(tmp_path / "s" / "lidar" / f"{k:06d}.instance.npy")
        assert np.array_equal(got[:, :want.shape[1]], want) and np.array_equal(got[:, 4], inst)
    links = {(tf.parent_frame_id, tf.child_frame_id) for topic, _, _, p in _messages(tmp_path / "m" / "scenario.mcap")
             if topic == "/tf" for tf in p.transforms}
    assert ("ego", "lidar") in links
