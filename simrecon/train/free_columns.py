"""Open air above the street: the lidar's empty space, extended upwards.

A driving lidar sees little above its own height (a 32-beam sensor's top beam is ~8 degrees up, a few metres
up a facade), so the geometry of upper floors comes from the cameras alone. Seen at grazing angles from a car
driving along them, a facade that bulges a metre or two into the street looks the same in every training view;
a lane-shifted render shows it (on the synthetic street, the upper-facade pixels whose depth is wrong have
their first opaque point a median 1.8 m in front of the facade: benchmarks/RESULTS.md).

The prior: a column of the ground plane that lidar rays crossed (free near the ground) and in which no lidar
return stands above the ground (no facade, pole, parked car or tree there) is taken to be open all the way
up, to the top of the scene box. Each training step draws random points in those columns and penalises the
background's and the proposal's density there. Columns next to any standing return are left alone, so the
facades themselves are never pulled. Returns inside tracked actors' boxes are ignored (actors have their own
fields; the background is empty in their boxes anyway).

What it assumes, and where that fails: nothing overhangs the street out of the lidar's sight. Tree canopies,
bridges or signs over the road that no sweep hit would be pushed towards transparency; the cameras see them
against the sky and pull back. Logs without lidar skip the prior.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config_io import doc
from ..data.model import DriveLog
from ..fields import SceneBox
from ..render import PointDensities, boxes_holding
from .data import TrainData


@dataclass
class FreeColumnsConfig:
    weight: float = doc(0.03, "weight of the prior (0: off); +1.3 dB held out with model.proposal_uniform "
                              "(benchmarks/RESULTS.md)", unit="factor")
    points: int = doc(4096, "random points in the free columns per training step", unit="points")
    cell: float = doc(0.4, "side of a ground-plane column (the grid grows it to stay within max_cells)", unit="m")
    max_cells: int = doc(1 << 20, "columns at most (the cell grows on very large boxes)", unit="cells")
    standing: float = doc(0.3, "a return this high above its column's lowest one stands (is not ground)", unit="m")
    clearance: float = doc(0.5, "the prior starts this high above the lowest free lidar point of a column",
                           unit="m")
    margin_cells: int = doc(1, "columns this close to a standing return are not free", unit="cells")
    max_returns: int = doc(200_000, "lidar returns that build the map (a random subset on bigger logs)",
                           unit="returns")
    max_free_points: int = doc(8_000_000, "points along the rays to them (bounds the map's memory, ~100 MB)",
                               unit="points")

    def check(self, where: str = "config.priors.free_columns") -> None:
        ok = (self.weight >= 0 and self.points >= 1 and self.cell > 0 and self.max_cells >= 1 and self.standing >= 0
              and self.clearance >= 0 and self.margin_cells >= 0 and self.max_returns >= 1
              and self.max_free_points >= 1)  # written as "ok" so that NaN fails
        if not ok:
            raise ValueError(f"{where}: needs weight >= 0, points >= 1, cell > 0, max_cells >= 1, "
                             f"standing, clearance and margin_cells >= 0, max_returns and "
                             f"max_free_points >= 1, got {self}")


@dataclass
class FreeColumns:
    """The free columns of a log: ground-plane cells and the height range the prior covers in each, in a frame
    whose z is the log's up (``rot`` maps world to it)."""

    rot: torch.Tensor  # [3, 3] world -> up frame
    origin: torch.Tensor  # [2] (x, y) of the grid's corner in the up frame
    cell: float  # side of a column
    ij: torch.Tensor  # [C, 2] long: the free columns' cells
    z_lo: torch.Tensor  # [C] where the prior starts in each (up frame)
    z_hi: float  # where it ends (the scene box's top)

    def __len__(self) -> int:
        return self.ij.shape[0]

    def loss(self, points: PointDensities, scale: float, weight: float) -> dict[str, torch.Tensor]:
        """:func:`free_columns_loss` of the densities a training render returned at points from :meth:`sample`
        (``TrainingInputs.points``), for a model of that ``scale``."""
        return free_columns_loss(points.sigma, points.sigma_proposal, self.cell / scale, weight)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """``n`` world points [n, 3], uniform over the free columns' volume."""
        height = (self.z_hi - self.z_lo).clamp(min=0.0)  # [C]
        col = torch.multinomial(height, n, replacement=True, generator=gen)  # [n]
        u = torch.rand(n, 3, generator=gen)
        xy = self.origin + (self.ij[col].float() + u[:, :2]) * self.cell  # [n, 2]
        z = self.z_lo[col] + u[:, 2] * height[col]  # [n]
        return torch.cat([xy, z[:, None]], 1) @ self.rot  # up frame -> world: rot^T x as a row product


