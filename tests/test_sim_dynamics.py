"""The ego's kinematic bicycle model against closed forms: straight lines, circles of radius L / tan(delta),
braking to a stop, the top speed, and the limits on the action; and the simulation's settings are documented."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from simrecon.config_io import describe
from simrecon.sim import SimConfig, VehicleConfig
from simrecon.sim.dynamics import EgoState, action_bounds, arc, step, travel, wrap_angle

CFG = VehicleConfig()


def drive(state: EgoState, action, n: int, dt: float = 0.1, mode: str = "rate", cfg: VehicleConfig = CFG):
    out = [state]
    for _ in range(n):
        out.append(step(out[-1], action, cfg, dt, mode))
    return out


def test_zero_steering_drives_an_exact_straight_line():
    yaw = 0.7
    states = drive(EgoState(3.0, -2.0, yaw, 8.0, 0.0), [0.0, 0.0], 50)
    end = states[-1]
    assert end.x == pytest.approx(3.0 + 8.0 * 5.0 * math.cos(yaw), abs=1e-9)
    assert end.y == pytest.approx(-2.0 + 8.0 * 5.0 * math.sin(yaw), abs=1e-9)
    assert end.yaw == pytest.approx(yaw, abs=1e-12) and end.speed == 8.0 and end.yaw_rate == 0.0


@pytest.mark.parametrize("delta", [0.05, -0.3, 0.55])
def test_constant_steering_drives_a_circle_of_radius_wheelbase_over_tan_delta(delta):
    v, dt, n = 6.0, 0.1, 80
    radius = CFG.wheelbase / math.tan(delta)  # signed: + turns left
    x0, y0, yaw0 = 1.0, 2.0, 0.3
    centre = np.array([x0 - radius * math.sin(yaw0), y0 + radius * math.cos(yaw0)])
    states = drive(EgoState(x0, y0, yaw0, v, delta), [0.0, 0.0], n, dt)
    for k, st in enumerate(states):
        assert math.hypot(st.x - centre[0], st.y - centre[1]) == pytest.approx(abs(radius), abs=1e-9)
        angle = yaw0 + v * k * dt / radius  # closed form: heading after an arc of length v t
        assert wrap_angle(st.yaw - angle) == pytest.approx(0.0, abs=1e-9)
        assert st.x == pytest.approx(centre[0] + radius * math.sin(angle), abs=1e-9)
        assert st.y == pytest.approx(centre[1] - radius * math.cos(angle), abs=1e-9)
    assert states[-1].yaw_rate == pytest.approx(v / radius)
    assert states[-1].lateral_accel == pytest.approx(v * v / radius)


def test_the_arc_is_exact_at_any_step_length_and_stable_for_tiny_curvature():
    # one 8 s step lands where 80 steps of 0.1 s land: the integration is exact, not Euler
    many = drive(EgoState(0, 0, 0, 5.0, 0.2), [0.0, 0.0], 80)[-1]
    one = step(EgoState(0, 0, 0, 5.0, 0.2), [0.0, 0.0], CFG, 8.0)
    assert (one.x, one.y) == pytest.approx((many.x, many.y), abs=1e-9)
    x, y, yaw = arc(0.0, 0.0, 0.0, 1e-14, 10.0)
    assert (x, y, yaw) == pytest.approx((10.0, 5e-13, 1e-13), abs=1e-12)


def test_braking_stops_at_v0_squared_over_2a_and_never_reverses():
    v0, a = 5.0, -2.0  # stops after 2.5 s, 6.25 m
    states = drive(EgoState(0, 0, 0, v0, 0.0), [a, 0.0], 40)
    assert states[-1].x == pytest.approx(v0 * v0 / (2 * -a), abs=1e-12)
    assert [s.speed for s in states[26:]] == [0.0] * 15
    assert states[25].speed == 0.0 and states[24].speed == pytest.approx(0.2)
    assert travel(1.0, -4.0, 0.1, 40.0) == pytest.approx((0.6, 0.08))


def test_the_speed_stops_at_the_top_speed():
    cfg = VehicleConfig(max_speed=10.0)
    v1, s = travel(9.0, 3.0, 1.0, cfg.max_speed)  # reaches 10 m/s after 1/3 s
    assert v1 == 10.0 and s == pytest.approx(9.5 / 3 + 10.0 * 2 / 3)
    end = drive(EgoState(0, 0, 0, 9.0, 0.0), [3.0, 0.0], 20, cfg=cfg)[-1]
    assert end.speed == 10.0


def test_actions_are_clipped_to_the_vehicle_limits():
    st = step(EgoState(0, 0, 0, 10.0, 0.0), [100.0, 100.0], CFG, 0.1)
    assert st.accel == pytest.approx(CFG.max_accel) and st.steer == pytest.approx(CFG.max_steer_rate * 0.1)
    st = step(EgoState(0, 0, 0, 10.0, 0.0), [-100.0, 0.0], CFG, 0.1)
    assert st.accel == pytest.approx(-CFG.max_brake)
    states = drive(EgoState(0, 0, 0, 5.0, 0.0), [0.0, CFG.max_steer_rate], 30)
    assert max(s.steer for s in states) == pytest.approx(CFG.max_steer)  # the angle limit holds


def test_the_angle_mode_moves_the_wheels_to_the_target_at_the_rate_limit():
    states = drive(EgoState(0, 0, 0, 5.0, 0.0), [0.0, 0.3], 6, mode="angle")
    rate_step = CFG.max_steer_rate * 0.1  # 0.08 rad per step
    assert [round(s.steer, 9) for s in states] == [0.0, 0.08, 0.16, 0.24, 0.3, 0.3, 0.3]
    assert rate_step == pytest.approx(0.08)
    low, high = action_bounds(CFG, "angle")
    assert list(low) == [-CFG.max_brake, -CFG.max_steer] and list(high) == [CFG.max_accel, CFG.max_steer]
    with pytest.raises(ValueError, match="action mode"):
        action_bounds(CFG, "torque")


def test_wrap_angle_and_bad_vehicle_settings():
    assert wrap_angle(3 * math.pi) == pytest.approx(math.pi) and wrap_angle(-0.5) == -0.5
    with pytest.raises(ValueError, match="vehicle.wheelbase"):
        VehicleConfig(wheelbase=-1.0).check()
    with pytest.raises(ValueError, match="vehicle.max_steer"):
        VehicleConfig(max_steer=2.0).check()


def test_every_simulation_setting_has_a_help_and_a_unit():
    rows = describe(SimConfig)
    assert len(rows) > 40
    missing = [d.name for d in rows if not d.help or not d.unit]
    assert not missing, missing


def test_docs_list_every_simulation_setting_with_its_default():
    text = (Path(__file__).resolve().parents[1] / "docs" / "simulation.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in text.splitlines()
            if line.startswith("| `") and line.count("|") == 5}
    for d in describe(SimConfig):
        assert d.name in rows, f"docs/simulation.md lacks {d.name}"
        value = ", ".join(d.value) if isinstance(d.value, list) and d.value else d.value
        expect = str(value).lower() if isinstance(value, bool) else str(value if value != [] else "[]")
        assert rows[d.name] == expect, (d.name, rows[d.name], expect)
