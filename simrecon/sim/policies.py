"""Who drives the ego: built-in reference drivers and user code (docs/simulation.md, "Policies").

A policy has ``act(obs) -> action`` ([acceleration m/s^2, steering rate rad/s], or steering angle in the
``angle`` action mode) and optionally ``reset(world)``, called at the start of each episode with the
``World`` (route, actors, vehicle: privileged information, which the built-in drivers use) and
``needs_images`` (False: the runner may skip rendering cameras for it).

Built in:

- ``replay``: follows the route (the scenario's ego path) with pure pursuit steering, tracking the logged speed
  plus a correction towards where the logged ego was at that time.
- ``lane-follow``: pure pursuit along the route at a cruise speed (``target_speed``; default the route's mean
  logged speed), with the Intelligent Driver Model braking for the nearest actor ahead in the ego's lane.
- ``idle``: brakes to a stop, steering held.

``exec:COMMAND`` runs a separate process that speaks JSON lines (``exec_policy.py``). ``SPEC`` of anything else
is ``module:attr`` or ``path/to/file.py:attr`` naming a callable ``obs -> action``, a
class (instantiated without arguments) or an object with ``act`` (and optionally ``reset``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..config_io import doc
from .dynamics import action_bounds
from .exec_policy import ExecConfig, ExecPolicy
from .idm import idm_accel

BUILTIN = ("replay", "lane-follow", "idle")


@dataclass
class PolicyConfig:
    """Gains and limits of the built-in drivers."""

    lookahead_min: float = doc(4.0, "pure pursuit: the shortest look-ahead distance", unit="m")
    lookahead_time: float = doc(0.8, "pure pursuit: look-ahead distance per unit of speed", unit="s")
    speed_time_constant: float = doc(0.5, "speed tracking: close the speed error over this time", unit="s")
    position_gain: float = doc(0.5, "replay: extra target speed per metre behind the logged ego", unit="1/s")
    target_speed: float = doc(0.0, "lane-follow: cruise speed (0: the route's mean logged speed)", unit="m/s")
    idm_max_accel: float = doc(1.5, "lane-follow IDM: maximum acceleration", unit="m/s^2")
    idm_comfort_brake: float = doc(2.0, "lane-follow IDM: comfortable deceleration", unit="m/s^2")
    idm_headway: float = doc(1.5, "lane-follow IDM: desired time headway", unit="s")
    idm_min_gap: float = doc(2.0, "lane-follow IDM: bumper-to-bumper gap when stopped", unit="m")
    idm_exponent: float = doc(4.0, "lane-follow IDM: free-road acceleration exponent", unit="factor")
    lead_margin: float = doc(0.5, "lane-follow: an actor is in the lane when its box comes this close to the ego's "
                                  "width laid along the route", unit="m")
    lead_range: float = doc(80.0, "lane-follow: actors farther ahead than this are ignored", unit="m")
    idle_brake: float = doc(3.0, "idle: deceleration", unit="m/s^2")

    def check(self) -> None:
        may_be_zero = ("target_speed", "position_gain", "lead_margin")
        for name, value in vars(self).items():
            ok = isinstance(value, (int, float)) and math.isfinite(value)
            if not ok or value < 0 or (value == 0 and name not in may_be_zero):
                rule = "a number >= 0" if name in may_be_zero else "a positive number"
                raise ValueError(f"policy.{name}: must be {rule}, got {value!r}")


class Policy(Protocol):
    needs_images: bool

    def reset(self, world) -> None: ...

    def act(self, obs: dict) -> Any: ...


def as_action(action) -> np.ndarray:
    """``action`` as 2 finite floats, or ValueError saying what is wrong with it."""
    try:
        a = np.asarray(action, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the action is not two numbers ({type(action).__name__}: {exc})"[:300]) from None
    if a.size != 2:
        raise ValueError(f"the action has shape {a.shape}, expected 2 numbers [acceleration, steering]")
    a = a.reshape(2)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"the action is not finite: [{a[0]}, {a[1]}]")
    return a


class _Driver:
    """What the built-in drivers share: the world, pure pursuit steering, speed tracking, the command."""

    needs_images = False

    def __init__(self, cfg: PolicyConfig | None = None):
        self.cfg = cfg or PolicyConfig()
        self.world = None

    def reset(self, world) -> None:
        self.world = world

    def steer_to_route(self, s: float) -> float:
        """Pure pursuit: the steering angle that puts the rear axle on a circle through the route point one
        look-ahead distance beyond ``s``."""
        w, st = self.world, self.world.state
        look = max(self.cfg.lookahead_min, self.cfg.lookahead_time * st.speed)
        dx, dy = w.route.point_at(s + look) - np.array([st.x, st.y])
        c, sn = math.cos(st.yaw), math.sin(st.yaw)
        lx, ly = c * dx + sn * dy, -sn * dx + c * dy
        d2 = lx * lx + ly * ly
        return 0.0 if d2 < 1e-9 else math.atan(w.vehicle.wheelbase * 2.0 * ly / d2)

    def accel_to(self, speed: float) -> float:
        return (speed - self.world.state.speed) / max(self.cfg.speed_time_constant, self.world.dt)

    def command(self, accel: float, steer: float) -> np.ndarray:
        """[acceleration, steering rate or angle] in the world's action mode, within the vehicle's limits."""
        w = self.world
        second = steer if w.action_mode == "angle" else (steer - w.state.steer) / w.dt
        low, high = action_bounds(w.vehicle, w.action_mode)
        return np.clip(np.array([accel, second], dtype=float), low, high)


class Replay(_Driver):
    """Drive the route at the logged speed."""

    name = "replay"

    def act(self, obs: dict) -> np.ndarray:
        w, st = self.world, self.world.state
        s, _ = w.route.project((st.x, st.y))
        t_next = w.time + w.dt
        target = w.route.speed_at_time(t_next) + self.cfg.position_gain * (w.route.s_at_time(w.time) - s)
        return self.command(self.accel_to(max(target, 0.0)), self.steer_to_route(s))


class LaneFollow(_Driver):
    """Drive the route at a cruise speed, braking for the nearest actor ahead in the lane (IDM)."""

    name = "lane-follow"

    def lead(self, s: float) -> tuple[float, float] | None:
        """(bumper-to-bumper gap m, speed along the route m/s) of the nearest actor ahead in the lane, or None."""
        w, v = self.world, self.world.vehicle
        front = s + (v.box_center_x - v.rear_axle_x) + v.length / 2
        best = None
        for a in w.record.actors:
            sa, lat = w.route.project(a.pose[:2, 3])
            h = w.route.heading_at(sa)
            rel = math.atan2(a.pose[1, 0], a.pose[0, 0]) - h
            along = abs(math.cos(rel)) * a.size[0] / 2 + abs(math.sin(rel)) * a.size[1] / 2
            across = abs(math.sin(rel)) * a.size[0] / 2 + abs(math.cos(rel)) * a.size[1] / 2
            gap = sa - along - front
            if sa <= s or abs(lat) - across > v.width / 2 + self.cfg.lead_margin or gap > self.cfg.lead_range:
                continue
            if best is None or gap < best[0]:
                best = (gap, float(a.velocity @ np.array([math.cos(h), math.sin(h)])))
        return best

    def idm(self, v: float, v0: float, lead: tuple[float, float] | None) -> float:
        c = self.cfg
        return idm_accel(v, v0, lead, c.idm_max_accel, c.idm_comfort_brake, c.idm_headway, c.idm_min_gap,
                         c.idm_exponent, self.world.vehicle.max_brake)

    def act(self, obs: dict) -> np.ndarray:
        w, st = self.world, self.world.state
        s, _ = w.route.project((st.x, st.y))
        v0 = self.cfg.target_speed if self.cfg.target_speed > 0 else w.route.mean_speed()
        return self.command(self.idm(st.speed, v0, self.lead(s)), self.steer_to_route(s))


class Idle(_Driver):
    """Brake to a stop, steering held."""

    name = "idle"

    def act(self, obs: dict) -> np.ndarray:
        return self.command(-self.cfg.idle_brake, self.world.state.steer)


class UserPolicy:
    """User code as a policy: a callable ``obs -> action`` or an object with ``act`` (and ``reset``)."""

    def __init__(self, obj: Any, name: str):
        self.obj, self.name = obj, name
        self.needs_images = bool(getattr(obj, "needs_images", True))
        self._act = obj.act if callable(getattr(obj, "act", None)) else obj

    def reset(self, world) -> None:
        """Call the object's ``reset(world)`` (or ``reset()``) if it has one."""
        reset = getattr(self.obj, "reset", None)
        if not callable(reset):
            return
        try:
            inspect.signature(reset).bind(world)
            takes_world = True
        except TypeError:
            takes_world = False
        except ValueError:  # no signature to inspect (a builtin): give it the world
            takes_world = True
        if takes_world:
            reset(world)
        else:
            reset()

    def act(self, obs: dict) -> Any:
        return self._act(obs)


