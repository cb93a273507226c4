"""The occupancy grids of a scene folder (``occupancy.pt``, beside the weights): built once, checked against the
weights on every load.

The file records the fingerprint of the weights it was built from; grids of other weights (training resumed, a
``model.pt`` replaced) are rebuilt with a log line saying so, never used. It is a cache: a folder that cannot be
written keeps the grids in memory, and a file that is damaged or from another version is rebuilt.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from ..config_io import from_dict, to_dict
from ..render.model import SceneModel
from ..render.occupancy import Grid, OccupancyConfig, OccupancyGrids, build_occupancy, weights_fingerprint
from .checkpoint import save_atomic

log = logging.getLogger(__name__)

OCCUPANCY_FILE = "occupancy.pt"
FORMAT = "simrecon-occupancy"
VERSION = 1


def occupancy_config(model: SceneModel) -> OccupancyConfig:
    """The grids' settings for ``model``: no finer than its background field's finest level."""
    cfg = OccupancyConfig()
    cfg.resolution = min(cfg.resolution, model.cfg.background.max_resolution)
    return cfg


def save_occupancy(scene_dir: Path, grids: OccupancyGrids) -> None:
    """Write ``occupancy.pt`` atomically (OSError naming the file when it cannot be written)."""
    save_atomic({"format": FORMAT, "version": VERSION, "fingerprint": grids.fingerprint,
                 "config": to_dict(grids.config), "background": grids.background.cells.cpu(),
                 "proposal": grids.proposal.cells.cpu(), "actors": [g.cells.cpu() for g in grids.actors]},
                Path(scene_dir) / OCCUPANCY_FILE)


def _grid(value: object, what: str) -> Grid:
    if not isinstance(value, torch.Tensor) or value.dtype != torch.bool or value.ndim != 3 \
            or len(set(value.shape)) != 1:
        raise ValueError(f"{what}: not a cubic boolean grid")
    return Grid(value)


def read_occupancy(scene_dir: Path, model: SceneModel) -> OccupancyGrids | None:
    """The grids ``occupancy.pt`` holds for these weights; None (with a log line) when there is no file, it is
    unreadable or of another format, or it was built from other weights."""
    path = Path(scene_dir) / OCCUPANCY_FILE
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
            raise ValueError("not a simrecon occupancy file of this version")
        grids = OccupancyGrids(_grid(data.get("background"), "background"), _grid(data.get("proposal"), "proposal"),
                               [_grid(g, f"actor {i}") for i, g in enumerate(data.get("actors") or [])],
                               str(data.get("fingerprint")), from_dict(OccupancyConfig, data.get("config") or {},
                                                                       "config"))
    except Exception as exc:  # a damaged cache is rebuilt, whatever is wrong with it  # noqa: BLE001
        log.warning("%s: unreadable (%s): rebuilding it", path, (str(exc).splitlines() or [""])[0])
        return None
    if grids.fingerprint != weights_fingerprint(model) or len(grids.actors) != model.num_actor_fields:
        log.warning("%s: built from other weights than %s holds now: rebuilding it", path, "model.pt")
        return None
    return grids


def occupancy_for(scene_dir: Path, model: SceneModel, on_field: Callable[[str], None] | None = None
                  ) -> OccupancyGrids:
    """The scene's grids: read from ``occupancy.pt`` when they fit the weights, else built and written there
    (kept in memory, with a warning, when the folder cannot be written)."""
    device = next(model.parameters()).device
    grids = read_occupancy(scene_dir, model)
    if grids is not None:
        return grids.to(device)
    grids = build_occupancy(model, occupancy_config(model), on_field=on_field)
    try:
        save_occupancy(scene_dir, grids)
    except OSError as exc:
        log.warning("%s (the grids stay in memory for this run)", (str(exc).splitlines() or [""])[0])
    return grids
