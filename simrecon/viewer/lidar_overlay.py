"""The viewer's rendered lidar sweep (docs/viewer.md, "Lidar sweep"): one sweep of the scene's lidar at the
viewer's time, from the (edited) ego's pose, with the viewer's actor layout, shown as a point cloud in world
coordinates and coloured by intensity, instance or range.

The sensor is the log's first lidar sensor with a model (drive-log v1.1 ``lidar_sensors``); its mount on the vehicle
comes from its first logged sweep, as the composer's ``lidar`` output does (compose/lidar.py), so the sweep at a
logged sweep's time with the logged actors is that sweep. The pure part (``lidar_source``, ``sweep_inputs``,
``render_overlay_sweep``, ``overlay_cloud``) needs no viser; ``LidarOverlay`` adds the GUI and the point cloud and
is stepped by the viewer's render thread, so a sweep never renders on viser's GUI thread, and only when the
time, the layout (actors, edits, ego), the column reduction or the colouring changed.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..compose.scenario import Plan
from ..data.geometry import invert_pose
from ..data.lidar_model import LidarSensor
from ..data.scene_api import ActorPlacement, LidarScene
from .render import colorize_depth, instance_color

LIDAR_MODES = ("off", "intensity", "instance", "range")
COLUMN_STEPS = {"all": 1, "1/2": 2, "1/4": 4, "1/8": 8}  # GUI label -> render every n-th azimuth column
BACKGROUND_GREY = 128  # instance colouring: points of no actor
NO_INTENSITY_GREY = 170  # intensity colouring of a scene that has no intensity model
NODE = "/lidar_sweep"
# A perceptual ramp (dark blue -> green -> yellow) for intensity; range uses the depth mode's colours.
_RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float32)


class LidarUnavailable(ValueError):
    """The scene cannot show a rendered sweep; the message is the one-line reason shown in the GUI."""


@dataclass(frozen=True)
class LidarOverlayConfig:
    """What the overlay shows."""

    mode: str = "off"  # one of LIDAR_MODES: "off" renders and shows nothing
    column_step: int = 1  # render every n-th azimuth column (1: the sensor's full sweep; 4: a quarter of the rays)
    point_size: float = 0.06  # metres: edge length of each point as the browser draws it


@dataclass
class OverlaySource:
    """The lidar the overlay renders: the scene, the log's sensor and its mount on the vehicle."""

    scene: LidarScene
    name: str  # the sensor's name in the log
    sensor: LidarSensor
    sensor_to_vehicle: np.ndarray  # [4, 4]


@dataclass
class SweepInputs:
    """Everything one overlay sweep depends on."""

    time: float  # seconds, log time
    s2w: np.ndarray  # [4, 4] sensor-to-world
    placements: dict[str, ActorPlacement]  # the actors drawn (mesh assets too), keyed by the viewer's actor ids

    def key(self, column_step: int) -> tuple:
        """Equal keys render equal sweeps (the time, the pose, every actor's source and pose, the reduction)."""
        actors = tuple((name, p.source, np.asarray(p.pose, np.float64).tobytes())
                       for name, p in self.placements.items())
        return round(self.time, 9), np.asarray(self.s2w, np.float64).tobytes(), actors, int(column_step)


@dataclass
class OverlaySweep:
    """One rendered sweep's returns, in world coordinates."""

    inputs: SweepInputs
    column_step: int  # every n-th azimuth column of the log's sensor was rendered
    sensor: LidarSensor  # the sensor as rendered (columns reduced by column_step)
    points: np.ndarray  # [N, 3] float32 world coordinates (metres)
    range_m: np.ndarray  # [N] float32 metres from the sensor
    intensity: np.ndarray | None  # [N] float32 in the scene's units; None when the scene has no intensity
    instance: np.ndarray  # [N] int32: 0 background, k = names[k - 1]
    names: list[str]  # actor ids, in the order of the instance ids
    seconds: float  # time the sweep took to render

    @property
    def key(self) -> tuple:
        return self.inputs.key(self.column_step)


@dataclass
class PointCloud:
    """What the browser draws."""

    points: np.ndarray  # [N, 3] float32 world coordinates
    colors: np.ndarray  # [N, 3] uint8 RGB


@dataclass
class OverlayState:
    """The viewer's state the overlay follows (read under the viewer's lock)."""

    version: int  # bumps on every change of what is rendered
    time: float
    plan: Plan
    actors: bool  # draw the actors (the viewer's "actors" toggle)


