"""``DriveEnv`` on the exact synthetic street: a valid Gymnasium environment, registered as simrecon/Drive-v0,
observing through the scene at the simulated pose (the logged pose renders the logged image), deterministic
under a seed."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium")

from PIL import Image  # noqa: E402

import simrecon.sim  # noqa: E402,F401  (registers the environment)
from simrecon.sim import SimConfig  # noqa: E402
from simrecon.sim.env import DriveEnv  # noqa: E402
from simrecon.sim.policies import Replay  # noqa: E402
from simrecon.synth import SynthConfig, generate  # noqa: E402

STREET = SynthConfig(seconds=2.0, width=32, height=24, seed=0, lidar_beams=4, lidar_azimuths=32, antialias=1)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("sim_env") / "street", STREET)


def test_env_checker_passes_on_the_exact_synthetic_street(log_dir):
    from gymnasium.utils.env_checker import check_env

    env = DriveEnv(log_dir, outputs=["rgb", "depth", "instance"], render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # advice about unbounded boxes and the action's range
        check_env(env, skip_render_check=False)
    space = env.observation_space
    assert set(space) == {"front/rgb", "front/depth", "front/instance", "ego", "route"}
    assert space["front/rgb"].shape == (24, 32, 3) and space["front/rgb"].dtype == np.uint8
    assert env.action_space.shape == (2,)


def test_gymnasium_make_with_options(log_dir):
    env = gymnasium.make("simrecon/Drive-v0", scenario=str(log_dir), cameras=["front", "front_left"], width=16,
                         height=12, dt=0.2, route_points=4)
    obs, info = env.reset(seed=0)
    assert obs["front/rgb"].shape == (12, 16, 3) and obs["front_left/rgb"].shape == (12, 16, 3)
    assert obs["route"].shape == (4, 2) and info["progress"] == 0.0 and info["on_road"]
    # on the straight logged path the route lies ahead on the ego's x axis, 2 m apart
    assert np.allclose(obs["route"], [[2, 0], [4, 0], [6, 0], [8, 0]], atol=1e-5)
    assert obs["ego"][0] == pytest.approx(8.0)  # the logged speed
    _, _, _, _, info = env.step(np.zeros(2, np.float32))
    assert info["time"] == pytest.approx(0.2)
    env.close()


def test_the_camera_sees_what_the_log_recorded_at_the_logged_pose(log_dir):
    """Replay reproduces the logged straight drive, so the observed front camera is the logged image, frame by
    frame: the camera pose is the simulated ego pose composed with the rig's mount, actors at the current time."""
    env = DriveEnv(log_dir)
    obs, _ = env.reset(seed=0)
    driver = Replay()
    driver.reset(env.world)
    frames = {round(f.timestamp, 6): f for f in env.plan.log.cameras["front"]}
    for k in range(6):
        t = round(env.world.time, 6)
        logged = np.asarray(Image.open(log_dir / frames[t].file_path))
        assert np.array_equal(obs["front/rgb"], logged), f"t={t}"
        obs, *_ = env.step(driver.act(obs))
    assert np.allclose(env.world.record.pose, env.plan.log.ego.pose_at(0.6), atol=1e-9)


def test_a_shifted_scenario_observes_the_generators_shifted_ground_truth(log_dir, tmp_path):
    """Closed loop on a scenario whose ego path is 1 m to the left: replay tracks it, and the observed front camera
    is the generator's own render of that shift (gt/ego_shift_left_1m), made without the simulator."""
    import json

    import yaml

    path = tmp_path / "shift.yaml"
    path.write_text(yaml.safe_dump({"scene": str(log_dir), "cameras": ["front"], "ego": {"lateral": 1.0}}))
    env = DriveEnv(path)
    obs, _ = env.reset(seed=0)
    driver = Replay()
    driver.reset(env.world)
    gt_dir = log_dir.parent / "gt" / "ego_shift_left_1m"
    gt = {round(f["timestamp"], 6): f for f in json.loads((gt_dir / "cameras.json").read_text())["frames"]}
    for k in range(8):
        expected = np.asarray(Image.open(gt_dir / gt[round(env.world.time, 6)]["file_path"]))
        assert np.mean(obs["front/rgb"] == expected) > 0.99, f"t={env.world.time}"
        obs, *_ = env.step(driver.act(obs))
    assert env.world.record.pose[1, 3] == pytest.approx(-0.75, abs=1e-6)  # the logged lane is at y = -1.75