def up_rotation(up: np.ndarray) -> np.ndarray:
    """Rotation [3, 3] taking the unit vector ``up`` [3] to +z (the identity when it already is)."""
    up = np.asarray(up, dtype=np.float64)
    norm = np.linalg.norm(up)
    if up.shape != (3,) or not np.isfinite(norm) or norm < 1e-9:
        raise ValueError(f"world_up must be a non-zero 3-vector, got {up.tolist()}")
    a, z = up / norm, np.array([0.0, 0.0, 1.0])
    v, c = np.cross(a, z), float(a @ z)
    if c < -1 + 1e-9:  # up is -z: half a turn about x
        return np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)  # Rodrigues for the turn from a to z


def _not_in_actor_boxes(log: DriveLog, points: np.ndarray, times: np.ndarray) -> np.ndarray:
    """[N] bool: the returns (points [N, 3], times [N]) outside every present actor's box (grown by 10 %)."""
    if not log.actors or not len(points):
        return np.ones(len(points), dtype=bool)
    uniq, which = np.unique(times, return_inverse=True)
    rot = np.tile(np.eye(3), (len(log.actors), len(uniq), 1, 1))  # [A, U, 3, 3] box to world
    trans = np.zeros((len(log.actors), len(uniq), 3))
    present = np.zeros((len(log.actors), len(uniq)), dtype=bool)
    for a, actor in enumerate(log.actors):
        for u, t in enumerate(uniq):
            pose = actor.pose_at(float(t))
            if pose is not None:
                rot[a, u], trans[a, u], present[a, u] = pose[:3, :3], pose[:3, 3], True
    half = np.array([np.asarray(actor.size, float) * 0.55 for actor in log.actors])
    owners = boxes_holding(*(torch.from_numpy(np.ascontiguousarray(v)) for v in (points.astype(np.float64), rot,
                                                                                  trans, half, present, which)))
    return owners.slot.numpy() < 0


