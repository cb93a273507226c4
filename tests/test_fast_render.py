"""The fast renderer (render/fast.py over render/occupancy.py): same images as the reference renderer with fewer
field evaluations; the occupancy grids are cached beside the weights, rebuilt when the weights change."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from simrecon.cli.main import main
from simrecon.render.fast import _front_to_back
from simrecon.render.occupancy import OccupancyConfig, density_grid
from simrecon.scene import load_scene
from simrecon.scene.occupancy_file import OCCUPANCY_FILE, read_occupancy
from simrecon.train import preset, reconstruct


@pytest.fixture(scope="module")
def trained(synth_small, tmp_path_factory) -> Path:
    """A tiny scene of the small street with its surfaces in place (lidar prior, then 40 steps)."""
    cfg = preset("tiny")
    cfg.budget.steps, cfg.holdout = 40, "every:2"
    cfg.priors.lidar_prior.steps = 60
    cfg.priors.free_columns.weight = 0.0
    scene = tmp_path_factory.mktemp("fast") / "scene"
    reconstruct(synth_small / "log", scene, cfg)
    return scene


def _agreement(a, b) -> tuple[float, float, float]:
    """PSNR (dB) between the two renders' colours, median depth difference (m) where both see a surface, share of
    pixels with the same instance id."""
    mse = float(np.mean((a.rgb - b.rgb) ** 2))
    both = np.isfinite(a.depth) & np.isfinite(b.depth)
    return (10 * math.log10(1 / max(mse, 1e-12)), float(np.median(np.abs(a.depth[both] - b.depth[both]))),
            float(np.mean(a.instance == b.instance)))


def test_fast_and_reference_renders_agree(trained):
    fast = load_scene(trained, device="cpu")
    ref = load_scene(trained, device="cpu", renderer="reference")
    assert (trained / OCCUPANCY_FILE).is_file(), "reconstruct writes the grids beside the weights"
    frame = next(f for f in fast.log.frames if f.file_path in set(fast.info.holdout))
    args = (frame.c2w, frame.intrinsics, frame.timestamp, frame.camera)
    want, got = ref.render_image(*args), fast.render_image(*args)
    # The same samples; those skipped hold density under the grids' threshold (1e-3 per normalised unit) or lie
    # behind 99.99 % opacity: colour differences of that order (> 50 dB), depth well under a centimetre.
    psnr, depth, same = _agreement(got, want)
    assert psnr > 50 and depth < 0.01 and same > 0.995, (psnr, depth, same)
    assert np.isfinite(want.depth).mean() > 0.3, "the trained street has surfaces to render"


def _ground_plate(model, height: float) -> None:
    """Background and proposal made an opaque slab below ``height`` (world z) and empty above."""
    def density(x):
        sigma = torch.where(x[:, 2] < height, 200.0, 0.0)
        return sigma, torch.zeros(len(x), model.cfg.background.geo_features)

    model.background.density = density
    model.proposal.forward = lambda x: density(x)[0]


def test_fast_render_skips_open_air_and_what_lies_behind_surfaces(trained, monkeypatch):
    fast = load_scene(trained, device="cpu")
    ref = load_scene(trained, device="cpu", renderer="reference")
    frame = fast.log.frames[0]
    ground = float(frame.c2w[2, 3]) - 1.5  # 1.5 m under the camera
    for sc in (fast, ref):
        _ground_plate(sc.model, ground)
    fast.renderer = "fast"
    fast._fast = None  # build the grids of the plate (not cached: the weights did not change)
    from simrecon.render.fast import FastRenderer
    from simrecon.render.occupancy import build_occupancy

    fast._fast = FastRenderer(fast.model, build_occupancy(fast.model, OccupancyConfig(resolution=32)))
    counts = {}
    for name, sc in (("ref", ref), ("fast", fast)):
        density = sc.model.background.density
        seen = []
        sc.model.background.density = lambda x, d=density, seen=seen: (seen.append(len(x)), d(x))[1]
        out = sc.render_image(frame.c2w, frame.intrinsics, frame.timestamp, frame.camera)
        counts[name] = (sum(seen), out)
    psnr, depth, same = _agreement(counts["fast"][1], counts["ref"][1])
    assert psnr > 50 and depth < 0.01 and same > 0.995, (psnr, depth, same)
    ground_seen = np.isfinite(counts["ref"][1].depth).mean()
    assert 0.2 < ground_seen < 0.9, "the view holds both ground and sky"
    # sky rays evaluate nothing, ground rays stop at the plate: well under half the reference's evaluations
    assert counts["fast"][0] < 0.5 * counts["ref"][0], (counts["fast"][0], counts["ref"][0])


def test_fast_render_follows_moved_actors(trained):
    from simrecon.data.scene_api import ActorPlacement

    fast = load_scene(trained, device="cpu")
    ref = load_scene(trained, device="cpu", renderer="reference")
    frame = fast.log.frames[0]
    actor = next(a for a in fast.log.actors if a.pose_at(frame.timestamp) is not None)
    pose = actor.pose_at(frame.timestamp).copy()
    forward = -np.asarray(frame.c2w)[:3, 2]  # OpenGL camera: looking along -z
    pose[:2, 3] = np.asarray(frame.c2w)[:2, 3] + 8.0 * forward[:2]  # moved to 8 m in front of the camera
    placed = {actor.id: ActorPlacement(source=actor.id, pose=pose)}
    args = (frame.c2w, frame.intrinsics, frame.timestamp, frame.camera, placed)
    got, want = fast.render_image(*args), ref.render_image(*args)
    psnr, depth, same = _agreement(got, want)
    assert psnr > 50 and depth < 0.01 and same > 0.995, (psnr, depth, same)
    assert (want.instance == 1).sum() > 100, "the moved actor is in view"


def test_grids_are_rebuilt_when_the_weights_change(trained, tmp_path, caplog):
    scene = tmp_path / "scene"
    shutil.copytree(trained, scene)
    first = load_scene(scene, device="cpu")
    stamp = (scene / OCCUPANCY_FILE).stat().st_mtime_ns
    # other weights under the same name: the grids on disk are stale
    state = torch.load(scene / "model.pt", weights_only=True)
    key = next(k for k in state if k.startswith("background.density_net"))
    state[key] = state[key] + 0.5
    torch.save(state, scene / "model.pt")
    changed = load_scene(scene, device="cpu")
    assert read_occupancy(scene, changed.model) is None
    with caplog.at_level(logging.WARNING):
        changed.render_image(*_small_view(changed))
    assert "built from other weights" in caplog.text
    assert (scene / OCCUPANCY_FILE).stat().st_mtime_ns != stamp
    assert read_occupancy(scene, changed.model) is not None and read_occupancy(scene, first.model) is None


def _small_view(scene):
    import dataclasses

    f = scene.log.frames[0]
    intr = dataclasses.replace(f.intrinsics, w=16, h=12, cx=8.0, cy=6.0, fl_x=f.intrinsics.fl_x / 10,
                               fl_y=f.intrinsics.fl_y / 10)
    return f.c2w, intr, f.timestamp, f.camera


def test_old_damaged_or_read_only_folders_still_render(trained, tmp_path, caplog):
    scene = tmp_path / "scene"
    shutil.copytree(trained, scene)
    (scene / OCCUPANCY_FILE).unlink()  # a scene written before the fast renderer
    load_scene(scene, device="cpu").render_image(*_small_view(load_scene(scene, device="cpu")))
    assert (scene / OCCUPANCY_FILE).is_file()
    (scene / OCCUPANCY_FILE).write_bytes(b"not a torch file")  # damaged: rebuilt, with a warning
    with caplog.at_level(logging.WARNING):
        sc = load_scene(scene, device="cpu")
        sc.render_image(*_small_view(sc))
    assert "unreadable" in caplog.text and read_occupancy(scene, sc.model) is not None
    if os.geteuid() != 0:  # root writes anywhere: the read-only case cannot be made here
        (scene / OCCUPANCY_FILE).unlink()
        scene.chmod(0o555)
        try:
            sc = load_scene(scene, device="cpu")
            assert sc.render_image(*_small_view(sc)).rgb.shape == (12, 16, 3)
        finally:
            scene.chmod(0o755)


def test_front_to_back_stops_rays_once_opaque():
    gen = torch.Generator().manual_seed(0)
    sigma = torch.rand(5, 12, generator=gen) * 3
    delta = torch.full((5, 12), 0.5)
    asked = torch.zeros(5, 12, dtype=torch.bool)

    def density(r, c):
        asked[r, c] = True
        return sigma[r, c]

    full = _front_to_back(delta, 4, 1e-30, density)
    torch.testing.assert_close(full, sigma)  # nothing hidden at that threshold: every sample
    asked[:] = False
    got = _front_to_back(delta, 4, 1e-2, density)
    stage = torch.arange(12) // 3
    optical = torch.cumsum(sigma * delta, 1)  # [R, S] the optical depth through each sample
    # a stage is asked for exactly when the ray's light before it is above the stop
    before = torch.cat([torch.zeros(5, 1), optical[:, 2::3][:, :-1]], 1)  # [R, stages] depth before each stage
    want = before[:, stage] < -math.log(1e-2)
    assert torch.equal(asked, want) and not want.all() and want[:, :3].all()
    assert torch.equal(got, torch.where(want, sigma, torch.zeros_like(sigma)))
    assert _front_to_back(delta[:0], 4, 1e-2, density).shape == (0, 12)  # no rays


def test_density_grid_keeps_a_thin_surface():
    # a plate 1/100 of the cube thick at z = 0.5: thinner than a cell (1/16), found by the probes and dilation
    def plate(u):
        return torch.where((u[:, 2] - 0.503).abs() < 0.005, torch.tensor(50.0), torch.tensor(0.0))

    grid = density_grid(plate, 16, OccupancyConfig(samples_per_cell=16), torch.Generator().manual_seed(0), "cpu")
    z = torch.linspace(0.01, 0.99, 50)
    on = torch.stack([torch.full_like(z, 0.3), z, torch.full_like(z, 0.503)], -1)  # across the plate
    assert grid.lookup(on).all()
    off = torch.tensor([[0.5, 0.5, 0.1], [0.2, 0.8, 0.9]])
    assert not grid.lookup(off).any()
    assert 0.1 < grid.share() < 0.25  # the plate's layer of cells and one on either side: 3 / 16


def test_render_cli_takes_either_renderer(trained, tmp_path, capsys):
    for name in ("reference", "fast"):
        out = tmp_path / name
        assert main(["render", str(trained), "-o", str(out), "--trajectory", "--device", "cpu",
                     "--renderer", name]) == 0
        assert any(out.rglob("*.png"))
    code = main(["render", str(trained), "-o", str(tmp_path / "x"), "--trajectory", "--renderer", "quick"])
    err = capsys.readouterr().err
    assert code == 2 and "--renderer" in err and "Traceback" not in err