def test_same_seed_same_episode_other_seed_other_start(log_dir):
    def episode(seed):
        cfg = SimConfig()
        cfg.world.start_noise_lateral, cfg.world.start_noise_yaw = 0.3, 0.02
        env = DriveEnv(log_dir, images=False, config=cfg)
        obs, _ = env.reset(seed=seed)
        out = [obs["route"].copy()]
        rng = np.random.default_rng(7)
        for _ in range(8):
            obs, reward, *_ = env.step(env.action_space.low + rng.random(2) * (env.action_space.high -
                                                                              env.action_space.low))
            out += [obs["ego"].copy(), np.array([reward])]
        return np.concatenate([o.ravel() for o in out]), env.world.record.pose.copy()

    a, pose_a = episode(3)
    b, pose_b = episode(3)
    c, _ = episode(4)
    assert np.array_equal(a, b) and np.array_equal(pose_a, pose_b)
    assert not np.array_equal(a, c)


def test_bad_actions_are_refused_and_large_ones_clipped(log_dir):
    env = DriveEnv(log_dir, images=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not finite"):
        env.step([np.nan, 0.0])
    with pytest.raises(ValueError, match="shape"):
        env.step([1.0, 0.0, 0.0])
    env.step([1e6, 0.0])
    assert env.world.state.accel == pytest.approx(env.cfg.vehicle.max_accel)


def test_the_episode_ends_with_metrics_in_info(log_dir):
    env = DriveEnv(log_dir, images=False, duration_s=0.5)
    env.reset(seed=0)
    done, steps, total = False, 0, 0.0
    while not done:
        _, reward, terminated, truncated, info = env.step([0.0, 0.0])
        done, steps, total = terminated or truncated, steps + 1, total + reward
    assert steps == 5 and truncated and not terminated
    assert info["metrics"]["ended"] == "time" and info["metrics"]["collision"] is False
    assert total == pytest.approx(4.0)  # 1 per metre of progress: 0.5 s at 8 m/s


def test_bad_options_are_one_line_errors(log_dir):
    with pytest.raises(ValueError, match="--camera rear: no such camera"):
        DriveEnv(log_dir, cameras=["rear"])
    with pytest.raises(ValueError, match="action: expected one of rate, angle"):
        DriveEnv(log_dir, action="torque")
    with pytest.raises(ValueError, match="sensors.outputs"):
        DriveEnv(log_dir, outputs=["lidar"])
    with pytest.raises(ValueError, match="world.dt"):
        DriveEnv(log_dir, dt=-1.0)


def test_the_env_runs_on_a_reconstructed_neural_scene(xs_log, tmp_path):
    """The same environment on a (2-step) reconstruction: the scene is used only through RenderableScene."""
    from helpers import tiny_files

    from simrecon.train import reconstruct

    reconstruct(xs_log, tmp_path / "scene", tiny_files())
    cfg = SimConfig()
    cfg.world.end_on_route_complete = False  # the 0.2 s log's route is 1.6 m long
    env = DriveEnv(tmp_path / "scene", config=cfg, width=16, height=12, outputs=["rgb", "depth", "instance"],
                   duration_s=0.3)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs["front/rgb"].shape == (12, 16, 3)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step([0.0, 0.0])
        assert env.observation_space.contains(obs)
        done = terminated or truncated
    assert truncated and info["metrics"]["steps"] == 3 and info["metrics"]["collision"] is False


def test_the_log_lidar_is_observed_from_the_simulated_ego(tmp_path):
    """sensors.lidar: the log's sensor at its mount on the ego; with the ego where it was logged at the first time,
    the observed ranges are the generator's sweep (the exact scene renders lidar as the generator does)."""
    from simrecon.data import load_log
    from simrecon.sim import SimConfig, Sensors, World, open_plan
    from simrecon.synth import SynthConfig, generate

    log_dir = generate(tmp_path / "street", SynthConfig(seconds=1.0, width=32, height=24, seed=0, lidar_beams=4,
                                                        lidar_azimuths=64, ground_truth=False, antialias=1))
    cfg = SimConfig()
    cfg.sensors.lidar, cfg.sensors.images = True, False
    plan = open_plan(log_dir)
    sensors = Sensors(plan, cfg.sensors)
    world = World(plan, cfg.world, cfg.vehicle)
    world.reset()
    obs = sensors.observe(world)
    rng = obs["lidar/range"]
    assert rng.shape == (4, 64) and rng.dtype == np.float32 and sensors.spec()["lidar/range"][0] == (4, 64)
    log = load_log(log_dir)
    sweep = log.lidar[0]
    assert abs(sweep.timestamp - world.time) < 1e-9
    pts = sweep.load(log_dir)[:, :3]
    layout = sweep.load_layout(log_dir)
    beam, col = layout.beam, layout.column
    expect = np.zeros((4, 64), np.float32)
    expect[beam, col] = np.linalg.norm(pts, axis=1)
    assert (rng > 0).sum() == len(pts) and np.allclose(rng, expect, atol=1e-3)
