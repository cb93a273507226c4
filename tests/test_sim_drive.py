"""Closed-loop drives on the exact synthetic street: the built-in drivers, collisions at the analytic contact
time with the right actor, IDM braking, policy failures, and the ``simrecon drive`` command's files and errors."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from simrecon.cli.main import main
from simrecon.sim import SimConfig, drive
from simrecon.sim.geometry import Box2D
from simrecon.synth import SynthConfig, generate

STREET = SynthConfig(seconds=3.0, width=32, height=24, seed=0, lidar_beams=4, lidar_azimuths=32, ground_truth=False,
                     antialias=1)
CAR_HALF = (2.2, 0.9)  # the synthetic street's cars: 4.4 x 1.8 m
PARKED_NEAR_Y = 5.3 - 0.9  # the parked cars' kerb-side faces nearest the road


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("sim_drive") / "street", STREET)


def scenario(tmp_path: Path, log_dir: Path, name: str = "scenario.yaml", **doc) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"scene": str(log_dir), "cameras": ["front"], **doc}, sort_keys=False))
    return path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class Swerve:
    """Steer left at 0.5 rad/s for ``n`` steps, back to straight over ``n`` steps, then hold course and speed."""

    needs_images = False

    def __init__(self, n: int = 5):
        self.n = n

    def reset(self, world):
        self.world = world

    def act(self, obs):
        k = self.world.record.step
        return [0.0, 0.5 if k < self.n else (-0.5 if k < 2 * self.n else 0.0)]


def test_replay_drives_the_log_without_collision(log_dir):
    result = drive(log_dir, "replay", None)
    m = result.metrics
    assert not m.collision and not m.off_road and m.route_completion >= 0.95 and m.ended == "route_complete"
    assert m.score == pytest.approx(1.0) and m.max_long_accel < 0.1
    ego = result.world.plan.log.ego
    for rec in result.world.history:  # the logged straight drive, reproduced
        assert np.allclose(rec.pose[:3, 3], ego.pose_at(rec.time)[:3, 3], atol=1e-6)


def test_steering_into_a_parked_car_reports_it_at_the_contact_time(log_dir):
    cfg = SimConfig()
    cfg.world.duration_s = 5.0
    policy = Swerve(5)
    result = drive(log_dir, policy, None, cfg)
    world, m = result.world, result.metrics
    # after 2n steps the wheels are straight: the box translates at constant velocity; its leftmost corner is the
    # first to reach the parked cars' face at y = 4.4
    start = world.history[2 * policy.n]
    assert start.state.steer == pytest.approx(0.0, abs=1e-12) and start.state.accel == 0.0
    corners = Box2D.from_pose(start.box_pose, world.vehicle.size).corners()
    lead = corners[np.argmax(corners[:, 1])]
    vx, vy = start.state.speed * math.cos(start.state.yaw), start.state.speed * math.sin(start.state.yaw)
    assert lead[1] < PARKED_NEAR_Y and vy > 0
    dt_contact = (PARKED_NEAR_Y - lead[1]) / vy
    t_contact = start.time + dt_contact
    x_contact = lead[0] + vx * dt_contact
    hit = [a.id for a in world.plan.log.actors if a.id.startswith("parked_")
           and abs(a.track.poses[0][0, 3] - x_contact) < CAR_HALF[0]]
    assert len(hit) == 1, "the construction must land the corner on one parked car's face"
    assert m.collision and m.collision_actor == hit[0] and m.ended == "collision"
    assert t_contact <= m.collision_time < t_contact + world.dt + 1e-9
    assert m.off_road and m.off_road_time < m.collision_time and m.score == 0.0
    events = [e for e in result.events if e.kind == "collision"]
    assert [(e.actor, e.time) for e in events] == [(hit[0], m.collision_time)]


def test_driving_straight_at_a_parked_car_hits_it_at_the_closed_form_time(tmp_path, log_dir):
    from simrecon.data.io import load_log

    car = load_log(log_dir).actor("parked_1")
    x = float(car.track.poses[0][0, 3])
    # the scenario's ego faces the kerb: the route (and the start) runs at 9.375 m/s towards +y
    path = scenario(tmp_path, log_dir, ego={"trajectory": [{"t": 0.0, "position": [x, -1.75], "yaw": 90.0},
                                                           {"t": 0.4, "position": [x, 2.0], "yaw": 90.0}]},
                    time={"start": 0.0, "end": 0.4})
    result = drive(path, lambda obs: [0.0, 0.0], None)
    v = 3.75 / 0.4
    front = -1.75 + 1.4 + 2.3  # rear axle + box centre offset + half the ego's length (VehicleConfig)
    t_contact = (PARKED_NEAR_Y - front) / v
    m = result.metrics
    assert m.collision_actor == "parked_1" and t_contact <= m.collision_time < t_contact + 0.1
    assert m.min_ttc == 0.0 and not m.ttc_ok


def test_lane_follow_completes_the_route_without_collision(log_dir):
    m = drive(log_dir, "lane-follow", None).metrics
    assert not m.collision and not m.off_road and m.route_completion >= 0.95 and m.ended == "route_complete"


def test_lane_follow_brakes_for_a_slower_car_that_replay_runs_into(tmp_path, log_dir):
    path = scenario(tmp_path, log_dir, actors=[{"id": "lead_car", "source": "car_1", "trajectory": [
        {"t": 0.0, "position": [14.0, -1.75]}, {"t": 2.9, "position": [22.7, -1.75]}]}])  # 3 m/s in the ego lane
    replay = drive(path, "replay", None).metrics
    assert replay.collision and replay.collision_actor == "lead_car"
    # the ego front (3.7 m ahead of the rear axle) meets the lead's rear (14 - 2.2 + 3 t) at 8 t: t = 1.62 s
    assert 1.62 <= replay.collision_time < 1.72
    result = drive(path, "lane-follow", None)
    assert not result.metrics.collision
    following = [r for r in result.world.history if any(a.id == "lead_car" for a in r.actors)]
    gaps = [next(a for a in r.actors if a.id == "lead_car").pose[0, 3] - 2.2 - (r.state.x + 3.7) for r in following]
    assert min(gaps) > 2.0  # IDM's standstill gap
    assert following[-1].state.speed < 3.5  # settled behind the 3 m/s car (which leaves the scene at 2.9 s)


def test_idle_brakes_to_a_stop(log_dir):
    result = drive(log_dir, "idle", None)
    m, last = result.metrics, result.world.history[-1]
    assert last.state.speed == 0.0 and m.ended == "time"
    assert m.distance_m == pytest.approx(8.0 ** 2 / (2 * 3.0), abs=1e-9)


def test_a_policy_that_raises_or_returns_nan_ends_with_policy_error(log_dir):
    def boom(obs):
        raise RuntimeError("boom\nsecond line")

    m = drive(log_dir, boom, None).metrics
    assert m.ended == "policy_error" and m.policy_error == "RuntimeError: boom" and m.steps == 0
    calls = []

    def late_nan(obs):
        calls.append(obs["ego"][0])
        return [0.0, 0.0] if len(calls) < 4 else [float("nan"), 0.0]

    result = drive(log_dir, late_nan, None)
    assert result.metrics.steps == 3 and "not finite" in result.metrics.policy_error
    assert result.events[-1].kind == "policy_error" and result.events[-1].step == 3


def test_cli_writes_the_run(capsys, tmp_path, log_dir):
    run = tmp_path / "run"
    code, out, err = cli(capsys, "drive", log_dir, "--policy", "replay", "-o", run, "--frames", "--width", 16,
                         "--height", 12, "--dt", 0.2)
    assert code == 0, err
    assert "no collision" in err and "score 1.000" in err
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["collision"] is False and metrics["route_completion"] >= 0.95
    assert metrics["run"]["policy"] == "replay" and metrics["run"]["cameras"] == ["front"]
    traj = json.loads((run / "trajectory.json").read_text())
    assert traj["dt"] == 0.2 and len(traj["steps"]) == metrics["steps"] + 1
    step = traj["steps"][3]
    assert np.asarray(step["ego_pose"]).shape == (4, 4) and step["speed"] == pytest.approx(8.0)
    assert step["ego_box"]["size"] == [4.6, 1.9, 1.6]
    assert {a["id"] for a in step["actors"]} >= {"parked_0", "car_1"} and len(step["actors"][0]["size"]) == 3
    assert json.loads((run / "events.json").read_text())[-1]["kind"] == "route_complete"
    frames = sorted((run / "frames" / "front").glob("*.png"))
    assert len(frames) == len(traj["steps"]) and Image.open(frames[0]).size == (16, 12)
    video = Image.open(run / "video.gif")  # every step: the camera (96 high) beside the bird's-eye panel
    assert video.n_frames == len(traj["steps"]) and video.height == 96 and video.width > 128
    video.seek(3)
    shown = np.asarray(video.convert("RGB"))[:, :128].astype(int)  # GIF: 256 colours, so not bit-exact
    assert np.abs(shown - np.asarray(Image.open(frames[3]).convert("RGB").resize((128, 96), Image.NEAREST))).mean() < 6
    page = (run / "report.html").read_text()
    assert "score 1.000" in page and "route_complete" in page and "<svg" in page and "video.gif" in page
    code, _, err = cli(capsys, "drive", log_dir, "--policy", "idle", "-o", run)
    assert code == 2 and "already exists" in err
    code, _, err = cli(capsys, "drive", log_dir, "--policy", "idle", "-o", run, "--force")
    assert code == 0 and not (run / "frames").exists() and not (run / "video.gif").exists()
    assert "video.gif" not in (run / "report.html").read_text()


def test_cli_user_policies_and_their_failures(capsys, tmp_path, log_dir):
    policy = tmp_path / "my_policy.py"
    policy.write_text("import numpy as np\n"
                      "def straight(obs):\n    assert obs['front/rgb'].shape == (24, 32, 3)\n    return np.zeros(2)\n"
                      "class Boom:\n    def reset(self):\n        self.n = 0\n"
                      "    def act(self, obs):\n        self.n += 1\n"
                      "        if self.n > 2:\n            raise ValueError('no idea where to go')\n"
                      "        return [0.0, 0.0]\n")
    code, _, err = cli(capsys, "drive", log_dir, "--policy", f"{policy}:straight", "-o", tmp_path / "a")
    assert code == 0, err
    code, _, err = cli(capsys, "drive", log_dir, "--policy", f"{policy}:Boom", "-o", tmp_path / "b")
    assert code == 0 and "policy error: ValueError: no idea where to go" in err
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["ended"] == "policy_error" and metrics["steps"] == 2
    events = json.loads((tmp_path / "b" / "events.json").read_text())
    assert events == [{"kind": "policy_error", "time": pytest.approx(0.2), "step": 2, "actor": None,
                       "message": "ValueError: no idea where to go"}]


@pytest.mark.parametrize("args, message", [
    (["--policy", "fly"], "--policy 'fly': expected replay, lane-follow, idle"),
    (["--policy", "no_such_module_xyz:f"], "cannot import no_such_module_xyz"),
    (["--policy", "json:no_such_attr"], "json has no attribute 'no_such_attr'"),
    (["--policy", "math:pi"], "is neither callable nor has an act(obs) method"),
    (["--policy", "replay", "--camera", "rear"], "--camera rear: no such camera"),
    (["--policy", "replay", "--dt", "nan"], "--dt: must be a finite number > 0"),
    (["--policy", "replay", "--set", "world.road_margin=-1"], "world.road_margin: must be a positive number"),
    (["--policy", "replay", "--set", "vehicle.wheelbas=3"], "did you mean vehicle.wheelbase"),
])
def test_cli_refuses_bad_input_with_exit_2_and_writes_nothing(capsys, tmp_path, log_dir, args, message):
    code, _, err = cli(capsys, "drive", log_dir, "-o", tmp_path / "run", *args)
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_cli_never_replaces_a_folder_it_did_not_write(capsys, tmp_path, log_dir):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    code, _, err = cli(capsys, "drive", log_dir, "--policy", "idle", "-o", mine, "--force")
    assert code == 2 and "only folders that simrecon wrote" in err
    assert (mine / "notes.txt").read_text() == "keep me"
    code, _, err = cli(capsys, "drive", tmp_path / "nowhere", "--policy", "idle", "-o", tmp_path / "r")
    assert code == 2 and "no such file or folder" in err


AGENT = """
import json, math, sys
for line in sys.stdin:
    msg = json.loads(line)
    if msg["type"] == "reset":
        assert msg["protocol"] == 1 and msg["dt"] == 0.1, msg
        continue
    BEHAVIOUR
