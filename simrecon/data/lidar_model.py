"""The lidar sensor model of drive-log format v1.1 (docs/drive-log.md, "Version 1.1: lidar sensors").

A spinning lidar fires ``len(beam_elevations_deg)`` beams at each of ``columns`` azimuth steps per sweep.
Ray (beam b, column c) leaves the sensor origin at elevation ``beam_elevations_deg[b]`` and azimuth
``azimuth_start_deg + s * 360 * c / columns`` (s = +1 for ``rotation`` ``ccw``, counter-clockwise seen from
above, about the sensor's +z; -1 for ``cw``); the sensor frame has x forward, y left, z up. Column c fires
``c / (columns * spin_rate_hz)`` seconds after the sweep's timestamp. The (beam, column) cells that have no
point in a sweep are the rays that returned nothing (ray drop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

ROTATIONS = ("ccw", "cw")
MAX_BEAMS = 512  # today's densest spinning lidars have 128 beams
MAX_COLUMNS = 1 << 16  # azimuth steps per sweep (0.0055 degrees)
MAX_RANGE_M = 2000.0
# Rays per sweep (128 beams x 8192 columns; real sensors stay under half of it): bounds what one sweep allocates.
MAX_RAYS = 1 << 20


@dataclass(frozen=True)
class LidarSensor:
    """One spinning lidar: its beams, azimuth steps, range limits and spin."""

    beam_elevations_deg: tuple[float, ...]  # degrees above the sensor's xy plane, one per beam (beam index order)
    columns: int  # azimuth steps per sweep (360 / columns degrees of azimuth resolution)
    min_range_m: float = 0.5  # metres: closer surfaces return nothing
    max_range_m: float = 80.0  # metres: farther surfaces return nothing
    spin_rate_hz: float = 10.0  # sweeps per second (per-column firing time, rolling sweeps)
    rotation: str = "ccw"  # "ccw" (counter-clockwise seen from above) or "cw"
    azimuth_start_deg: float = -180.0  # degrees: azimuth of column 0, from the sensor's +x towards +y
    estimated: bool = False  # True when a reader recovered the beams from point elevations (not from the source)

    @property
    def beams(self) -> int:
        return len(self.beam_elevations_deg)

    @property
    def rays(self) -> int:
        return self.beams * self.columns

    def azimuths_rad(self) -> np.ndarray:
        """Azimuth [columns] of each column, radians."""
        sign = 1.0 if self.rotation == "ccw" else -1.0
        return math.radians(self.azimuth_start_deg) + sign * 2.0 * np.pi * np.arange(self.columns) / self.columns

    def directions(self) -> np.ndarray:
        """Unit ray directions [beams * columns, 3] in the sensor frame, row b * columns + c = (beam b, column c)."""
        elev = np.radians(np.asarray(self.beam_elevations_deg, dtype=np.float64))
        ee, aa = np.meshgrid(elev, self.azimuths_rad(), indexing="ij")
        return np.stack([np.cos(ee) * np.cos(aa), np.cos(ee) * np.sin(aa), np.sin(ee)], axis=-1).reshape(-1, 3)

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """(beam [R], column [R]) int32 of every ray, in ``directions`` order."""
        bb, cc = np.meshgrid(np.arange(self.beams), np.arange(self.columns), indexing="ij")
        return bb.ravel().astype(np.int32), cc.ravel().astype(np.int32)

    def column_times(self, columns: np.ndarray) -> np.ndarray:
        """Seconds after the sweep's timestamp at which ``columns`` [N] fire."""
        return np.asarray(columns, dtype=np.float64) / (self.columns * self.spin_rate_hz)

    def to_json(self) -> dict:
        return {"beam_elevations_deg": [float(e) for e in self.beam_elevations_deg], "columns": int(self.columns),
                "min_range_m": float(self.min_range_m), "max_range_m": float(self.max_range_m),
                "spin_rate_hz": float(self.spin_rate_hz), "rotation": self.rotation,
                "azimuth_start_deg": float(self.azimuth_start_deg), "estimated": bool(self.estimated)}


def uniform_sensor(beams: int = 32, columns: int = 1024, low_deg: float = -22.0, high_deg: float = 8.0,
                   **kw) -> LidarSensor:
    """A sensor with ``beams`` evenly spaced elevations from ``low_deg`` to ``high_deg`` (the synthetic roof lidar)."""
    return LidarSensor(tuple(float(e) for e in np.linspace(low_deg, high_deg, beams)), columns, **kw)


