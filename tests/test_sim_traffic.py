"""Reactive actors on the exact synthetic street: a faster car coming up behind a braking ego rear-ends it when
replayed and brakes behind it (IDM) when reactive, keeping its path; with the road clear, reactive actors move
exactly as replayed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from simrecon.sim import SimConfig, drive
from simrecon.sim.geometry import Box2D
from simrecon.sim.idm import idm_accel
from simrecon.sim.traffic import ActorsConfig, ActorState, ego_ahead
from simrecon.synth import SynthConfig, generate

STREET = SynthConfig(seconds=3.0, width=32, height=24, seed=0, lidar_beams=4, lidar_azimuths=32, ground_truth=False,
                     antialias=1)
CHASER = {"id": "chaser", "source": "car_1", "trajectory": [{"t": 0.0, "position": [-20.0, -1.75]},
                                                             {"t": 2.9, "position": [29.3, -1.75]}]}  # 17 m/s


@pytest.fixture(scope="module")
def chase(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("traffic")
    generate(root / "street", STREET)
    path = root / "chase.yaml"
    path.write_text(yaml.safe_dump({"scene": "street", "cameras": ["front"], "actors": [CHASER]}))
    return path


def reactive(on: bool) -> SimConfig:
    cfg = SimConfig()
    cfg.actors.reactive = on
    cfg.world.duration_s = 4.0
    return cfg


def chaser_at(rec):
    return next((a for a in rec.actors if a.id == "chaser"), None)


def test_a_replayed_car_runs_into_the_braking_ego_and_a_reactive_one_brakes_behind_it(chase):
    replay = drive(chase, "idle", None, reactive(False)).metrics
    assert replay.collision and replay.collision_actor == "chaser"
    result = drive(chase, "idle", None, reactive(True))
    assert not result.metrics.collision, result.metrics
    gaps, ys = [], []
    for rec in result.world.history:
        car = chaser_at(rec)
        if car is None:
            continue
        ego_rear = Box2D.from_pose(rec.box_pose, result.world.vehicle.size).corners()[:, 0].min()
        gaps.append(ego_rear - (car.pose[0, 3] + car.size[0] / 2))
        ys.append(car.pose[1, 3])
    assert len(gaps) > 30 and min(gaps) > 0.5  # it stopped behind the ego
    assert np.allclose(ys, -1.75, atol=1e-6)  # on its own path
    last = chaser_at(result.world.history[-1])
    assert np.linalg.norm(last.velocity) < 0.5  # stopped behind the stopped ego


def test_with_the_road_clear_reactive_actors_move_as_replayed(chase):
    a = drive(chase.parent / "street", "replay", None, reactive(False)).world.history
    b = drive(chase.parent / "street", "replay", None, reactive(True)).world.history
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert [x.id for x in ra.actors] == [x.id for x in rb.actors]
        for x, y in zip(ra.actors, rb.actors):
            assert np.allclose(x.pose, y.pose, atol=1e-9) and np.allclose(x.velocity, y.velocity, atol=1e-6)


def test_ego_ahead_sees_only_an_ego_in_the_actors_lane_and_range():
    cfg = ActorsConfig()
    car = ActorState("c", "c", "car", np.array([4.4, 1.8, 1.5]), np.eye(4), np.array([10.0, 0.0]))

    def ego_at(x, y):
        pose = np.eye(4)
        pose[:2, 3] = x, y
        return Box2D.from_pose(pose, np.array([4.6, 1.9, 1.6]))

    gap, v = ego_ahead(car, ego_at(12.0, 0.0), np.array([5.0, 1.0]), cfg)
    assert gap == pytest.approx(12.0 - 2.3 - 2.2) and v == pytest.approx(5.0)
    # the lane: the car's half width 0.9 m + 0.5 m margin; the ego's box reaches 0.95 m below its centre
    assert ego_ahead(car, ego_at(12.0, 2.3), np.zeros(2), cfg) is not None  # box from y 1.35
    assert ego_ahead(car, ego_at(12.0, 2.4), np.zeros(2), cfg) is None  # box from y 1.45: the next lane
    assert ego_ahead(car, ego_at(-12.0, 0.0), np.zeros(2), cfg) is None  # behind
    assert ego_ahead(car, ego_at(60.0, 0.0), np.zeros(2), cfg) is None  # beyond range


def test_idm_brakes_harder_the_closer_and_faster_it_closes_in():
    kw = dict(max_accel=1.5, comfort_brake=2.0, headway=1.5, min_gap=2.0)
    assert idm_accel(10.0, 10.0, None, **kw) == pytest.approx(0.0)  # cruising at the desired speed
    assert idm_accel(5.0, 10.0, None, **kw) == pytest.approx(1.5 * (1 - 0.5 ** 4))
    far, near = idm_accel(10.0, 10.0, (40.0, 10.0), **kw), idm_accel(10.0, 10.0, (10.0, 10.0), **kw)
    closing = idm_accel(10.0, 10.0, (10.0, 0.0), **kw)
    assert 0 > far > near > closing >= -8.0 and idm_accel(10.0, 10.0, (0.0, 0.0), **kw) == -8.0