"""
FOLLOW = """speed, steer = msg["ego"][0], msg["ego"][3]
    x, y = msg["route"][3]
    for key, path in msg["images"].items():
        assert open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n", key
    print(json.dumps({"action": [0.5 * (8.0 - speed), (math.atan(2 * 2.8 * y / (x * x + y * y)) - steer) / 0.1]}),
          flush=True)"""


def exec_policy(tmp_path: Path, behaviour: str) -> str:
    path = tmp_path / f"agent_{abs(hash(behaviour))}.py"
    path.write_text(AGENT.replace("BEHAVIOUR", behaviour))
    return f"exec:{sys.executable} {path}"


def test_an_exec_policy_drives_like_the_same_code_in_process(tmp_path, log_dir):
    """The JSON-lines protocol carries the observation (route, ego state, images as files) and the actions: a
    pure-pursuit agent in another process completes the route."""
    cfg = SimConfig()
    cfg.sensors.width, cfg.sensors.height = 16, 12
    result = drive(log_dir, exec_policy(tmp_path, FOLLOW), None, cfg)
    m = result.metrics
    assert m.policy_error is None and not m.collision and m.route_completion >= 0.95, m
    assert m.steps >= 20


@pytest.mark.parametrize("behaviour, message", [
    ("print('not json', flush=True)", "not JSON"),
    ("print(json.dumps({'action': [1.0]}), flush=True)", "shape"),
    ("sys.exit(3)", "exited (code 3)"),
    ("import time; time.sleep(30)", "no answer within 1 s"),
])
def test_an_exec_policy_that_misbehaves_ends_the_run_with_policy_error(tmp_path, log_dir, behaviour, message):
    cfg = SimConfig()
    cfg.exec.answer_timeout_s, cfg.exec.exit_wait_s, cfg.exec.images = 1.0, 0.5, False
    m = drive(log_dir, exec_policy(tmp_path, behaviour), None, cfg).metrics
    assert m.ended == "policy_error" and message in m.policy_error, m.policy_error


def test_an_exec_policy_for_a_missing_program_is_refused(capsys, tmp_path, log_dir):
    code, _, err = cli(capsys, "drive", log_dir, "--policy", "exec:no-such-program-xyz --fast", "-o", tmp_path / "r")
    assert code == 2 and "no such program 'no-such-program-xyz'" in err and not (tmp_path / "r").exists()


def test_a_scenarios_drive_section_sets_the_run_and_the_command_line_wins(capsys, tmp_path, log_dir):
    path = scenario(tmp_path, log_dir, drive={"world": {"dt": 0.2, "road_polygons": [[[30, 6], [40, 6], [35, 12]]]},
                                              "sensors.route_points": 5})
    result = drive(path, "replay", None)
    world = result.world
    assert world.dt == 0.2 and len(world.history) > 2 and world.cfg.road_polygons
    assert world.area.contains([[35.0, 8.0]])[0] and not world.area.contains([[35.0, 30.0]])[0]
    shapes = []

    def look(obs):
        shapes.append(obs["route"].shape)
        return [0.0, 0.0]

    drive(path, look, None)
    assert shapes and set(shapes) == {(5, 2)}  # sensors.route_points from the scenario
    run = tmp_path / "run"
    code, _, err = cli(capsys, "drive", path, "--policy", "replay", "-o", run, "--dt", 0.1)
    assert code == 0, err
    assert json.loads((run / "trajectory.json").read_text())["dt"] == 0.1
    assert json.loads((run / "metrics.json").read_text())["run"]["config"]["sensors"]["route_points"] == 5


@pytest.mark.parametrize("section, message", [
    ({"world": {"dtt": 0.1}}, "drive: no such setting 'world.dtt'"),
    ({"world.dt": "fast"}, "drive world.dt"),
    ({"world.dt": -1}, "drive: world.dt: must be a positive number"),
    ({"world.road_polygons": [[[0, 0], [1, 1]]]}, "drive: world.road_polygons[0]: expected at least 3"),
])
def test_a_bad_drive_section_names_the_file_and_the_setting(capsys, tmp_path, log_dir, section, message):
    path = scenario(tmp_path, log_dir, drive=section)
    code, _, err = cli(capsys, "drive", path, "--policy", "replay", "-o", tmp_path / "run")
    assert code == 2 and str(path) in err and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