def as_policy(obj: Any) -> Policy:
    """``obj`` as a policy: a built-in driver as it is, else user code (a callable or an object with ``act``)."""
    if isinstance(obj, (_Driver, UserPolicy)):
        return obj
    if not callable(getattr(obj, "act", None)) and not callable(obj):
        raise ValueError(f"policy {obj!r}: neither callable nor has an act(obs) method"[:300])
    return UserPolicy(obj, getattr(obj, "__name__", type(obj).__name__))


def _import(where: str, spec: str, option: str) -> Any:
    """The module named ``where``: a dotted module name, or a ``.py`` file."""
    if where.endswith(".py"):
        path = Path(where)
        if not path.is_file():
            raise ValueError(f"{option} {spec}: no such file {where}")
        mod_spec = importlib.util.spec_from_file_location(f"simrecon_user_{path.stem}", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        return module
    return importlib.import_module(where)


def load_attr(spec: str, option: str, expected: str) -> Any:
    """The object ``spec`` (``module:attr`` or ``file.py:attr``) names, a class instantiated without arguments; a
    one-line ValueError starting with ``option`` when it cannot be loaded (``expected``: what else to give)."""
    where, _, attr = spec.rpartition(":")
    if not where or not attr or not attr.replace(".", "_").isidentifier():
        raise ValueError(f"{option} {spec!r}: expected {expected}")
    try:
        module = _import(where, spec, option)
    except ValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - user code may raise anything on import
        first = (str(exc).splitlines() or [""])[0]
        raise ValueError(f"{option} {spec}: cannot import {where}: {type(exc).__name__}: {first}"[:400]) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option} {spec}: {where} has no attribute {part!r}")
        obj = getattr(obj, part)
    if inspect.isclass(obj):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001
            first = (str(exc).splitlines() or [""])[0]
            raise ValueError(f"{option} {spec}: {attr}() failed: {type(exc).__name__}: {first}"[:400]) from None
    return obj


def load_policy(spec: str, cfg: PolicyConfig | None = None, exec_cfg: ExecConfig | None = None) -> Policy:
    """The policy ``spec`` names: ``replay``, ``lane-follow``, ``idle``, ``exec:COMMAND``, ``module:attr`` or
    ``file.py:attr``. A spec that cannot be loaded is a one-line ValueError."""
    spec = str(spec).strip()
    builtin = {"replay": Replay, "lane-follow": LaneFollow, "idle": Idle}
    if spec in builtin:
        return builtin[spec](cfg)
    if spec.startswith("exec:"):
        return ExecPolicy(spec[len("exec:"):], exec_cfg)
    obj = load_attr(spec, "--policy", f"{', '.join(BUILTIN)}, exec:COMMAND, module:attr or file.py:attr")
    attr = spec.rpartition(":")[2]
    if not callable(getattr(obj, "act", None)) and not callable(obj):
        raise ValueError(f"--policy {spec}: {attr} is neither callable nor has an act(obs) method")
    return UserPolicy(obj, spec)
