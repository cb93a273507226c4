"""Tiny fleets for the fleet tests: synthetic logs, a broken one, spec files (no tests here: test_fleet*.py import
it)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import yaml
from helpers import XS

from simrecon.synth import generate

# A few steps of the tiny preset: seconds per log. Two held-out frames per camera for eval; no priors (they take
# seconds to build and are not what a fleet test is about).
RECONSTRUCT = {"preset": "tiny", "steps": 3, "holdout": "every:2",
               "set": ["priors.free_columns.weight=0", "priors.lidar_prior.steps=0"]}


def make_logs(root: Path, n: int = 2, broken: bool = True) -> Path:
    """``root/street<i>/log`` for ``n`` seeds and, with ``broken``, ``root/broken/log``: a copy of the first
    whose first image is cut short. Returns ``root``."""
    for i in range(n):
        generate(root / f"street{i}", dataclasses.replace(XS, seed=i))
    if broken:
        shutil.copytree(root / "street0" / "log", root / "broken" / "log")
        image = sorted((root / "broken" / "log" / "images").rglob("*.png"))[0]
        image.write_bytes(image.read_bytes()[:200])
    (root / "front.yaml").write_text(yaml.safe_dump({"name": "front", "scene": "street0/log", "cameras": ["front"],
                                                     "outputs": ["rgb", "depth"]}))
    return root


def write_spec(root: Path, stages: list, logs: list | None = None, name: str = "fleet.yaml", **top) -> Path:
    doc = {"name": "test", "logs": logs or ["street*/log", "broken/log"], "stages": stages, **top}
    path = root / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def pipeline(retries: int = 1) -> list:
    """validate -> reconstruct -> eval -> compose, the fleet the tests run."""
    return ["validate", {"reconstruct": {**RECONSTRUCT, "retries": retries}}, "eval",
            {"compose": {"scenarios": ["front.yaml"]}}]


def make_capture(root: Path, log: Path) -> Path:
    """A nerfstudio capture (``transforms.json`` + images, no lidar or actors) made from the drive log ``log``:
    a raw dataset for a convert stage."""
    import json

    shutil.copytree(log / "images", root / "images")
    doc = json.loads((log / "transforms.json").read_text())
    keep = {k: v for k, v in doc.items() if k in ("camera_model", "fl_x", "fl_y", "cx", "cy", "w", "h", "frames")}
    (root / "transforms.json").write_text(json.dumps(keep))
    return root
