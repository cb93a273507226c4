"""Procedural textures and lighting for the synthetic street (albedo by material, Lambert sun, sky gradient).

Textures are functions of world or box-local coordinates, so every view of a surface agrees: a
requirement for novel-view ground truth.
"""

from __future__ import annotations

import math

import torch

from .raycast import GROUND, NOTHING, Hits
from .scene import LANE_WIDTH, MAT_CABIN, MAT_CAR_BODY, MAT_FACADE, MAT_SIDEWALK, ROAD_HALF

SUN = torch.tensor([0.45, 0.3, 0.84]) / math.sqrt(0.45**2 + 0.3**2 + 0.84**2)
SKY_HORIZON = torch.tensor([0.86, 0.9, 0.95])
SKY_ZENITH = torch.tensor([0.32, 0.52, 0.86])


def _hash(ix: torch.Tensor, iy: torch.Tensor, seed: int) -> torch.Tensor:
    """Deterministic pseudo-random values in [0, 1) per integer cell (int64 wrap-around hashing)."""
    h = ix * 374761393 + iy * 668265263 + seed * 1442695041
    h = (h ^ (h >> 13)) * 1274126177
    h = h ^ (h >> 16)
    return (h & 0xFFFF).float() / 65536.0


def value_noise(x: torch.Tensor, y: torch.Tensor, scale: float, seed: int) -> torch.Tensor:
    """Smooth value noise in [0, 1) with features of size ``scale`` metres."""
    x = x / scale
    y = y / scale
    x0, y0 = torch.floor(x), torch.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    ix, iy = x0.long(), y0.long()
    n00, n10 = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    n01, n11 = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (n00 * (1 - fx) + n10 * fx) * (1 - fy) + (n01 * (1 - fx) + n11 * fx) * fy


def sky_color(dirs: torch.Tensor) -> torch.Tensor:
    """Sky gradient [N, 3] for unit directions [N, 3] (horizon pale, zenith blue)."""
    t = (dirs[:, 2].clamp(min=0.0) / 0.6).clamp(max=1.0) ** 0.7
    return SKY_HORIZON * (1 - t[:, None]) + SKY_ZENITH * t[:, None]


def _ground_albedo(p: torch.Tensor, seed: int) -> torch.Tensor:
    x, y = p[:, 0], p[:, 1]
    fine = value_noise(x, y, 0.35, seed) - 0.5
    coarse = value_noise(x, y, 4.0, seed + 1) - 0.5
    asphalt = (0.29 + 0.07 * fine + 0.05 * coarse)[:, None] * torch.tensor([1.0, 1.0, 1.04])
    grass = torch.tensor([0.3, 0.38, 0.2]) * (0.85 + 0.4 * fine + 0.3 * coarse)[:, None]
    out = torch.where((y.abs() <= ROAD_HALF)[:, None], asphalt, grass)
    white = torch.tensor([0.92, 0.92, 0.9])
    yellow = torch.tensor([0.9, 0.72, 0.15])
    center = ((y - 0.13).abs() < 0.06) | ((y + 0.13).abs() < 0.06)
    dashed = (((y.abs() - LANE_WIDTH).abs() < 0.075) & (torch.remainder(x, 9.0) < 3.0))
    edge = (y.abs() - (ROAD_HALF - 0.25)).abs() < 0.08
    out = torch.where(center[:, None], yellow, out)
    out = torch.where((dashed | edge)[:, None], white, out)
    return out


def _sidewalk_albedo(p: torch.Tensor, normal: torch.Tensor, base: torch.Tensor, seed: int) -> torch.Tensor:
    x, y = p[:, 0], p[:, 1]
    noise = value_noise(x, y, 0.5, seed + 2) - 0.5
    seam = (torch.remainder(x, 1.5) < 0.04) | (torch.remainder(y, 1.5) < 0.04)
    top = base * (1.0 + 0.15 * noise)[:, None] * torch.where(seam, 0.7, 1.0)[:, None]
    kerb = base * 0.8
    return torch.where((normal[:, 2] > 0.5)[:, None], top, kerb)


