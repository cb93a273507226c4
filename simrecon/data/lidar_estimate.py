"""Lidar sensor models estimated from a sweep's points, for sources that do not describe their lidar.

A drive-log v1.1 sensor model (``lidar_model.py``) says which rays a sweep fired, so that the rays that returned
nothing are known. Most datasets ship points only. The beams are recovered, in order of preference, from

- **rings**: a per-point beam label the source gives (ROS ``ring``, nuScenes' ring index, Argoverse 2's
  ``laser_number``);
- **scan order**: points stored beam after beam, each beam one turn of azimuth (KITTI's velodyne files): a new
  beam starts where the unwrapped azimuth completes a turn;
- **elevations**: the points' elevations form separate peaks, one per beam, in the sensor's level frame. A source
  whose "sensor frame" is tilted against the spin axis (PandaSet's lidar pose) smears every beam into a wave
  over azimuth; the tilt that makes the peaks sharpest is searched and the points are written in that level frame.

Each beam's elevation is the median elevation of its points; the columns are one turn divided by the median
azimuth step between a beam's neighbouring points. Every estimate is marked ``estimated``. Sources whose points
form no beams (non-spinning or subsampled lidars, such as DGP's test scene) get no model, with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .lidar_model import MAX_BEAMS, MAX_COLUMNS, MAX_RANGE_M, LidarSensor, SweepLayout

DEFAULT_SPIN_HZ = 10.0
FAR_M = 5.0  # metres: nearer points are left out of elevation statistics (mount offsets bend their elevations)
BIN_DEG = 0.02  # degrees: elevation histogram resolution when looking for beams
MIN_BEAM_GAP_DEG = 0.08  # degrees: peaks closer than this are one beam
CLUSTERED_SHARE = 0.8  # share of far points within a third of a gap of a peak for the elevations to form beams
MIN_BEAMS = 4


@dataclass(frozen=True)
class BeamModel:
    """An estimated sensor and how a sweep's points find their beam."""

    sensor: LidarSensor
    how: str  # "rings", "scan order" or "elevations"
    rings: np.ndarray | None = None  # [beams] the source's ring label of each beam ("rings"); None otherwise
    level: np.ndarray | None = None  # [3, 3] source sensor frame -> the level frame of the beams; None: the same

    def pose_fix(self) -> np.ndarray:
        """[4, 4] to right-multiply the source's sensor-to-world pose with: the level frame's pose."""
        fix = np.eye(4)
        if self.level is not None:
            fix[:3, :3] = self.level.T
        return fix

    def leveled(self, points: np.ndarray) -> np.ndarray:
        """``points`` [N, >=3] with xyz in the level frame (a copy when rotated)."""
        if self.level is None:
            return points
        out = points.copy()
        out[:, :3] = points[:, :3] @ self.level.T.astype(points.dtype)
        return out

    def layout(self, xyz: np.ndarray, ring: np.ndarray | None = None,
               time: np.ndarray | None = None) -> SweepLayout | None:
        """Beam, column (and time) of every point (xyz in the level frame); None when a point's ring is unknown."""
        if self.how == "scan order" and ring is None:
            ring = rings_from_scan_order(xyz)
        if self.how == "elevations":
            beam = nearest_beam(elevation_deg(xyz), np.asarray(self.sensor.beam_elevations_deg))
        else:
            if ring is None or self.rings is None:
                return None
            beam = np.searchsorted(self.rings, ring)
            if np.any(beam >= len(self.rings)) or np.any(self.rings[np.minimum(beam, len(self.rings) - 1)] != ring):
                return None
        step = 2.0 * math.pi / self.sensor.columns
        az = np.arctan2(xyz[:, 1], xyz[:, 0]) - math.radians(self.sensor.azimuth_start_deg)
        column = np.round(az / step).astype(np.int64) % self.sensor.columns
        return SweepLayout(beam.astype(np.int32), column.astype(np.int32),
                           None if time is None else np.asarray(time, np.float32))