def build_free_columns(log: DriveLog, origins: np.ndarray, points: np.ndarray, times: np.ndarray, box: SceneBox,
                       cfg: FreeColumnsConfig, seed: int = 0) -> FreeColumns | None:
    """The free columns from lidar returns (sensor origins, returns [N, 3] world, times [N]) within the scene
    box's footprint; None when there is none (no lidar, or every column stands)."""
    if len(points) == 0:
        return None
    if points.shape != origins.shape or points.ndim != 2 or points.shape[1] != 3 or times.shape != points.shape[:1]:
        raise ValueError(f"build_free_columns: origins {list(origins.shape)}, points {list(points.shape)} and times "
                         f"{list(times.shape)} must be [N, 3], [N, 3] and [N]")
    rng = np.random.default_rng(seed)
    if len(points) > cfg.max_returns:
        pick = np.sort(rng.choice(len(points), cfg.max_returns, replace=False))
        origins, points, times = origins[pick], points[pick], times[pick]
    keep = _not_in_actor_boxes(log, points, times)
    origins, points = origins[keep], points[keep]
    rot = up_rotation(log.world_up)
    o_up, p_up = (origins @ rot.T).astype(np.float32), (points @ rot.T).astype(np.float32)  # [N, 3] up frame
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) * box.half + box.center
    c_up = corners @ rot.T
    lo, hi = c_up.min(0), c_up.max(0)
    cell = max(cfg.cell, math.sqrt((hi[0] - lo[0]) * (hi[1] - lo[1]) / cfg.max_cells))
    nx, ny = math.ceil((hi[0] - lo[0]) / cell), math.ceil((hi[1] - lo[1]) / cell)

    def cells(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # [M, 2] -> flat cell [M], inside the grid [M]
        ij = np.floor((xy - lo[:2]) / cell).astype(np.int64)
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < nx) & (ij[:, 1] >= 0) & (ij[:, 1] < ny)
        return ij[:, 0] * ny + ij[:, 1], ok

    # Free space: points along each lidar ray up to a margin before its return (the lidar losses' 2 %), one per
    # cell length; per column the lowest of them.
    v = p_up - o_up
    dist = np.linalg.norm(v, axis=1)
    free_len = np.maximum(dist * 0.98 - cell, 0.0)
    count = np.ceil(free_len / cell).astype(np.int64)  # [N]
    if count.sum() > cfg.max_free_points:  # long-range lidar: a random subset of the rays, within the budget
        order = rng.permutation(len(count))
        count[order[np.cumsum(count[order]) > cfg.max_free_points]] = 0
    ray = np.repeat(np.arange(len(dist)), count)
    step = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
    jitter = rng.random(len(step), dtype=np.float32)
    t = (step.astype(np.float32) + jitter) * np.float32(cell) / np.maximum(dist[ray], 1e-9)  # [M] share of the way
    free = o_up[ray] + v[ray] * t[:, None]  # [M, 3]
    fc, ok = cells(free[:, :2])
    z_free = np.full(nx * ny, np.inf)
    np.minimum.at(z_free, fc[ok], free[ok, 2])
    # Standing returns: higher than `standing` above the lowest return or free point of their column.
    rc, rok = cells(p_up[:, :2])
    ground = z_free.copy()
    np.minimum.at(ground, rc[rok], p_up[rok, 2])
    stands = np.zeros(nx * ny, dtype=bool)
    high = rok.copy()
    high[rok] = p_up[rok, 2] > ground[rc[rok]] + cfg.standing
    stands[rc[high]] = True
    if cfg.margin_cells:  # grow by margin_cells in every direction, diagonals included: a max over the square
        m = cfg.margin_cells
        grid = torch.from_numpy(stands.reshape(1, 1, nx, ny).astype(np.float32))
        stands = torch.nn.functional.max_pool2d(grid, 2 * m + 1, stride=1, padding=m).numpy().reshape(-1) > 0
    z_lo = z_free + cfg.clearance
    is_free = np.isfinite(z_free) & ~stands & (z_lo < hi[2])
    idx = np.nonzero(is_free)[0]
    if not len(idx):
        return None
    ij = np.stack([idx // ny, idx % ny], 1)
    return FreeColumns(rot=torch.as_tensor(rot, dtype=torch.float32),
                       origin=torch.as_tensor(lo[:2], dtype=torch.float32), cell=float(cell),
                       ij=torch.as_tensor(ij), z_lo=torch.as_tensor(z_lo[idx], dtype=torch.float32),
                       z_hi=float(hi[2]))


def free_columns_of(data: TrainData, box: SceneBox, cfg: FreeColumnsConfig, seed: int = 0) -> FreeColumns | None:
    """The free columns of a log's training lidar (``data``); None without lidar, with the prior off
    (``cfg.weight`` 0) or when no column is free."""
    if not data.has_lidar or cfg.weight <= 0:
        return None
    return build_free_columns(data.log, data.lidar_origins.numpy(), data.lidar_points.numpy(),
                              data.lidar_times.numpy(), box, cfg, seed)


def free_columns_loss(sigma: torch.Tensor, sigma_proposal: torch.Tensor, delta: float,
                      weight: float) -> dict[str, torch.Tensor]:
    """The prior's losses from the background's and the proposal's densities [P] at P points of the free columns
    (``FreeColumns.sample``, rendered as ``SceneModel``'s ``probe``): ``weight`` times the mean of log1p(optical
    thickness) over an interval ``delta`` (normalised units, one cell) at each point. log1p: about linear for a
    faint density, a bounded gradient on a floater."""
    if sigma.ndim != 1 or sigma.shape != sigma_proposal.shape:
        raise ValueError(f"free_columns_loss: densities must be [P] and [P], got {list(sigma.shape)} and "
                         f"{list(sigma_proposal.shape)}")
    if sigma.numel() == 0:
        return {"free_columns": sigma.sum(), "free_columns_proposal": sigma_proposal.sum()}
    return {"free_columns": weight * torch.log1p(sigma * delta).mean(),
            "free_columns_proposal": weight * torch.log1p(sigma_proposal * delta).mean()}
