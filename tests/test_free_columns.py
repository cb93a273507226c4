"""The free-columns prior: the lidar's empty space near the ground, extended up to the scene box's top."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simrecon.data.model import Actor, DriveLog, Track
from simrecon.fields import SceneBox
from simrecon.render import SceneModel, TrainingInputs
from simrecon.train import TrainConfig, preset, reconstruct
from simrecon.train.free_columns import FreeColumnsConfig, build_free_columns, free_columns_loss, up_rotation


def _street_scan(up_to_world: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lidar at (x, 0, 1.8) for x in -4..4 (z up) over a flat road (z = 0) between two walls at y = -6.25 and
    y = +6.25 (the middle of a 0.5 m cell), 0-3 m high: rays down to the road out to |y| < 5.5 and rays to the
    walls. Returns origins, returns [N, 3] and times [N], rotated by ``up_to_world`` (the log's frame; None: z
    up)."""
    up_to_world = np.eye(3) if up_to_world is None else up_to_world
    rng = np.random.default_rng(0)
    origins, points = [], []
    for x0 in np.linspace(-4, 4, 5):
        o = np.array([x0, 0.0, 1.8])
        road = np.stack([x0 + rng.uniform(-8, 8, 3000), rng.uniform(-5.5, 5.5, 3000), np.zeros(3000)], 1)
        side = rng.choice([-6.25, 6.25], 2000)
        wall = np.stack([x0 + rng.uniform(-8, 8, 2000), side, rng.uniform(0.0, 3.0, 2000)], 1)
        p = np.concatenate([road, wall])
        origins.append(np.broadcast_to(o, p.shape))
        points.append(p)
    o, p = np.concatenate(origins), np.concatenate(points)
    return o @ up_to_world.T, p @ up_to_world.T, np.zeros(len(p))


BOX = SceneBox(np.array([0.0, 0.0, 5.0]), np.array([10.0, 10.0, 5.0]))  # top at z = 10


def _log(actors=(), world_up=(0.0, 0.0, 1.0)) -> DriveLog:
    return DriveLog(root=Path("."), frames=[], actors=list(actors), world_up=np.array(world_up))


def test_up_rotation_takes_up_to_z():
    for up in ([0, 0, 1], [0, 1, 0], [0, 0, -1], [1, 2, 3], [0, -1, 0.001]):
        r = up_rotation(np.array(up, dtype=float))
        np.testing.assert_allclose(r @ (np.array(up) / np.linalg.norm(up)), [0, 0, 1], atol=1e-9)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(r) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="world_up"):
        up_rotation(np.zeros(3))


def test_the_street_between_the_walls_is_free_and_the_walls_are_not():
    o, p, t = _street_scan()
    cfg = FreeColumnsConfig(weight=1.0, cell=0.5, margin_cells=1)
    cols = build_free_columns(_log(), o, p, t, BOX, cfg)
    assert cols is not None
    centres_y = cols.origin[1].item() + (cols.ij[:, 1].float() + 0.5) * cols.cell  # [C]
    centres_x = cols.origin[0].item() + (cols.ij[:, 0].float() + 0.5) * cols.cell
    # Free: the road between the walls. Not free: the walls' cells and the ones next to them (margin), nor what
    # lies behind the walls (no lidar ray got there).
    assert float(centres_y.abs().max()) == pytest.approx(5.25)
    no_margin = build_free_columns(_log(), o, p, t, BOX, FreeColumnsConfig(weight=1.0, cell=0.5, margin_cells=0))
    assert float((no_margin.origin[1] + (no_margin.ij[:, 1].float() + 0.5) * 0.5).abs().max()) == pytest.approx(5.75)
    road = (centres_y.abs() < 4.5) & (centres_x.abs() < 8)
    assert int(road.sum()) > 0.9 * (9 / 0.5) * (16 / 0.5)  # nearly every road cell of the scanned stretch
    # The prior starts `clearance` above the lowest free lidar point (a few cm over the road) and ends at the top.
    assert float(cols.z_lo.min()) >= cfg.clearance
    assert float(cols.z_lo.median()) < cfg.clearance + 0.3
    assert cols.z_hi == pytest.approx(10.0)


