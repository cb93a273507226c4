"""Seeded pose noise for the synthetic street: what a real log's GPS/INS poses and detector tracks are like.

Every perturbation is exactly ``pos_m`` metres long in a uniformly random direction and a rotation of exactly
``rot_deg`` degrees, so every noisy pose is off by the same known amount: camera/ego noise is one rigid move of
the whole rig per timestamp (about a random axis through the vehicle origin, applied in the vehicle frame), track
noise a move of the box per keyframe (a yaw of +-``rot_deg`` about the box's up axis). The images are rendered at
the true poses; only the poses written into the log are moved. The noise has its own random stream, so the
images of a seed are the same with and without it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.geometry import rot_z
from ..data.io import atomic_write_text
from ..data.model import Actor, Frame, Track

TRUE_POSES = "true_poses.json"  # OUT/true_poses.json, beside OUT/log, when the log's poses carry noise


def _direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _rotvec(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation [3, 3] of ``angle`` radians about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def rig_noise(n: int, pos_m: float, rot_deg: float, seed: int) -> list[np.ndarray]:
    """``n`` vehicle-frame perturbations [4, 4]: a rotation of ``rot_deg`` about a random axis and a translation
    of ``pos_m`` along a random direction each."""
    rng = np.random.default_rng([seed, 30, 1])
    out = []
    for _ in range(n):
        m = np.eye(4)
        m[:3, :3] = _rotvec(_direction(rng), np.radians(rot_deg))
        m[:3, 3] = pos_m * _direction(rng)
        out.append(m)
    return out


def noisy_actors(actors: list[Actor], pos_m: float, rot_deg: float, seed: int) -> list[Actor]:
    """The actors with every track keyframe moved ``pos_m`` in a random direction and yawed by +-``rot_deg``
    (the actors themselves are left as they are)."""
    if pos_m == 0 and rot_deg == 0:
        return actors
    rng = np.random.default_rng([seed, 30, 2])
    out = []
    for a in actors:
        poses = a.track.poses.copy()
        for p in poses:
            p[:3, :3] = p[:3, :3] @ rot_z(np.radians(rot_deg) * rng.choice([-1.0, 1.0]))
            p[:3, 3] = p[:3, 3] + pos_m * _direction(rng)
        out.append(Actor(a.id, a.cls, a.size.copy(), Track(a.track.timestamps.copy(), poses), static=a.static))
    return out


def write_true_poses(out: Path, frames: list[Frame], ego: Track, actors: list[Actor], noise: dict) -> None:
    """``out/true_poses.json``: the exact camera, ego and actor poses that the noisy log's poses stand for."""
    doc = {
        "description": "exact poses of the log beside this file, whose poses carry seeded noise (docs/synthetic.md)",
        "noise": noise,
        "frames": [{"file_path": f.file_path, "camera": f.camera, "timestamp": f.timestamp,
                    "transform_matrix": np.asarray(f.c2w).tolist()} for f in frames],
        "ego": [{"timestamp": float(t), "transform_matrix": p.tolist()} for t, p in zip(ego.timestamps, ego.poses)],
        "actors": {a.id: [{"timestamp": float(t), "transform_matrix": p.tolist()}
                          for t, p in zip(a.track.timestamps, a.track.poses)] for a in actors},
    }
    atomic_write_text(out / TRUE_POSES, json.dumps(doc))


def read_true_poses(path: Path) -> dict[str, np.ndarray]:
    """{file_path: exact camera-to-world [4, 4]} from a ``true_poses.json``."""
    doc = json.loads(Path(path).read_text())
    return {f["file_path"]: np.array(f["transform_matrix"], dtype=float) for f in doc["frames"]}