@dataclass
class SweepLayout:
    """Per point of a sweep: its beam and column (the cell of the range image) and, where known, its firing time."""

    beam: np.ndarray  # [N] int32, index into the sensor's beam_elevations_deg
    column: np.ndarray  # [N] int32, azimuth step in [0, columns)
    time: np.ndarray | None = None  # [N] float32 seconds after the sweep's timestamp; None: not recorded

    def returned_mask(self, sensor: LidarSensor) -> np.ndarray:
        """[beams, columns] bool: which rays of the sweep returned a point (False: dropped)."""
        mask = np.zeros((sensor.beams, sensor.columns), bool)
        mask[self.beam, self.column] = True
        return mask

    def problem(self, sensor: LidarSensor) -> str | None:
        """None when every index fits ``sensor``, else what is wrong."""
        if len(self.beam) and (self.beam.min() < 0 or self.beam.max() >= sensor.beams):
            return f"beam indices must be in [0, {sensor.beams}), got {self.beam.min()}..{self.beam.max()}"
        if len(self.column) and (self.column.min() < 0 or self.column.max() >= sensor.columns):
            return f"column indices must be in [0, {sensor.columns}), got {self.column.min()}..{self.column.max()}"
        return None


Bad = Callable[[str, str], None]  # (JSON path, message): how a parser records a problem


def _number(raw: dict, key: str, where: str, bad: Bad, lo: float, hi: float, default: float | None) -> float | None:
    if key not in raw:
        if default is None:
            bad(f"{where}.{key}", "missing required key")
        return default
    val = raw[key]
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(float(val)):
        bad(f"{where}.{key}", f"expected a finite number, got {val!r}")
        return None
    if not lo <= float(val) <= hi:
        bad(f"{where}.{key}", f"expected a number in [{lo:g}, {hi:g}], got {val!r}")
        return None
    return float(val)


def _elevations(raw: dict, where: str, bad: Bad) -> tuple[float, ...] | None:
    val = raw.get("beam_elevations_deg")
    ok = isinstance(val, list) and 0 < len(val) <= MAX_BEAMS and all(
        isinstance(e, (int, float)) and not isinstance(e, bool) and math.isfinite(float(e)) and -90 <= e <= 90
        for e in val)
    if not ok:
        bad(f"{where}.beam_elevations_deg", f"expected a list of 1 to {MAX_BEAMS} angles in [-90, 90] degrees, "
                                           f"got {str(val)[:80] if 'beam_elevations_deg' in raw else 'nothing'}")
        return None
    return tuple(float(e) for e in val)


def parse_sensor(raw: Any, where: str, bad: Bad) -> LidarSensor | None:
    """The sensor described by ``raw`` (a ``lidar_sensors`` entry); problems go to ``bad``, None when there are any."""
    if not isinstance(raw, dict):
        bad(where, f"expected an object describing the sensor, got {type(raw).__name__}")
        return None
    elev = _elevations(raw, where, bad)
    cols = raw.get("columns")
    if isinstance(cols, bool) or not isinstance(cols, int) or not 1 <= cols <= MAX_COLUMNS:
        bad(f"{where}.columns", f"expected an integer in [1, {MAX_COLUMNS}], got {cols!r}")
        cols = None
    lo = _number(raw, "min_range_m", where, bad, 0.0, MAX_RANGE_M, 0.5)
    hi = _number(raw, "max_range_m", where, bad, 0.0, MAX_RANGE_M, None)
    spin = _number(raw, "spin_rate_hz", where, bad, 0.1, 1000.0, 10.0)
    start = _number(raw, "azimuth_start_deg", where, bad, -360.0, 360.0, -180.0)
    rotation = raw.get("rotation", "ccw")
    if rotation not in ROTATIONS:
        bad(f"{where}.rotation", f"expected one of {', '.join(ROTATIONS)}, got {rotation!r}")
    estimated = raw.get("estimated", False)
    if not isinstance(estimated, bool):
        bad(f"{where}.estimated", f"expected true or false, got {estimated!r}")
    if elev is not None and cols is not None and len(elev) * cols > MAX_RAYS:
        bad(f"{where}.columns", f"{len(elev)} beams x {cols} columns is more than {MAX_RAYS} rays per sweep")
        return None
    if lo is not None and hi is not None and hi <= lo:
        bad(f"{where}.max_range_m", f"expected more than min_range_m ({lo:g} m), got {hi:g}")
        return None
    if elev is None or cols is None or None in (lo, hi, spin, start) or rotation not in ROTATIONS \
            or not isinstance(estimated, bool):
        return None
    return LidarSensor(elev, cols, lo, hi, spin, rotation, start, estimated)
