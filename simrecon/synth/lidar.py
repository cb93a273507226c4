"""The synthetic street's lidar: exact ranges with a physically plausible intensity and ray drop (docs/lidar.md).

Per ray (beam b, column c of a ``LidarSensor``), the first surface hit gives the range. Its return:
- intensity = reflectivity x |cos(incidence)| / (1 + (range / falloff_m)^2), reflectivity being the surface's
  mean albedo times its material's factor (``MATERIAL_REFLECTIVITY``: glass reflects little);
- dropped (no point) where nothing is hit (sky), outside [min_range_m, max_range_m], on dark
  (reflectivity < ``dark_reflectivity``) or specular (car paint, glass) surfaces hit at grazing angles
  (|cos(incidence)| < ``grazing_cos``), and at random for a ``random_drop`` share of rays.
The random drop is a hash of (seed, beam, column, time in ms): the same sensor at the same pose and time drops
the same rays, so any renderer of the exact scene reproduces the generator's sweeps bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.lidar_model import LidarSensor, SweepLayout
from .raycast import NOTHING
from .render import World, trace
from .scene import MAT_CABIN, MAT_CAR_BODY

MATERIAL_REFLECTIVITY = {MAT_CABIN: 0.3}  # factor on the mean albedo; materials not listed: 1
SPECULAR = (MAT_CAR_BODY, MAT_CABIN)  # car paint and glass: little comes back at grazing angles


@dataclass(frozen=True)
class LidarPhysics:
    """How a hit becomes a return (intensity) or a drop."""

    falloff_m: float = 50.0  # metres: intensity falls as 1 / (1 + (range / falloff_m)^2)
    grazing_cos: float = 0.25  # |cos(incidence)| below which dark or specular surfaces return nothing
    dark_reflectivity: float = 0.1  # reflectivity (0..1) below which a surface is dark
    random_drop: float = 0.01  # share of the other rays dropped at random (seeded per beam, column and time)


@dataclass
class SynthSweep:
    """Every ray of one sweep, in ``LidarSensor.directions`` order (R = beams * columns)."""

    range_m: np.ndarray  # [R] float32 metres along the ray to the first surface; inf where nothing is hit
    returned: np.ndarray  # [R] bool: the ray gives a point (False: dropped)
    intensity: np.ndarray  # [R] float32 in [0, 1]; 0 where dropped
    instance: np.ndarray  # [R] int32: the world's instance id of the surface hit (0: background or nothing)
    beam: np.ndarray  # [R] int32
    column: np.ndarray  # [R] int32


def _uniform_hash(seed: int, beam: np.ndarray, column: np.ndarray, time: float) -> np.ndarray:
    """Deterministic values in [0, 1) per (seed, beam, column, time rounded to ms): splitmix64 on the packed key."""
    t_ms = np.uint64(int(round(time * 1000.0)) & 0xFFFFFFFF)
    key = (beam.astype(np.uint64) << np.uint64(20)) ^ column.astype(np.uint64) ^ (t_ms << np.uint64(32))
    x = key + np.uint64((seed * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _ray_frames(sensor: LidarSensor, s2w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origins [R, 3], world directions [R, 3], sensor directions [R, 3]) for one pose [4, 4] or one per ray."""
    d_sensor = sensor.directions()
    s2w = np.asarray(s2w, dtype=np.float64)
    if s2w.ndim == 2:
        return np.broadcast_to(s2w[:3, 3], d_sensor.shape), d_sensor @ s2w[:3, :3].T, d_sensor
    if s2w.shape != (len(d_sensor), 4, 4):
        raise ValueError(f"per-ray sensor poses must be [{len(d_sensor)}, 4, 4], got {list(s2w.shape)}")
    return s2w[:, :3, 3], np.einsum("rij,rj->ri", s2w[:, :3, :3], d_sensor), d_sensor


def trace_sweep(world: World, sensor: LidarSensor, s2w: np.ndarray, time: float, seed: int,
                physics: LidarPhysics = LidarPhysics()) -> SynthSweep:
    """One sweep of ``sensor`` at sensor-to-world ``s2w`` ([4, 4], or [R, 4, 4]: a pose per ray for a rolling
    sweep) in ``world`` (the street at ``time``)."""
    origins, dirs, _ = _ray_frames(sensor, s2w)
    hits, _, albedo = trace(world, origins, dirs, seed)
    prim = hits.prim.numpy()
    rng = hits.t.numpy().astype(np.float32)
    on_box = prim >= 0
    material = np.full(len(prim), -1)
    material[on_box] = world.material.numpy()[prim[on_box]]
    instance = np.zeros(len(prim), np.int32)
    instance[on_box] = world.instance.numpy()[prim[on_box]]
    factor = np.ones(len(prim))
    for mat, f in MATERIAL_REFLECTIVITY.items():
        factor[material == mat] = f
    reflect = albedo.numpy().mean(axis=1).clip(0.0, 1.0) * factor
    cos = np.abs((hits.normal * torch.as_tensor(dirs, dtype=torch.float32)).sum(1).numpy())
    beam, column = sensor.grid()
    hit = (prim != NOTHING) & np.isfinite(rng)
    in_range = (rng >= sensor.min_range_m) & (rng <= sensor.max_range_m)
    fussy = (reflect < physics.dark_reflectivity) | np.isin(material, SPECULAR)
    grazing = fussy & (cos < physics.grazing_cos)
    lucky = _uniform_hash(seed, beam, column, time) >= physics.random_drop
    returned = hit & in_range & ~grazing & lucky
    intensity = reflect * cos / (1.0 + (np.where(hit, rng, 0.0) / physics.falloff_m) ** 2)
    intensity = np.where(returned, intensity, 0.0).astype(np.float32).clip(0.0, 1.0)
    range_m = np.where(hit, rng, np.float32(np.inf)).astype(np.float32)
    return SynthSweep(range_m, returned, intensity, np.where(hit, instance, 0).astype(np.int32), beam, column)


def sweep_points(sweep: SynthSweep, sensor: LidarSensor) -> tuple[np.ndarray, SweepLayout]:
    """The returned rays as drive-log points [N, 4] float32 (x, y, z in the sensor frame, intensity) and layout."""
    keep = sweep.returned
    pts = sensor.directions()[keep] * sweep.range_m[keep, None].astype(np.float64)
    points = np.concatenate([pts, sweep.intensity[keep, None]], axis=1).astype(np.float32)
    return points, SweepLayout(sweep.beam[keep], sweep.column[keep])