@dataclass(frozen=True)
class Estimate:
    """A reader's estimate for one lidar: the model, or None with the reason."""

    model: BeamModel | None
    reason: str = ""


def elevation_deg(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz, np.float64)
    return np.degrees(np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1])))


def nearest_beam(elev: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index of the nearest of the ascending ``centers`` for each elevation."""
    mids = (centers[1:] + centers[:-1]) / 2
    return np.searchsorted(mids, elev)


def _columns(xyz: np.ndarray, beam: np.ndarray) -> int:
    """One turn over the median azimuth step between neighbouring points of a beam (at least the fullest beam's
    point count), within the format's limit."""
    az = np.arctan2(xyz[:, 1], xyz[:, 0])
    order = np.lexsort((az, beam))
    a, b = az[order], beam[order]
    step = np.diff(a)[(np.diff(b) == 0)]
    step = step[step > 1e-6]
    fullest = int(np.bincount(beam).max()) if len(beam) else 1
    from_step = int(round(2 * math.pi / float(np.median(step)))) if len(step) else fullest
    return int(min(MAX_COLUMNS, max(fullest, from_step, 1)))


def _sensor(xyz: np.ndarray, beam: np.ndarray, elevations: list[float], period_s: float | None) -> LidarSensor:
    rng = np.linalg.norm(np.asarray(xyz, np.float64), axis=1)
    rng = rng[rng > 0]
    spin = 1.0 / period_s if period_s and period_s > 0 else DEFAULT_SPIN_HZ
    lo = float(min(0.5, 0.9 * rng.min())) if len(rng) else 0.5
    hi = float(min(MAX_RANGE_M, max(80.0, 1.05 * rng.max()))) if len(rng) else 80.0
    return LidarSensor(tuple(float(e) for e in elevations), _columns(xyz, beam), min_range_m=lo, max_range_m=hi,
                       spin_rate_hz=min(1000.0, max(0.1, spin)), rotation="ccw", azimuth_start_deg=-180.0,
                       estimated=True)


def from_rings(xyz: np.ndarray, ring: np.ndarray, period_s: float | None = None, how: str = "rings") -> Estimate:
    """The sensor of a sweep whose points carry their beam label ``ring`` [N]: one beam per label, in label order."""
    if not len(xyz):
        return Estimate(None, "the first sweep has no points")
    rings, beam = np.unique(np.asarray(ring), return_inverse=True)
    if len(rings) > MAX_BEAMS:
        return Estimate(None, f"{len(rings)} rings, more than the format's {MAX_BEAMS} beams")
    elev = elevation_deg(xyz)
    beams = [float(np.median(elev[beam == k])) for k in range(len(rings))]
    return Estimate(BeamModel(_sensor(xyz, beam, beams, period_s), how, rings=rings))


def rings_from_scan_order(xyz: np.ndarray) -> np.ndarray | None:
    """Beam label of each point of a sweep stored beam after beam (one turn of azimuth each); None when the
    points are not in that order (the azimuth does not turn steadily, or the beams' elevations overlap)."""
    if len(xyz) < 64:
        return None
    az = np.unwrap(np.arctan2(xyz[:, 1], xyz[:, 0]))
    if az[-1] < az[0]:
        az = -az  # clockwise scans
    back = np.diff(az) < -0.5  # a scan goes forward; big backward jumps mean another order
    turns = (az[-1] - az[0]) / (2 * math.pi)
    if back.mean() > 0.001 or not 1.5 <= turns <= MAX_BEAMS + 1:
        return None
    start = az[0] + _turn_start(np.mod(az - az[0], 2 * math.pi), len(xyz) / turns)
    ring = np.floor((az - start) / (2 * math.pi)).astype(np.int64)
    ring -= ring.min()
    ring = _refine_boundaries(elevation_deg(xyz), ring)
    return ring if _beams_are_flat(xyz, ring) else None


def _refine_boundaries(elev: np.ndarray, ring: np.ndarray, window: int = 4) -> np.ndarray:
    """Move each change of beam in the point sequence by up to ``window`` points to where the elevations on
    either side best match the two beams' median elevations: a beam whose first rays returned nothing starts a
    step later than its turn, which azimuth alone cannot tell from the previous beam's last rays."""
    out = ring.copy()
    medians = np.array([np.median(elev[ring == k]) for k in range(int(ring.max()) + 1)])
    for b in np.flatnonzero(np.diff(ring)) + 1:
        k = ring[b - 1]
        lo, hi = max(b - window, 1), min(b + window, len(ring) - 1)
        if ring[lo - 1] != k or ring[hi] != k + 1:
            continue  # another change inside the window: leave this one
        seg = elev[lo - 1:hi + 1]
        cost = [np.abs(seg[:j] - medians[k]).sum() + np.abs(seg[j:] - medians[k + 1]).sum()
                for j in range(1, len(seg))]
        split = lo - 1 + 1 + int(np.argmin(cost))
        out[lo:hi] = np.where(np.arange(lo, hi) < split, k, k + 1)
    return out


def _turn_start(wrapped: np.ndarray, per_turn: float) -> float:
    """Where (radians after the first point) a beam's turn starts: the middle of the widest azimuth gap that no
    point covers (sensors that leave one out), else just before the first point."""
    bins = int(np.clip(per_turn / 8, 36, 720))  # about 8 points a bin: only real gaps are empty
    hist = np.histogram(wrapped, bins=bins, range=(0, 2 * math.pi))[0]
    empty = np.flatnonzero(hist == 0)
    if len(empty) >= 2:
        middle, width = _widest_gap(empty, bins)
        if width >= 2:
            return middle * 2 * math.pi / bins
    step = 2 * math.pi / max(per_turn, 1.0)
    return -step / 2


def _widest_gap(empty: np.ndarray, n: int) -> tuple[float, int]:
    """Middle (in bins) and width of the longest run of consecutive empty bins of a circular histogram."""
    runs, run_start, prev = [], empty[0], empty[0]
    for e in empty[1:]:
        if e != prev + 1:
            runs.append((run_start, prev))
            run_start = e
        prev = e
    runs.append((run_start, prev))
    if len(runs) > 1 and runs[0][0] == 0 and runs[-1][1] == n - 1:  # the gap wraps around
        runs[0] = (runs[-1][0] - n, runs[0][1])
        runs.pop()
    a, b = max(runs, key=lambda r: r[1] - r[0])
    return ((a + b + 1) / 2) % n, int(b - a + 1)


def _beams_are_flat(xyz: np.ndarray, ring: np.ndarray) -> bool:
    """True when each beam's far points keep to one elevation (median spread under a degree)."""
    far = np.hypot(xyz[:, 0], xyz[:, 1]) > FAR_M
    elev = elevation_deg(xyz)
    spread = [np.median(np.abs(elev[m] - np.median(elev[m]))) for k in np.unique(ring)
              if (m := far & (ring == k)).sum() >= 16]
    return bool(spread) and float(np.median(spread)) < 1.0


def beam_peaks(elev: np.ndarray) -> np.ndarray | None:
    """Ascending elevations (degrees) of the beams that the elevations ``elev`` [N] form, or None when most of
    them lie between peaks (no separate beams)."""
    if len(elev) < 256:
        return None
    lo, hi = float(elev.min()) - 2 * BIN_DEG, float(elev.max()) + 2 * BIN_DEG
    hist, edges = np.histogram(elev, bins=max(8, int((hi - lo) / BIN_DEG)), range=(lo, hi))
    smooth = np.convolve(hist, [0.25, 0.5, 0.25], mode="same")
    floor = max(3.0, 0.002 * len(elev))
    peak = (smooth > floor) & (smooth >= np.roll(smooth, 1)) & (smooth > np.roll(smooth, -1))
    centers = (edges[:-1] + edges[1:])[peak] / 2
    keep: list[float] = []
    for c, s in sorted(zip(centers, smooth[peak]), key=lambda cs: -cs[1]):
        if all(abs(c - k) >= MIN_BEAM_GAP_DEG for k in keep):
            keep.append(float(c))
    if len(keep) < MIN_BEAMS or len(keep) > MAX_BEAMS:
        return None
    centers = np.sort(np.array(keep))
    gaps = np.diff(centers)
    k = nearest_beam(elev, centers)
    local = np.minimum(np.r_[gaps, np.inf][k], np.r_[np.inf, gaps][k])
    near = np.abs(elev - centers[k]) <= local / 3
    return centers if near.mean() >= CLUSTERED_SHARE else None


def _sharpness(elev: np.ndarray) -> float:
    hist = np.histogram(elev, bins=np.arange(-90.0, 90.0 + BIN_DEG, 2.5 * BIN_DEG))[0].astype(np.float64)
    return float((hist ** 2).sum())


def _tilt(roll: float, pitch: float) -> np.ndarray:
    cr, sr, cp, sp = math.cos(roll), math.sin(roll), math.cos(pitch), math.sin(pitch)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    return ry @ rx


def level_rotation(xyz: np.ndarray, span_deg: float = 6.0) -> np.ndarray:
    """The rotation (roll and pitch within +-``span_deg``) that makes the elevations of far points ``xyz`` [N, 3]
    sharpest: coarse to fine grid search."""
    best, centre, step = np.eye(3), (0.0, 0.0), math.radians(span_deg) / 12
    for _ in range(3):
        score = -1.0
        for dr in np.arange(-12, 13) * step:
            for dp in np.arange(-12, 13) * step:
                rot = _tilt(centre[0] + dr, centre[1] + dp)
                s = _sharpness(elevation_deg(xyz @ rot.T))
                if s > score:
                    score, best, found = s, rot, (centre[0] + dr, centre[1] + dp)
        centre, step = found, step / 10
    return best


def from_elevations(xyz: np.ndarray, period_s: float | None = None, sample: int = 20000) -> Estimate:
    """The sensor of a sweep whose points carry no beam label: beams from the peaks of the far points'
    elevations, in the level frame when the given frame is tilted."""
    far = np.asarray(xyz, np.float64)[np.hypot(xyz[:, 0], xyz[:, 1]) > FAR_M]
    if len(far) < 256:
        return Estimate(None, f"only {len(far)} points farther than {FAR_M:g} m")
    pick = far[np.random.default_rng(0).choice(len(far), min(sample, len(far)), replace=False)]
    level = None
    peaks = beam_peaks(elevation_deg(pick))
    if peaks is None:
        level = level_rotation(pick)
        peaks = beam_peaks(elevation_deg(pick @ level.T))
    if peaks is None:
        return Estimate(None, "the points' elevations form no separate beams (not a spinning lidar, or points "
                              "moved after capture)")
    pts = np.asarray(xyz, np.float64) if level is None else np.asarray(xyz, np.float64) @ level.T
    far_mask = np.hypot(pts[:, 0], pts[:, 1]) > FAR_M
    beam = nearest_beam(elevation_deg(pts), peaks)
    elev = elevation_deg(pts)
    beams = [float(np.median(elev[far_mask & (beam == k)])) if (far_mask & (beam == k)).any() else float(peaks[k])
             for k in range(len(peaks))]
    beams = list(np.maximum.accumulate(np.array(beams)))  # keep ascending (nearest_beam needs it)
    sensor = _sensor(pts, beam, beams, period_s)
    return Estimate(BeamModel(sensor, "elevations", level=level))


def estimate(xyz: np.ndarray, ring: np.ndarray | None = None, period_s: float | None = None,
             scan_order: bool = False) -> Estimate:
    """The sensor behind one sweep's points ``xyz`` [N, 3] (its frame): from rings when given, else from the scan
    order when ``scan_order`` and the points follow it, else from elevations."""
    if ring is not None:
        return from_rings(xyz, ring, period_s)
    if scan_order:
        found = rings_from_scan_order(xyz)
        if found is not None:
            return from_rings(xyz, found, period_s, how="scan order")
    return from_elevations(xyz, period_s)
