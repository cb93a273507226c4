"""Bad scenario files are refused with ONE line naming the file and the field."""

from __future__ import annotations

import pytest
import yaml

from simrecon.compose import ScenarioError, load_scenario, open_scene, parse_scenario
from simrecon.synth import GroundTruthScene


@pytest.fixture(scope="module")
def scene(synth_small):
    return GroundTruthScene.from_log(synth_small / "log")


CASES = [
    ({"actors": [{"id": "car_0", "remove": True}, {"id": "car_1"}, {"id": "car_9", "remove": True}]},
     "actors[2].id: no actor 'car_9' in the scene (actors: parked_0,"),
    ({"time": {"start": 0.0, "end": 5.0}}, "time.end: 5.0 s is outside the log"),
    ({"time": {"times": [0.1, -1.0]}}, "time.times[1]: -1.0 s is outside the log"),
    ({"cameras": ["front", {"name": "roof"}]}, "cameras[1].intrinsics: camera 'roof' is not in the log"),
    ({"cameras": [{"name": "roof", "intrinsics": {"w": 64, "h": 48, "hfov_deg": 90}}]},
     "cameras[0].mount: camera 'roof' is not in the log"),
    ({"cameras": [{"name": "roof", "intrinsics": {"w": 64, "h": 48}, "mount": {"position": [0, 0, 2]}}]},
     "cameras[0].intrinsics: give exactly one of fl_x (pixels) and hfov_deg"),
    ({"actors": [{"id": "car_0", "remov": True}]}, "actors[0].remov: unknown key 'remov' (known: id, source,"),
    ({"colour": "red"}, "colour: unknown key 'colour'"),
    ({"ego": {"lateral": "one metre"}}, "ego.lateral: Input should be a valid number"),
    ({"actors": [{"id": "car_0", "speed": -1}]}, "actors[0].speed: Input should be greater than 0"),
    ({"actors": [{"id": "car_9", "source": "car_1"}]}, "actors[0].trajectory: an inserted actor needs a trajectory"),
    ({"actors": [{"id": "car_9", "source": "bus_7", "trajectory": [{"t": 0, "position": [0, 0]}]}]},
     "actors[0].source: no actor 'bus_7' in the scene"),
    ({"actors": [{"id": "car_0", "source": "car_1", "trajectory": [{"t": 0, "position": [0, 0]}]}]},
     "actors[0].id: an inserted actor needs a new id"),
    ({"actors": [{"id": "car_1", "trajectory": [{"t": 0.2, "position": [0, 0]}, {"t": 0.1, "position": [1, 0]}]}]},
     "actors[0].trajectory[1].t: waypoint times must increase"),
    ({"actors": [{"id": "car_1", "trajectory": [{"t": 0.2}]}]},
     "actors[0].trajectory[0]: give either position (with optional yaw) or matrix"),
    ({"actors": [{"id": "car_0", "remove": True, "speed": 2}]}, "actors[0].remove: remove cannot be combined with"),
    ({"outputs": ["rgb", "normals"]}, "outputs[1]: Input should be 'rgb', 'depth', 'instance', 'semantic', 'boxes' or 'lidar'"),
    ({"cameras": [{"name": "front", "mount": {"matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]}}]},
     "cameras[0].mount.matrix: the rotation part is not a proper rotation"),
]


@pytest.mark.parametrize("edit,expected", CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_bad_scenario_one_line(tmp_path, synth_small, scene, edit, expected):
    doc = {"scene": str(synth_small / "log"), **edit}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(path, scene=scene)
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: "), msg
    assert expected in msg, msg


def test_yaml_syntax_and_shape_errors(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("scene: a\nactors: [\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: malformed YAML at line \d+ column \d+"):
        parse_scenario(p)
    p.write_text("- just\n- a list\n")
    with pytest.raises(ScenarioError, match="expected a mapping"):
        parse_scenario(p)
    p.write_text("time: {start: 0}\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: scene: missing required key"):
        parse_scenario(p)
    with pytest.raises(FileNotFoundError, match="no such scenario file"):
        parse_scenario(tmp_path / "missing.yaml")


def test_scene_errors(tmp_path, synth_small):
    p = tmp_path / "s.yaml"
    p.write_text("scene: nowhere\n")
    with pytest.raises(ScenarioError, match=r"s\.yaml: scene: .*nowhere: no such scene folder"):
        load_scenario(p)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "transforms.json").write_text('{"frames": []}')
    p.write_text("scene: plain\n")
    with pytest.raises(ScenarioError, match="a drive log, not a scene: reconstruct it first"):
        load_scenario(p)
    # a synthetic drive is a scene, as OUT or OUT/log; relative to the scenario file
    assert open_scene(synth_small).log.root == open_scene(synth_small / "log").log.root