def _facade_albedo(loc: torch.Tensor, half: torch.Tensor, n_local: torch.Tensor, base: torch.Tensor,
                   seed: int) -> torch.Tensor:
    along_x = n_local[:, 1].abs() > 0.5  # faces whose normal is +-y run along x
    s = torch.where(along_x, loc[:, 0] + half[:, 0], loc[:, 1] + half[:, 1])
    h = loc[:, 2] + half[:, 2]
    floor = torch.floor(h / 3.2)
    fz = torch.remainder(h, 3.2)
    fs = torch.remainder(s, 2.6)
    upper = (floor >= 1) & (fz > 0.9) & (fz < 2.4) & (fs > 0.6) & (fs < 2.0)
    shop = (floor < 1) & (fz > 0.5) & (fz < 2.6) & (fs > 0.3) & (fs < 2.3)
    ledge = fz < 0.18
    shade = _hash(torch.floor(s / 2.6).long(), floor.long(), seed + 3)
    glass = torch.stack([0.12 + 0.1 * shade, 0.16 + 0.1 * shade, 0.22 + 0.12 * shade], dim=1)
    wall = base * (0.92 + 0.16 * (value_noise(s, h, 0.6, seed + 4) - 0.5))[:, None]
    out = torch.where(ledge[:, None] & (floor >= 1)[:, None], base * 0.7, wall)
    out = torch.where((upper | shop)[:, None], glass, out)
    roof = torch.tensor([0.3, 0.3, 0.32]).expand_as(out)
    return torch.where((n_local[:, 2].abs() > 0.5)[:, None], roof, out)


def _car_albedo(rel: torch.Tensor, n_local: torch.Tensor, base: torch.Tensor, material: torch.Tensor) -> torch.Tensor:
    """Body: headlights in front (+x), red tail lights at the back (-x), so front and back differ."""
    front = n_local[:, 0] > 0.5
    back = n_local[:, 0] < -0.5
    side = n_local[:, 1].abs() > 0.5
    lamp = (rel[:, 1].abs() > 0.5) & (rel[:, 1].abs() < 0.9) & (rel[:, 2] > 0.1)
    grille = (rel[:, 1].abs() < 0.4) & (rel[:, 2] < 0.3)
    plate = (rel[:, 1].abs() < 0.25) & (rel[:, 2] < 0.0) & (rel[:, 2] > -0.6)
    out = base.clone()
    out = torch.where((front & grille)[:, None], torch.tensor([0.08, 0.08, 0.09]), out)
    out = torch.where((front & lamp)[:, None], torch.tensor([0.97, 0.95, 0.82]), out)
    out = torch.where((back & lamp)[:, None], torch.tensor([0.8, 0.05, 0.04]), out)
    out = torch.where((back & plate)[:, None], torch.tensor([0.92, 0.92, 0.88]), out)
    out = torch.where((side & (rel[:, 2] < -0.6))[:, None], base * 0.45, out)
    # Cabin: glass all round except the roof and the pillars at the corners.
    glass = ((n_local[:, 2] < 0.5) & ~(side & (rel[:, 0].abs() > 0.85))) & (rel[:, 2] > -0.75)
    cabin = torch.where(glass[:, None], torch.tensor([0.09, 0.11, 0.15]), base)
    return torch.where((material == MAT_CABIN)[:, None], cabin, out)


def shade(hits: Hits, dirs: torch.Tensor, prim_material: torch.Tensor, prim_color: torch.Tensor,
          prim_half: torch.Tensor, prim_rot: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour [N, 3] in [0, 1] and surface albedo [N, 3] for each ray's hit (sky where nothing is hit)."""
    n = hits.t.shape[0]
    albedo = torch.zeros(n, 3)
    ground = hits.prim == GROUND
    albedo[ground] = _ground_albedo(hits.point[ground], seed)
    box = hits.prim >= 0
    if box.any():
        idx = hits.prim[box]
        mat = prim_material[idx]
        base = prim_color[idx]
        half = prim_half[idx]
        loc = hits.local[box]
        n_local = torch.einsum("mij,mi->mj", prim_rot[idx], hits.normal[box])
        rel = loc / half
        a = base.clone()
        m = mat == MAT_SIDEWALK
        a[m] = _sidewalk_albedo(hits.point[box][m], hits.normal[box][m], base[m], seed)
        m = mat == MAT_FACADE
        a[m] = _facade_albedo(loc[m], half[m], n_local[m], base[m], seed)
        m = (mat == MAT_CAR_BODY) | (mat == MAT_CABIN)
        a[m] = _car_albedo(rel[m], n_local[m], base[m], mat[m])
        albedo[box] = a
    light = 0.55 + 0.45 * (hits.normal @ SUN).clamp(min=0.0)
    color = (albedo * light[:, None]).clamp(0.0, 1.0)
    sky = hits.prim == NOTHING
    color[sky] = sky_color(dirs[sky])
    return color, albedo
