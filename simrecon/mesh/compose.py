"""Helpers for the scenario composer: actors whose ``source`` is ``asset:<path or name>``.

The composer resolves every asset source of a scenario once (``scenario_assets``), takes class and size from
the sidecars, places the actor's box on the ground (``ground_z``) and renders through
``SceneWithAssets(scene, assets)``, which draws ``asset:`` placements from the meshes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .assets import Asset, load_asset, resolve_asset
from .render import ASSET_PREFIX, SceneWithAssets, asset_name, is_asset_source


def scenario_assets(sources: Iterable[str], scene_dir: str | Path | None, base_dir: str | Path | None
                    ) -> dict[str, Asset]:
    """``{ref: Asset}`` for every ``asset:<ref>`` in ``sources`` (others are ignored). ``ref`` is a path
    (absolute or relative to ``base_dir``, the scenario's folder) or a name in ``scene_dir/assets``.
    One-line FileNotFoundError / ValueError for a missing or bad asset."""
    out: dict[str, Asset] = {}
    for src in sources:
        if not is_asset_source(src):
            continue
        ref = asset_name(src)
        if ref not in out:
            out[ref] = load_asset(resolve_asset(ref, scene_dir, base_dir), name=ref)
    return out


def with_assets(scene, assets: dict[str, Asset]):
    """``scene`` itself when there are no assets, else ``SceneWithAssets(scene, assets)``."""
    return SceneWithAssets(scene, assets) if assets else scene


def ground_z(log) -> float:
    """Height of the ground under the actors: the median bottom (box centre z - height / 2) of the logged
    actors' first poses; 0 when the log has no actors."""
    bottoms = [float(a.track.poses[0][2, 3]) - float(a.size[2]) / 2 for a in log.actors if len(a.track)]
    return float(np.median(bottoms)) if bottoms else 0.0


__all__ = ["ASSET_PREFIX", "ground_z", "scenario_assets", "with_assets"]
