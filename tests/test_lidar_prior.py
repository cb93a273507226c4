"""The lidar prior: point queries that give the fields their surfaces and colours before photometric training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from simrecon.data.io import load_log
from simrecon.data.model import Frame, Intrinsics
from simrecon.render import SceneModel
from simrecon.render.query import boxes_holding_loop
from simrecon.train import preset, read_scene_info, reconstruct
from simrecon.train.data import TrainData, parse_holdout, scene_box
from simrecon.train.lidar_prior import (LidarPriorConfig, _empty_loss,
                                        _occupied_loss, colour_returns, lidar_prior_step, train_lidar_prior)


@pytest.fixture(scope="module")
def small(synth_small):
    torch.manual_seed(0)
    cfg = preset("tiny")
    log = load_log(synth_small / "log")
    box = scene_box(log, cfg.sampling.box_lidar_range)
    data = TrainData(log, parse_holdout(cfg.holdout, log), cfg.sampling.near_frac * float(box.half.mean()),
                     torch.device("cpu"))
    return cfg, log, box, data


def _lidar_rays_after(model: SceneModel, data: TrainData) -> tuple[float, float]:
    """Over 512 fixed lidar rays: the median distance from the return to where the ray's weight passes one
    half (inf for rays that stay mostly clear) and the mean share of the weight within 2 m of the return. The
    expected depth is not used: the few per cent of weight a ray may leak to the far plane dominate it."""
    rays, rng = data.sample_lidar(512, torch.Generator().manual_seed(7))
    with torch.no_grad():
        out = model(rays)
    w, mids = out.samples.weights, out.samples.mids  # [R, S]
    half = (w.cumsum(-1) < 0.5).sum(-1).clamp(max=w.shape[1] - 1)
    d50 = torch.where(out.acc >= 0.5, mids.gather(1, half[:, None])[:, 0], torch.full_like(rng, float("inf")))
    at_return = (w * ((mids - rng[:, None]).abs() <= 2.0)).sum(-1)
    return float((d50 - rng).abs().median()), float(at_return.mean())


def _small_model(cfg, log, box, data) -> SceneModel:
    """The tiny preset with a finer background (8 levels to 256) and proposal (4 levels to 128). On the tiny
    grids themselves (cells of 2-4 m) the rays found their returns after 30 steps (1.1 m) and lost them again
    by 60, to weight past the returns."""
    m = cfg.model
    m.background.num_levels, m.background.max_resolution, m.background.log2_hashmap_size = 8, 256, 15
    m.proposal.num_levels, m.proposal.max_resolution, m.proposal.log2_hashmap_size = 4, 128, 14
    torch.manual_seed(0)
    return SceneModel(m, box, log.actors, data.num_appearance)


def test_prior_puts_the_surfaces_at_the_lidar_returns_and_learns_their_colours(small):
    cfg, log, box, data = small
    model = _small_model(cfg, log, box, data)
    d50_0, at_0 = _lidar_rays_after(model, data)
    first = train_lidar_prior(_small_model(cfg, log, box, data), data, LidarPriorConfig(steps=1, points=2048),
                              cfg.sampling.near_frac, seed=0)
    last = train_lidar_prior(model, data, LidarPriorConfig(steps=80, points=2048), cfg.sampling.near_frac,
                             seed=0)
    d50, at = _lidar_rays_after(model, data)
    # A fresh field is transparent (density bias -3): most lidar rays stay clear.
    assert d50_0 == float("inf") and at_0 < 0.1
    # After 80 point steps most of each ray's weight is at its return, and half of it within a metre of the
    # return (cells of ~0.5 m: measured 0.39 m after 60 steps and 0.22 m after 120; 0.70 and 0.81 of the
    # weight within 2 m).
    assert at > 0.6 and d50 < 1.0
    assert last["prior_colour"] < 0.5 * first["prior_colour"]
    assert {"prior_background", "prior_proposal", "prior_colour", "prior_actors"} <= set(first)
    assert first["coloured"] > 1000  # returns seen by training cameras in sync with their sweep


def _pinhole_frame(t: float = 0.0) -> Frame:
    return Frame("img.png", np.eye(4), Intrinsics(50.0, 50.0, 20.0, 15.0, 40, 30, model="PINHOLE"), "cam", t)


def test_colour_returns_take_their_pixel_and_skip_hidden_late_and_outside_returns():
    frame = _pinhole_frame()
    img = np.zeros((30, 40, 3), dtype=np.uint8)
    img[15, 20] = (255, 0, 0)  # the pixel straight ahead (OpenGL camera: looking down -z)
    img[15, 30] = (0, 255, 0)
    pts = np.array([[0.0, 0.0, -5.0],  # ahead, visible
                    [0.0, 0.0, -10.0],  # behind the first on the same pixel: hidden
                    [1.0, 0.0, -5.0],  # u = 20 + 50 * 0.2 = 30: visible, green
                    [0.0, 0.0, 5.0],  # behind the camera
                    [10.0, 0.0, -5.0],  # outside the image
                    [1.0, 0.0, -5.0]])  # visible, but from a sweep 0.2 s away
    times = np.array([0.0, 0.0, 0.01, 0.0, 0.0, 0.2])
    c = colour_returns(pts, times, [frame], [img], [3], near=0.5, sync_s=0.05)
    assert c.index.tolist() == [0, 2]
    assert torch.allclose(c.rgb, torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert c.eye.abs().max() == 0 and c.appearance.tolist() == [3, 3]
    # No frame in sync: nothing coloured, and the prior still runs on geometry alone.
    assert len(colour_returns(pts, times + 1.0, [frame], [img], [0], 0.5, 0.05)) == 0


def test_returns_in_an_actor_box_go_to_that_actor(small):
    cfg, log, box, data = small
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance)
    t = torch.tensor([0.0, 0.0], dtype=torch.float64)
    layout = model.logged_layout(t)
    assert layout.field_index, "the small street has actors at t=0"
    centre = layout.trans[0, 0]  # [3] the first present actor's box centre
    x = torch.stack([centre, centre + torch.tensor([0.0, 0.0, 50.0])])
    own, fields = model.owners(x, t)
    assert own.slot.tolist() == [0, -1] and fields == layout.field_index
    assert torch.allclose(own.local[0], torch.zeros(3), atol=1e-5)
    dirs = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    local_dirs = model.owners(x, t, dirs=dirs)[0].local_dirs
    assert torch.allclose(local_dirs[0], layout.rot[0, 0].T @ dirs[0], atol=1e-6) and local_dirs[1].abs().max() == 0
    # The point query: the centre's density is the actor field's, the far point's the background's.
    q = model.query(x, t)
    assert q.owner.tolist() == [layout.field_index[0], -1]
    actor_sigma, _ = model.actor_view(layout.field_index[0])(own.local[:1], torch.zeros(1, 3))
    torch.testing.assert_close(q.sigma[:1], actor_sigma)  # same field, same point: one code path
    torch.testing.assert_close(q.sigma[1:], model.background.density(x[1:])[0])
    # A return on that actor, seen by a camera, trains that actor's field (density and colour).
    origin = centre + torch.tensor([-8.0, 0.0, 0.0])
    colour = (centre[None], t[:1], torch.tensor([[1.0, 0.0, 0.0]]), origin[None], torch.zeros(1, dtype=torch.long))
    losses = lidar_prior_step(model, origin[None], centre[None], t[:1], data.near, cfg.sampling.near_frac, colour)
    assert "prior_actors" in losses and torch.isfinite(losses["prior_actors"])
    losses["prior_colour"].backward()
    actor = model.actor_fields[layout.field_index[0]]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in actor.color_net.parameters())
    assert all(p.grad is None for p in model.background.color_net.parameters())


def test_box_test_of_all_actors_at_once_matches_one_box_at_a_time(small):
    cfg, log, box, data = small
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance)
    gen = torch.Generator().manual_seed(3)
    # Points scattered around every actor's box at its logged times (inside, near the faces and outside), and
    # some far away; times across the log, so boxes come and go.
    times = data.lidar_times[torch.randint(0, len(data.lidar_times), (4000,), generator=gen)]
    lay = model.logged_layout(times)
    assert len(lay.field_index) >= 2, "the small street has several actors"
    pick = torch.randint(0, len(lay.field_index), (4000,), generator=gen)
    half = torch.stack([model.actor_fields[i].half_size for i in lay.field_index])[pick]  # [N, 3]
    offset = (torch.rand(4000, 3, generator=gen) * 2 - 1) * 1.3 * half
    rows = torch.arange(4000)
    x = lay.trans[pick, rows] + torch.einsum("nij,nj->ni", lay.rot[pick, rows], offset)
    x[:500] += 100.0  # nowhere near a box
    dirs = torch.nn.functional.normalize(torch.randn(4000, 3, generator=gen), dim=-1)
    got, fields = model.owners(x, times, dirs=dirs)
    uniq, which = torch.unique(times, return_inverse=True)
    lay_u = model.logged_layout(uniq)
    assert fields == lay_u.field_index
    half_u = torch.stack([model.actor_fields[i].half_size for i in fields])
    want = boxes_holding_loop(x, lay_u.rot, lay_u.trans, half_u, lay_u.present, which, dirs)
    assert torch.equal(got.slot, want.slot)
    assert (got.slot >= 0).sum() > 1000 and (got.slot < 0).sum() > 500  # both cases are exercised
    # float32 box-frame coordinates of a few metres: the same einsum, only the summation order may differ
    assert torch.allclose(got.local, want.local, atol=1e-5) and torch.allclose(got.local_dirs, want.local_dirs,
                                                                                atol=1e-6)
    empty, _ = model.owners(x[:0], times[:0], dirs=dirs[:0])  # no points
    assert empty.slot.shape == (0,) and empty.local.shape == (0, 3)
    assert model.query(x[:0], times[:0]).sigma.shape == (0,)


def test_prior_losses_on_empty_and_extreme_inputs():
    empty = torch.zeros(0, requires_grad=True)
    for loss in (_occupied_loss(empty, empty), _empty_loss(empty, empty)):
        loss.backward()
        assert loss.item() == 0.0
    # Opaque points cost nothing to keep opaque; transparent ones are clamped, not infinite.
    sigma = torch.tensor([1e6, 0.0, 1e-30], requires_grad=True)
    delta = torch.full((3,), 0.01)
    occ = _occupied_loss(sigma, delta)
    occ.backward()
    assert torch.isfinite(occ) and torch.isfinite(sigma.grad).all()
    assert _occupied_loss(sigma[:1], delta[:1]).item() == pytest.approx(0.0, abs=1e-6)
    assert _empty_loss(torch.tensor([2.0, 0.0]), torch.tensor([0.5, 0.5])).item() == pytest.approx(0.5)


def test_reconstruct_runs_the_prior_inside_the_budget_and_not_on_resume(synth_small, tmp_path, caplog):
    cfg = preset("tiny")
    cfg.budget.steps, cfg.priors.lidar_prior = 3, LidarPriorConfig(steps=5, points=512)
    with caplog.at_level("INFO"):
        reconstruct(synth_small / "log", tmp_path / "s", cfg)
    assert "lidar prior: 5 steps" in caplog.text
    info = read_scene_info(tmp_path / "s")
    first_metric = json.loads((tmp_path / "s" / "metrics.jsonl").read_text().splitlines()[0])
    assert first_metric["time"] > 0 and info.elapsed >= first_metric["time"]  # the prior's time is counted
    assert info.config["priors"]["lidar_prior"]["steps"] == 5
    # With the prior the lidar terms are on the weights: no expected-range L1, the beyond term instead.
    assert "beyond" in first_metric and "depth" not in first_metric
    caplog.clear()
    with caplog.at_level("INFO"):
        reconstruct(synth_small / "log", tmp_path / "s", cfg, resume=True, overrides={"budget.steps": 4})
    assert "lidar prior" not in caplog.text and read_scene_info(tmp_path / "s").step == 4


@pytest.mark.parametrize("bad", [{"steps": -2}, {"auto_steps": -1}, {"points": 0}, {"lr": 0.0}, {"sync_s": -0.1},
                                 {"beyond_weight": -1.0}])
def test_bad_prior_settings_are_refused(synth_small, tmp_path, bad):
    cfg = preset("tiny")
    cfg.priors.lidar_prior = LidarPriorConfig(**bad)
    with pytest.raises(ValueError, match="lidar_prior"):
        reconstruct(synth_small / "log", tmp_path / "s", cfg)


def test_cli_sets_the_prior_steps_and_progress_sees_them(synth_small, tmp_path, capsys):
    from simrecon.cli.main import main

    out = tmp_path / "s"
    assert main(["reconstruct", str(synth_small / "log"), "-o", str(out), "--preset", "tiny", "--steps", "2",
                 "--lidar-prior-steps", "10"]) == 0
    assert read_scene_info(out).config["priors"]["lidar_prior"]["steps"] == 10
    capsys.readouterr()
    records = []
    cfg = preset("tiny")
    cfg.budget.steps, cfg.priors.lidar_prior.steps = 2, 20
    reconstruct(synth_small / "log", tmp_path / "s2", cfg, on_log=records.append)
    stages = [r["stage"] for r in records if "stage" in r and r["stage"].startswith("lidar prior")]
    assert stages == ["lidar prior 10/20", "lidar prior 20/20"] and records[len(stages)]["step"] == 1


def test_auto_prior_runs_for_short_budgets_only_and_the_scene_keeps_the_choice(synth_small, tmp_path):
    auto = LidarPriorConfig()
    assert auto.steps == -1 and auto.steps_for(auto.auto_minutes) == auto.auto_steps > 0
    assert auto.steps_for(10.0) == 0  # the fast preset's 10 minutes: even held out, finer lidar depth without
    assert LidarPriorConfig(steps=0).steps_for(1.0) == 0 and LidarPriorConfig(steps=7).steps_for(60.0) == 7

    def run(minutes: float, name: str) -> list[dict]:
        cfg = preset("tiny")
        cfg.budget.steps, cfg.budget.minutes, cfg.priors.lidar_prior.auto_steps = 2, minutes, 4
        records: list[dict] = []
        reconstruct(synth_small / "log", tmp_path / name, cfg, on_log=records.append)
        assert cfg.priors.lidar_prior.steps == -1  # the caller's config is left as it was
        return records

    short = run(LidarPriorConfig().auto_minutes, "short")
    assert [r["stage"] for r in short if "stage" in r and r["stage"].startswith("lidar")] == ["lidar prior 4/4"]
    assert read_scene_info(tmp_path / "short").config["priors"]["lidar_prior"]["steps"] == 4
    long = run(LidarPriorConfig().auto_minutes + 1.0, "long")
    assert not [r for r in long if r.get("stage", "").startswith("lidar")]
    assert read_scene_info(tmp_path / "long").config["priors"]["lidar_prior"]["steps"] == 0
    # Extending the short run's budget on resume keeps the lidar losses that go with the prior (no range L1).
    reconstruct(Path(), tmp_path / "short", preset("tiny"), resume=True, overrides={"budget.steps": 3,
                                                                             "budget.minutes": 60.0})
    last = json.loads((tmp_path / "short" / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 3 and "beyond" in last and "depth" not in last


def test_bad_shapes_are_refused_with_the_shapes_in_the_message(small):
    cfg, log, box, data = small
    model = SceneModel(cfg.model, box, log.actors, data.num_appearance)
    with pytest.raises(ValueError, match=r"origins \[4, 3\], points \[4, 2\] and times \[4\]"):
        lidar_prior_step(model, torch.zeros(4, 3), torch.zeros(4, 2), torch.zeros(4), 0.5, cfg.sampling.near_frac)
    with pytest.raises(ValueError, match=r"points \[5, 3\] and times \[4\]"):
        colour_returns(np.zeros((5, 3)), np.zeros(4), [], [], [], 0.5, 0.05)
    with pytest.raises(ValueError, match="1 frames, 0 images and 1 appearance codes"):
        colour_returns(np.zeros((5, 3)), np.zeros(5), [_pinhole_frame()], [], [0], 0.5, 0.05)