def lidar_source(plan: Plan) -> OverlaySource:
    """The scene's lidar for the overlay; ``LidarUnavailable`` with a one-line reason when there is none."""
    log = plan.log
    if not isinstance(plan.scene, LidarScene) or not isinstance(getattr(plan.scene, "base", plan.scene), LidarScene):
        raise LidarUnavailable("this scene does not render lidar")
    if not log.lidar_sensors:
        raise LidarUnavailable("the log has no lidar sensor model (drive-log v1.1 `lidar_sensors`)")
    for name, sensor in log.lidar_sensors.items():
        first = next((s for s in log.lidar if s.sensor == name), None)
        if first is not None:
            mount = invert_pose(plan.logged_ego_fn(first.timestamp)) @ first.s2w
            return OverlaySource(plan.scene, name, sensor, mount)
    raise LidarUnavailable("the log has no sweep of its lidar sensor, so the sensor's mount is unknown")


def sweep_inputs(source: OverlaySource, plan: Plan, t: float, actors: bool = True) -> SweepInputs:
    """The sweep at time ``t``: the sensor on the plan's (edited) ego, the plan's actors (none if not ``actors``)."""
    placements = {}
    for a in plan.actors if actors else []:
        pose = a.pose_at(t)
        if pose is not None:
            placements[a.id] = ActorPlacement(a.source, pose)
    return SweepInputs(float(t), plan.ego_fn(t) @ source.sensor_to_vehicle, placements)


