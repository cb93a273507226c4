"""Occupancy grids: where a trained scene's fields have any density, so that the fast renderer skips the rest.

One grid for the background and one for the proposal field, over the contracted cube the hash grids encode
(``SceneBox.contract``: the scene box is its middle half, the rest of space the outer shell), and one per actor
field over its box. A cell is occupied when the largest density of ``samples_per_cell`` random probes in it
exceeds ``threshold``; occupied cells are then grown by ``dilate`` cells, so that a thin surface between probes
is kept. The grids belong to the weights they were built from (``weights_fingerprint``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from ..config_io import to_dict

if TYPE_CHECKING:
    from .model import SceneModel


@dataclass
class OccupancyConfig:
    resolution: int = 128  # cells per axis of the background's and the proposal's grids (contracted cube)
    actor_resolution: int = 32  # cells per axis of each actor field's grid (over its box)
    samples_per_cell: int = 4  # random density probes per cell; the largest decides
    # density (per normalised unit, the compositing measure) under which a cell is empty: a ray through all of
    # space (length 2 in that measure) in such cells loses less than 0.2 % of its opacity
    threshold: float = 1e-3
    dilate: int = 1  # cells added on every side of an occupied cell
    chunk: int = 1 << 18  # probes per field call while building (memory)

    def check(self) -> None:
        if min(self.resolution, self.actor_resolution, self.samples_per_cell, self.chunk) < 1 or self.dilate < 0 \
                or not self.threshold >= 0:
            raise ValueError(f"occupancy: resolution, actor_resolution, samples_per_cell and chunk must be >= 1, "
                             f"dilate >= 0 and threshold >= 0, got {to_dict(self)}")


@dataclass
class Grid:
    """A boolean grid over [0, 1]^3 (``res`` cells per axis)."""

    cells: torch.Tensor  # [res, res, res] bool, indexed [x, y, z]

    @property
    def res(self) -> int:
        return self.cells.shape[0]

    def lookup(self, u: torch.Tensor) -> torch.Tensor:
        """[...] bool: whether the cell holding each point u [..., 3] in [0, 1]^3 is occupied."""
        ijk = (u * self.res).long().clamp(0, self.res - 1)
        flat = (ijk[..., 0] * self.res + ijk[..., 1]) * self.res + ijk[..., 2]
        return self.cells.reshape(-1)[flat]

    def share(self) -> float:
        """The occupied share of the cells."""
        return float(self.cells.float().mean()) if self.cells.numel() else 0.0


@dataclass
class OccupancyGrids:
    """Every field's grid, and what they were built from."""

    background: Grid
    proposal: Grid
    actors: list[Grid]  # one per actor field, over its box ([-half, half] mapped to [0, 1])
    fingerprint: str  # weights_fingerprint of the model they were built from
    config: OccupancyConfig = field(default_factory=OccupancyConfig)

    def to(self, device) -> "OccupancyGrids":
        move = lambda g: Grid(g.cells.to(device))  # noqa: E731
        return OccupancyGrids(move(self.background), move(self.proposal), [move(g) for g in self.actors],
                              self.fingerprint, self.config)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """A digest of every parameter and buffer of ``model``: grids built from other weights are stale."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@torch.no_grad()
def density_grid(density: Callable[[torch.Tensor], torch.Tensor], res: int, cfg: OccupancyConfig,
                 gen: torch.Generator, device) -> Grid:
    """The grid of ``density`` (points u [N, 3] in [0, 1]^3 -> density [N]) at ``res`` cells per axis."""
    n = res ** 3
    peak = torch.zeros(n, device=device)
    per = max(1, cfg.chunk // cfg.samples_per_cell)
    for start in range(0, n, per):
        c = torch.arange(start, min(n, start + per), device=device)
        ijk = torch.stack([c // (res * res), (c // res) % res, c % res], -1).float()  # [M, 3]
        jitter = torch.rand(cfg.samples_per_cell, len(c), 3, generator=gen).to(device)
        u = ((ijk[None] + jitter) / res).reshape(-1, 3)
        peak[c] = density(u).view(cfg.samples_per_cell, -1).amax(0).float()
    occ = (peak > cfg.threshold).view(1, 1, res, res, res).float()
    if cfg.dilate:
        k = 2 * cfg.dilate + 1
        occ = F.max_pool3d(occ, k, stride=1, padding=cfg.dilate)
    return Grid(occ[0, 0] > 0)


@torch.no_grad()
def build_occupancy(model: "SceneModel", cfg: OccupancyConfig | None = None, seed: int = 0,
                    on_field: Callable[[str], None] | None = None) -> OccupancyGrids:
    """Every field's grid for ``model`` (``on_field(name)`` as each starts: building takes seconds on a CPU)."""
    cfg = cfg or OccupancyConfig()
    cfg.check()
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    box = model.box

    def stage(name: str) -> None:
        if on_field:
            on_field(name)

    stage("background")
    background = density_grid(lambda u: model.background.density(box.uncontract(u))[0], cfg.resolution, cfg, gen,
                              device)
    stage("proposal")
    proposal = density_grid(lambda u: model.proposal(box.uncontract(u)), cfg.resolution, cfg, gen, device)
    actors = []
    for k in range(model.num_actor_fields):
        stage(f"actor {k + 1}/{model.num_actor_fields}")
        view = model.actor_view(k)
        actors.append(density_grid(lambda u: view((u - 0.5) * 2 * view.half_size, torch.zeros_like(u))[0],
                                   cfg.actor_resolution, cfg, gen, device))
    return OccupancyGrids(background, proposal, actors, weights_fingerprint(model), cfg)
