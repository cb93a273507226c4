"""What the ego observes: its cameras rendered through the scene at its simulated pose (RGB, depth, instance
ids), optionally the log's lidar, its own motion, and the route ahead in its frame.

A camera's world pose is ``ego vehicle-to-world (simulated) @ camera-to-vehicle (the scenario's mount)``; the
scene renders it through the ``RenderableScene`` contract with the scenario's actors at the current time, so the
synthetic street's exact renderer and reconstructed neural scenes are observed alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..compose.composer import render_tiled, to_uint8
from ..compose.lidar import lidar_plan
from ..compose.scenario import MAX_PIXELS, PlannedCamera
from ..config_io import doc
from ..data.scene_api import ActorPlacement, LidarScene

CAMERA_OUTPUTS = ("rgb", "depth", "instance")


@dataclass
class SensorConfig:
    """The observation: cameras, their size and outputs, and the route ahead."""

    images: bool = doc(True, "render the cameras (False: the ego state and the route only)", unit="switch")
    cameras: list = doc([], "cameras to observe, by the scenario's names (empty: its first camera)", unit="names")
    width: int = doc(0, "image width (0: the camera's own; with height 0, the height keeps the aspect)",
                     unit="pixels")
    height: int = doc(0, "image height (0: the camera's own; with width 0, the width keeps the aspect)",
                      unit="pixels")
    outputs: list = doc(["rgb"], "what each camera observes: rgb (uint8), depth (float32 m), instance (uint16 "
                                 "scenario instance ids)", unit="outputs")
    route_points: int = doc(10, "route points ahead in the observation", unit="points")
    route_spacing: float = doc(2.0, "distance between those points along the route", unit="m")
    max_depth: float = doc(1000.0, "depth is clipped to this; sky reads this", unit="m")
    lidar: bool = doc(False, "observe the log's lidar (its first sensor, at its mount on the ego): range per beam "
                             "and column, 0 where nothing returned (docs/lidar.md)", unit="switch")


def _resized(cam: PlannedCamera, width: int, height: int) -> PlannedCamera:
    """``cam`` with its image resized to ``width`` x ``height`` (0: from the other, keeping the aspect)."""
    intr = cam.intrinsics
    if width <= 0 and height <= 0:
        return cam
    sx = width / intr.w if width > 0 else height / intr.h
    sy = height / intr.h if height > 0 else sx
    w, h = max(1, int(round(intr.w * sx))), max(1, int(round(intr.h * sy)))
    new = replace(intr, fl_x=intr.fl_x * sx, fl_y=intr.fl_y * sy, cx=intr.cx * sx, cy=intr.cy * sy, w=w, h=h)
    return PlannedCamera(cam.name, new, cam.cam_to_vehicle, cam.logged)


def _check(cfg: SensorConfig) -> None:
    bad = [o for o in cfg.outputs if o not in CAMERA_OUTPUTS]
    if bad or not cfg.outputs:
        raise ValueError(f"sensors.outputs: choose from {', '.join(CAMERA_OUTPUTS)}, got {list(cfg.outputs)}")
    for name in ("width", "height"):
        v = getattr(cfg, name)
        if not isinstance(v, int) or not (0 <= v <= 16384):
            raise ValueError(f"--{name}: must be an integer in [1, 16384] (0: the camera's own), got {v!r}")
    if not isinstance(cfg.route_points, int) or not (1 <= cfg.route_points <= 1000):
        raise ValueError(f"sensors.route_points: must be in [1, 1000], got {cfg.route_points!r}")
    for name in ("route_spacing", "max_depth"):
        v = getattr(cfg, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"sensors.{name}: must be a positive number, got {v!r}")


class Sensors:
    """The observation of a world built from ``plan`` (see ``spec`` for its keys)."""

    def __init__(self, plan, cfg: SensorConfig | None = None):
        self.plan, self.cfg = plan, cfg or SensorConfig()
        _check(self.cfg)
        names = list(self.cfg.cameras) or [plan.cameras[0].name]
        known = {c.name: c for c in plan.cameras}
        cams = []
        for name in names:
            if name not in known:
                raise ValueError(f"--camera {name}: no such camera in the scenario (cameras: {', '.join(known)})")
            cams.append(_resized(known[name], self.cfg.width, self.cfg.height))
            if cams[-1].intrinsics.w * cams[-1].intrinsics.h > MAX_PIXELS:
                raise ValueError(f"--camera {name}: more than {MAX_PIXELS >> 20} MP per frame")
        self.cameras = cams if self.cfg.images else []
        self._ids = {a.id: a.instance_id for a in plan.actors}
        self.lidar = None
        if self.cfg.lidar:
            if not isinstance(plan.scene, LidarScene):
                raise ValueError("sensors.lidar: this scene does not render lidar")
            self.lidar = lidar_plan(plan)

    def spec(self) -> dict[str, tuple[tuple[int, ...], type, float, float]]:
        """key -> (shape, dtype, low, high) of every observation entry."""
        out: dict[str, tuple[tuple[int, ...], type, float, float]] = {}
        for cam in self.cameras:
            h, w = cam.intrinsics.h, cam.intrinsics.w
            for o in self.cfg.outputs:
                out[f"{cam.name}/{o}"] = {"rgb": ((h, w, 3), np.uint8, 0, 255),
                                          "depth": ((h, w), np.float32, 0.0, float(self.cfg.max_depth)),
                                          "instance": ((h, w), np.uint16, 0, 65535)}[o]
        if self.lidar is not None:
            sensor = self.lidar.sensor
            out["lidar/range"] = ((sensor.beams, sensor.columns), np.float32, 0.0, float(sensor.max_range_m))
        out["ego"] = ((4,), np.float32, -math.inf, math.inf)
        out["route"] = ((self.cfg.route_points, 2), np.float32, -math.inf, math.inf)
        return out

    def observe(self, world) -> dict[str, np.ndarray]:
        """The observation of ``world`` now."""
        obs = self.render(world)
        rec = world.record
        obs["ego"] = rec.state.vector()
        origin = rec.pose[:2, 3]  # the route (of the rear axle) in the vehicle frame
        s, _ = world.route.project((rec.state.x, rec.state.y))
        obs["route"] = world.route.ahead(s, origin, rec.state.yaw, self.cfg.route_points,
                                         self.cfg.route_spacing).astype(np.float32)
        return obs

    def render(self, world) -> dict[str, np.ndarray]:
        """``camera/output`` -> image of every observed camera at the world's time and the ego's pose."""
        rec, out = world.record, {}
        placements = {a.id: ActorPlacement(a.source, a.pose) for a in rec.actors}
        tile = int(getattr(self.plan.spec, "tile_pixels", 1 << 19))
        for cam in self.cameras:
            c2w = rec.pose @ cam.cam_to_vehicle
            rgb, depth, inst, names, _ = render_tiled(self.plan.scene, c2w, cam.intrinsics, rec.time, placements,
                                                      tuple(self.cfg.outputs), tile)
            if rgb is not None:
                out[f"{cam.name}/rgb"] = to_uint8(rgb)
            if depth is not None:
                d = np.nan_to_num(depth, nan=self.cfg.max_depth, posinf=self.cfg.max_depth)
                out[f"{cam.name}/depth"] = np.clip(d, 0.0, self.cfg.max_depth).astype(np.float32)
            if inst is not None:
                lut = np.zeros(len(names) + 1, np.uint16)
                lut[1:] = [self._ids.get(n, 0) for n in names]
                out[f"{cam.name}/instance"] = lut[np.clip(inst, 0, len(names))]
        if self.lidar is not None:
            lp = self.lidar
            sweep = self.plan.scene.render_lidar(lp.sensor, rec.pose @ lp.sensor_to_vehicle, rec.time, placements)
            rng = np.where(sweep.returned, np.nan_to_num(sweep.range_m, posinf=0.0), 0.0)
            out["lidar/range"] = rng.reshape(lp.sensor.beams, lp.sensor.columns).astype(np.float32)
        return out
