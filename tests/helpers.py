"""Constants shared by tests (imported as a top-level module: pytest puts tests/ on sys.path)."""

import json
from pathlib import Path

from simrecon.synth import SynthConfig
from simrecon.train import TrainConfig, preset

# 5 timestamps at 160x96: every synth-based test runs on this in a few seconds.
SMALL = SynthConfig(seconds=0.5, width=160, height=96, seed=0, lidar_azimuths=512)

# 3 timestamps at 64x48 without ground truth: tests about files and folders, not pictures.
XS = SynthConfig(seconds=0.3, width=64, height=48, seed=0, lidar_azimuths=256, ground_truth=False)


def tiny_files(steps: int = 2) -> TrainConfig:
    """The tiny preset for tests about scene files: ``steps`` steps, nothing held out, no free-columns map (it
    takes seconds to build)."""
    cfg = preset("tiny")
    cfg.budget.steps, cfg.holdout = steps, "none"
    cfg.priors.free_columns.weight = 0.0
    return cfg


def fit_steps(model, data, gen, n: int, optim, batch: int = 1024, correct=None) -> None:
    """``n`` optimiser steps of ``model`` on ``batch`` random training pixels of ``data`` (a TrainData): colour MSE
    plus the proposal's interlevel loss; ``correct(rays, pixels)`` may move the rays first (pose corrections)."""
    from simrecon.render import TrainingInputs

    for _ in range(n):
        pixels = data.draw_pixels(batch, gen)
        rays, target = data.pixel_rays(pixels)
        if correct is not None:
            rays = correct(rays, pixels)
        out = model(rays, train=TrainingInputs(stratified=True))
        loss = ((out.rgb - target) ** 2).mean() + out.proposal.interlevel
        optim.zero_grad()
        loss.backward()
        optim.step()


def edit_log(root: Path, fn) -> None:
    """Apply ``fn`` to the parsed ``root/transforms.json`` of a drive log and write it back."""
    path = root / "transforms.json"
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))