def reduced_sensor(sensor: LidarSensor, column_step: int) -> LidarSensor:
    """``sensor`` firing every ``column_step``-th column only (the same beams and field of view)."""
    if column_step <= 1:
        return sensor
    return replace(sensor, columns=max(1, sensor.columns // int(column_step)))


def render_overlay_sweep(source: OverlaySource, inputs: SweepInputs, column_step: int = 1) -> OverlaySweep:
    """Render the sweep and keep its returns, moved into world coordinates."""
    t0 = _time.perf_counter()
    sensor = reduced_sensor(source.sensor, column_step)
    out = source.scene.render_lidar(sensor, inputs.s2w, inputs.time, inputs.placements)
    local = out.points()
    world = local @ inputs.s2w[:3, :3].T + inputs.s2w[:3, 3]
    keep = out.returned
    intensity = None if out.intensity is None else np.asarray(out.intensity, np.float32)[keep]
    return OverlaySweep(inputs, int(column_step), sensor, world.astype(np.float32),
                        np.asarray(out.range_m, np.float32)[keep], intensity, np.asarray(out.instance, np.int32)[keep],
                        list(out.instance_names), _time.perf_counter() - t0)


def _ramp(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, np.float32), 0.0, 1.0) * (len(_RAMP) - 1)
    i0 = np.clip(np.floor(x).astype(np.int64), 0, len(_RAMP) - 2)
    a = (x - i0)[:, None]
    return (_RAMP[i0] * (1 - a) + _RAMP[i0 + 1] * a + 0.5).astype(np.uint8)


def overlay_colors(sweep: OverlaySweep, mode: str) -> np.ndarray:
    """[N, 3] uint8 colours of the sweep's points for ``mode`` (not "off")."""
    n = len(sweep.points)
    if mode == "intensity":
        if sweep.intensity is None:
            return np.full((n, 3), NO_INTENSITY_GREY, np.uint8)
        # scaled to the sweep's 99th percentile: dim asphalt and bright markings both readable, whatever the units
        hi = float(np.percentile(sweep.intensity, 99)) if n else 1.0
        return _ramp(sweep.intensity / max(hi, 1e-6))
    if mode == "instance":
        lut = np.full((len(sweep.names) + 1, 3), BACKGROUND_GREY, np.uint8)
        if sweep.names:
            lut[1:] = [instance_color(name) for name in sweep.names]
        return lut[np.clip(sweep.instance, 0, len(sweep.names))]
    if mode == "range":
        near = max(1.0, sweep.sensor.min_range_m)
        return colorize_depth(sweep.range_m, near=near, far=max(sweep.sensor.max_range_m, near + 1.0))
    raise ValueError(f"lidar colour mode must be one of {', '.join(LIDAR_MODES[1:])}, got {mode!r}")


def overlay_cloud(sweep: OverlaySweep | None, mode: str) -> PointCloud | None:
    """The point cloud to show; None for mode "off" (or no sweep)."""
    if mode == "off" or sweep is None:
        return None
    return PointCloud(sweep.points, overlay_colors(sweep, mode))


class LidarOverlay:
    """The "Lidar sweep" GUI folder and its point cloud. ``step()`` runs on the viewer's render thread."""

    def __init__(self, plan: Plan, state: Callable[[], OverlayState]):
        self.state = state
        self.cfg = LidarOverlayConfig()
        try:
            self.source: OverlaySource | None = lidar_source(plan)
            self.reason: str | None = None
        except LidarUnavailable as exc:
            self.source, self.reason = None, str(exc)
        self.sweep: OverlaySweep | None = None
        self.renders = 0  # sweeps rendered so far
        self.handle = None  # the viser point cloud, None while nothing is shown
        self._server = None
        self._seen: tuple | None = None  # (state version, config) last looked at
        self._shown: tuple | None = None  # (sweep key, mode, point size) on screen

    def build_gui(self, server) -> None:
        """Add the folder to ``server``'s GUI (the controls are disabled, with the reason, when unavailable)."""
        self._server = server
        gui = server.gui
        off = self.source is None
        with gui.add_folder("Lidar sweep"):
            self.gui_mode = gui.add_dropdown("sweep colour", LIDAR_MODES, initial_value="off", disabled=off,
                                             hint=self.reason or "render the scene's lidar at the current time")
            self.gui_columns = gui.add_dropdown("columns", tuple(COLUMN_STEPS), initial_value="all", disabled=off,
                                                hint="render every n-th azimuth column: fewer rays, faster")
            self.gui_size = gui.add_slider("point size (m)", min=0.01, max=0.3, step=0.01,
                                           initial_value=self.cfg.point_size, disabled=off)
            self.gui_info = gui.add_markdown(f"lidar unavailable: {self.reason}" if off else " ")
        for handle in (self.gui_mode, self.gui_columns, self.gui_size):
            handle.on_update(lambda _e: self.configure(LidarOverlayConfig(
                self.gui_mode.value, COLUMN_STEPS[self.gui_columns.value], float(self.gui_size.value))))

    def configure(self, cfg: LidarOverlayConfig) -> None:
        if cfg.mode not in LIDAR_MODES:
            raise ValueError(f"lidar colour mode must be one of {', '.join(LIDAR_MODES)}, got {cfg.mode!r}")
        self.cfg = cfg

    def step(self) -> bool:
        """Render / recolour / hide as the state asks; True when something was done. Never raises: a failure is
        said in the folder's info line (and retried when the state or the controls change)."""
        cfg = self.cfg
        if self.source is None:
            return False
        try:
            state = self.state()
            if (state.version, cfg) == self._seen:
                return False
            self._seen = (state.version, cfg)
            if cfg.mode == "off":
                return self._hide()
            inputs = sweep_inputs(self.source, state.plan, state.time, state.actors)
            key = inputs.key(cfg.column_step)
            if (key, cfg.mode, cfg.point_size) == self._shown:
                return False
            if self.sweep is None or self.sweep.key != key:
                self.sweep = render_overlay_sweep(self.source, inputs, cfg.column_step)
                self.renders += 1
            self._show(overlay_cloud(self.sweep, cfg.mode), cfg, key)
        except Exception as exc:  # noqa: BLE001 - keep the render thread serving; say what went wrong
            self._info(f"lidar failed: {type(exc).__name__}: {exc}")
        return True

    def _show(self, cloud: PointCloud, cfg: LidarOverlayConfig, key: tuple) -> None:
        self._shown = (key, cfg.mode, cfg.point_size)
        if self._server is not None:
            self.handle = self._server.scene.add_point_cloud(NODE, cloud.points, cloud.colors,
                                                             point_size=cfg.point_size, precision="float32")
        s, sw = self.sweep.sensor, self.sweep
        self._info(f"{s.beams}×{s.columns} rays · {len(cloud.points):,} points · {sw.seconds:.2f} s · "
                   f"t = {sw.inputs.time:.2f} s")

    def _hide(self) -> bool:
        self._shown = None
        if self.handle is None:
            return False
        self.handle.remove()
        self.handle = None
        self._info(" ")
        return True

    def _info(self, text: str) -> None:
        if self._server is not None:
            self.gui_info.content = text