def test_a_tracked_actor_does_not_block_its_column_but_a_standing_return_does():
    o, p, t = _street_scan()
    car = np.stack([np.full(400, 2.0), np.random.default_rng(1).uniform(-1.0, 1.0, 400),
                    np.random.default_rng(2).uniform(0.2, 1.4, 400)], 1)  # returns off a car at (2, 0)
    o2 = np.concatenate([o, np.broadcast_to([0.0, 0.0, 1.8], car.shape)])
    p2, t2 = np.concatenate([p, car]), np.zeros(len(o2))
    cfg = FreeColumnsConfig(weight=1.0, cell=0.5, margin_cells=0)
    pose = np.eye(4)
    pose[:3, 3] = [2.6, 0.0, 0.8]
    tracked = Actor("car", "car", np.array([1.4, 2.2, 1.6]), Track(np.array([0.0]), pose[None]))

    def free_at(cols, x, y) -> bool:
        ij = torch.tensor([[int((x - cols.origin[0]) // cols.cell), int((y - cols.origin[1]) // cols.cell)]])
        return bool((cols.ij == ij).all(1).any())

    assert free_at(build_free_columns(_log(), o, p, t, BOX, cfg), 2.1, 0.1)
    assert not free_at(build_free_columns(_log(), o2, p2, t2, BOX, cfg), 2.1, 0.1)  # untracked: it stands
    assert free_at(build_free_columns(_log([tracked]), o2, p2, t2, BOX, cfg), 2.1, 0.1)  # tracked: ignored


def test_samples_lie_in_the_free_columns_in_the_logs_own_frame():
    # The same street in a y-up log: world = R^T (street), R taking y to z.
    to_world = up_rotation(np.array([0.0, 1.0, 0.0])).T
    o, p, t = _street_scan(to_world)
    box = SceneBox(to_world @ BOX.center, np.abs(to_world) @ BOX.half)
    cols = build_free_columns(_log(world_up=(0.0, 1.0, 0.0)), o, p, t, box, FreeColumnsConfig(weight=1.0, cell=0.5))
    x = cols.sample(5000, torch.Generator().manual_seed(0)).numpy() @ to_world  # back to z-up street coordinates
    assert np.abs(x[:, 1]).max() <= 5.5 + 1e-4  # between the walls, a cell away from them
    assert x[:, 2].min() >= 0.5 - 1e-4 and x[:, 2].max() <= 10.0 + 1e-4  # clearance to the box top
    assert 4.0 < np.median(x[:, 2]) < 6.5  # uniform in height


def test_no_lidar_or_no_free_column_gives_none():
    empty = np.zeros((0, 3))
    assert build_free_columns(_log(), empty, empty, np.zeros(0), BOX, FreeColumnsConfig()) is None
    o, p, t = _street_scan()
    low_box = SceneBox(np.array([0.0, 0.0, 0.2]), np.array([10.0, 10.0, 0.2]))  # the prior would start above it
    assert build_free_columns(_log(), o, p, t, low_box, FreeColumnsConfig(weight=1.0)) is None
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        build_free_columns(_log(), o[:, :2], p, t, BOX, FreeColumnsConfig())


def test_the_loss_lowers_density_in_the_free_columns(synth_small):
    from simrecon.data.io import load_log
    from simrecon.train.data import TrainData, parse_holdout, scene_box
    from simrecon.train.optim import adam

    cfg = preset("tiny")
    log = load_log(synth_small / "log")
    box = scene_box(log, cfg.sampling.box_lidar_range)
    data = TrainData(log, parse_holdout(cfg.holdout, log), cfg.sampling.near_frac * float(box.half.mean()),
                     torch.device("cpu"))
    fc = FreeColumnsConfig(weight=1.0, points=2048)
    cols = build_free_columns(log, data.lidar_origins.numpy(), data.lidar_points.numpy(), data.lidar_times.numpy(),
                              box, fc)
    assert cols is not None and len(cols) > 100
    torch.manual_seed(0)
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance)
    with torch.no_grad():  # a fog everywhere: the prior must clear it in the free columns
        model.background.density_net[-1].bias[0] += 6.0
        model.proposal.net[-1].bias[0] += 6.0
    probe = cols.sample(1024, torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model.background.density(probe)[0].median(), model.proposal(probe).median()
    opt = adam(list(model.background.parameters()) + list(model.proposal.parameters()), 1e-2)
    first = None
    for i in range(30):
        x = cols.sample(fc.points, torch.Generator().manual_seed(100 + i))
        losses = free_columns_loss(model.background.density(x)[0], model.proposal(x), cols.cell / model.scale,
                                   fc.weight)
        first = first or {k: v.item() for k, v in losses.items()}
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    with torch.no_grad():
        after = model.background.density(probe)[0].median(), model.proposal(probe).median()
    assert set(first) == {"free_columns", "free_columns_proposal"} and min(first.values()) > 0
    assert after[0] < 0.3 * before[0] and after[1] < 0.3 * before[1]


def test_probe_points_ride_along_a_render_without_changing_it(synth_small):
    from simrecon.data.io import load_log
    from simrecon.train.data import TrainData, parse_holdout, scene_box

    cfg = preset("tiny")
    log = load_log(synth_small / "log")
    box = scene_box(log, cfg.sampling.box_lidar_range)
    data = TrainData(log, parse_holdout(cfg.holdout, log), cfg.sampling.near_frac * float(box.half.mean()),
                     torch.device("cpu"))
    torch.manual_seed(0)
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance).train()
    rays, _ = data.sample_pixels(64, torch.Generator().manual_seed(0))
    probe = torch.randn(100, 3) * 5
    torch.manual_seed(1)
    plain = model(rays, train=TrainingInputs(stratified=True))
    torch.manual_seed(1)  # the same stratification
    with_probe = model(rays, train=TrainingInputs(stratified=True, points=probe))
    for a, b in ((with_probe.rgb, plain.rgb), (with_probe.depth, plain.depth), (with_probe.acc, plain.acc),
                 (with_probe.proposal.interlevel, plain.proposal.interlevel)):
        torch.testing.assert_close(a, b)
    # bf16 MLPs: a batch of other size may take another matmul kernel, so equal to bf16 rounding only
    torch.testing.assert_close(with_probe.points.sigma, model.background.density(probe)[0], rtol=2e-2, atol=1e-4)
    torch.testing.assert_close(with_probe.points.sigma_proposal, model.proposal(probe), rtol=2e-2, atol=1e-4)
    assert plain.points is None
    with pytest.raises(ValueError, match=r"query points must be \[P, 3\], got \[100, 2\]"):
        model(rays, train=TrainingInputs(points=probe[:, :2]))
    with pytest.raises(ValueError, match=r"\[P\] and \[P\], got \[4\] and \[3\]"):
        free_columns_loss(torch.ones(4), torch.ones(3), 0.1, 1.0)
    empty = free_columns_loss(torch.ones(0), torch.ones(0), 0.1, 1.0)
    assert all(v.item() == 0 for v in empty.values())


def test_training_with_the_prior_logs_it_and_keeps_it_in_the_scene(synth_small, tmp_path):
    cfg = preset("tiny")
    cfg.budget.steps = 3
    cfg.priors.free_columns.weight = 0.01
    reconstruct(synth_small / "log", tmp_path / "scene", cfg)
    rec = json.loads((tmp_path / "scene" / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["free_columns"] >= 0 and rec["free_columns_proposal"] >= 0
    saved = json.loads((tmp_path / "scene" / "scene.json").read_text())["config"]
    assert TrainConfig.from_json(saved).priors.free_columns.weight == 0.01
    with pytest.raises(ValueError, match="free_columns"):
        bad = preset("tiny")
        bad.priors.free_columns.cell = 0.0
        bad.check()
    with pytest.raises(ValueError, match="free_columns"):
        bad = preset("tiny")
        bad.priors.free_columns.weight = float("nan")
        bad.check()


def test_cli_sets_the_weight(synth_small, tmp_path, capsys):
    from simrecon.cli.main import main
    from simrecon.train import read_scene_info

    out = tmp_path / "s"
    assert main(["reconstruct", str(synth_small / "log"), "-o", str(out), "--preset", "tiny", "--steps", "2",
                 "--free-columns", "0.05"]) == 0
    assert read_scene_info(out).config["priors"]["free_columns"]["weight"] == 0.05
    assert "free_columns" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    capsys.readouterr()


def test_the_point_budget_bounds_the_map_of_a_long_range_lidar():
    o, p, t = _street_scan()
    full = build_free_columns(_log(), o, p, t, BOX, FreeColumnsConfig(weight=1.0, cell=0.5))
    small = build_free_columns(_log(), o, p, t, BOX, FreeColumnsConfig(weight=1.0, cell=0.5, max_free_points=5000))
    assert 0 < len(small) < len(full)  # fewer rays walked, fewer cells proven free; nothing else changes
    assert set(map(tuple, small.ij.tolist())) <= set(map(tuple, full.ij.tolist()))
