"""Learned lidar heads: they switch on from what the log's sweeps carry, learn a planted intensity and drop
pattern from the sweeps, render into sweeps and eval, and scenes without them load and render as before; a sweep's
range is the median distance along each ray."""

from __future__ import annotations

import json
import shutil

import math

import numpy as np
import pytest
import torch

from helpers import edit_log, tiny_files
from simrecon.data import load_log
from simrecon.data.lidar_io import write_points, write_sidecar
from simrecon.fields.lidar_heads import LidarHeadsConfig
from simrecon.scene import load_scene
from simrecon.scene.evaluate import lidar_depth_error
from simrecon.scene.lidar import NeuralLidarConfig, render_sweep
from simrecon.scene.lidar_eval import SweepComparison, recorded_range_image, score_sweeps
from simrecon.train import TrainConfig, reconstruct
from simrecon.train.config import parse_settings
from simrecon.train.head_fit import HeadFitConfig, fit_heads
from simrecon.train.lidar_heads import _decide, final_head_fit, head_losses, head_rays
from simrecon.train.optim import adam

STRIPE_M = 3.0  # the ground is painted in stripes this wide along world x: bright (A) and dark (B)
BRIGHT, DARK = 0.75, 0.15  # their intensity
DARK_FAR_M = 9.0  # dark ground farther than this returns nothing (a planted absorbing-at-grazing rule)


def _painted(x: np.ndarray | torch.Tensor):
    return (np.floor(x / STRIPE_M) % 2 == 0) if isinstance(x, np.ndarray) else (torch.floor(x / STRIPE_M) % 2 == 0)


def _plant(root, plate: float) -> None:
    """Rewrite every sweep of the log at ``root`` as a lidar over a flat painted ground at height ``plate`` sees
    it: bright and dark stripes, dark ground beyond DARK_FAR_M dropped, the sky and ranges past the sensor's
    limits too."""
    drive = load_log(root)
    sensor = drive.lidar_sensors["lidar"]
    beam, column = sensor.grid()
    for sweep in drive.lidar:
        d = sensor.directions() @ sweep.s2w[:3, :3].T
        o = sweep.s2w[:3, 3]
        with np.errstate(divide="ignore"):
            t = np.where(d[:, 2] < -1e-6, (plate - o[2]) / d[:, 2], np.inf)
        x = o[0] + d[:, 0] * np.where(np.isfinite(t), t, 0)
        bright = _painted(x)
        keep = np.isfinite(t) & (t >= sensor.min_range_m) & (t <= sensor.max_range_m) & (bright | (t <= DARK_FAR_M))
        pts = sensor.directions()[keep] * t[keep, None]
        inten = np.where(bright, BRIGHT, DARK)[keep]
        write_points(root / sweep.file_path, np.concatenate([pts, inten[:, None]], 1))
        write_sidecar(root / sweep.index_path, "index_path", np.stack([beam[keep], column[keep]], 1))


def _plate_model(model, plate: float) -> None:
    """The scene's background and proposal made the painted ground: opaque below ``plate`` (world z), empty above;
    the geometry features say the paint (feature 0: 1 on bright stripes)."""
    g = model.cfg.background.geo_features

    def density(x):
        geo = torch.zeros(len(x), g)
        geo[:, 0] = _painted(x[:, 0]).float()
        return torch.where(x[:, 2] < plate, 200.0, 0.0), geo

    model.background.density = density
    model.proposal.forward = lambda x: density(x)[0]


@pytest.fixture(scope="module")
def planted(xs_log, tmp_path_factory):
    """(scene folder, log) of a tiny reconstruction of the XS street with planted sweeps; heads auto (on)."""
    root = tmp_path_factory.mktemp("heads") / "log"
    shutil.copytree(xs_log, root)
    edit_log(root, lambda data: data.update(actors=[]))  # the planted ground is all there is
    plate = float(load_log(root).lidar[0].s2w[2, 3]) - 1.5
    _plant(root, plate)
    cfg = tiny_files(1)
    cfg.model.samples, cfg.model.proposal_samples = 32, 64  # samples close enough to the ground to see its paint
    reconstruct(root, root.parent / "scene", cfg)
    return root.parent / "scene", plate


def _metrics(scene, cfg: NeuralLidarConfig):
    log = scene.log
    sensor = log.lidar_sensors["lidar"]
    cmp = SweepComparison()
    for s in log.lidar:
        cmp.add(render_sweep(scene, sensor, s.s2w, s.timestamp, {}, cfg), *recorded_range_image(s, log.root, sensor))
    return cmp.summary()


def test_heads_learn_a_planted_intensity_and_drop_pattern(planted):
    scene_dir, plate = planted
    info = json.loads((scene_dir / "scene.json").read_text())
    assert info["config"]["model"]["lidar_heads"]["intensity"] == "on", "auto: the sweeps carry intensity"
    assert info["config"]["model"]["lidar_heads"]["drop"] == "on", "auto: the sweeps have a beam/column layout"
    scene = load_scene(scene_dir, device="cpu", renderer="reference")
    model = scene.model
    _plate_model(model, plate)
    data = head_rays(scene.log, set())
    assert data.has_intensity and data.has_drops and data.intensity_scale == 1.0
    cfg = TrainConfig()
    cfg.sampling.lidar_head_rays = 512
    opt = adam(list(model.lidar_heads.parameters()), 1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        losses = head_losses(model, data, cfg, gen)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    learned = _metrics(scene, NeuralLidarConfig())
    geometric = _metrics(scene, NeuralLidarConfig(heads=False))
    assert geometric.intensity_rmse is None, "without the heads the scene says nothing of intensity"
    # trivial baselines: the mean intensity of the returns everywhere; every ray kept unless geometry drops it
    recorded = np.concatenate([s.load(scene.log.root)[:, 3] for s in scene.log.lidar])
    assert learned.intensity_rmse < 0.4 * recorded.std(), (learned.intensity_rmse, recorded.std())
    assert learned.drop_accuracy > geometric.drop_accuracy + 0.05, (learned.drop_accuracy, geometric.drop_accuracy)
    assert learned.drop_accuracy > 0.9 and learned.drop_f1 > geometric.drop_f1
    evaluated = score_sweeps(scene, scene.log.lidar)  # what simrecon eval reports
    assert evaluated.drop_model == "learned" and evaluated.intensity_rmse == pytest.approx(learned.intensity_rmse)
    # the per-return check that needs no sensor model (real logs without one): the same heads, sampled returns
    per_return = lidar_depth_error(scene, 4000)
    assert per_return["intensity_rmse"] < 0.4 * recorded.std(), per_return


def test_a_scene_without_heads_loads_and_renders_sweeps_as_before(planted, tmp_path):
    """A scene written before the heads: no lidar_heads in scene.json's config nor in the weights."""
    scene_dir, plate = planted
    old = tmp_path / "old"
    shutil.copytree(scene_dir, old)
    info = json.loads((old / "scene.json").read_text())
    del info["config"]["model"]["lidar_heads"]
    (old / "scene.json").write_text(json.dumps(info))
    state = torch.load(old / "model.pt", weights_only=True)
    assert any(k.startswith("lidar_heads.") for k in state)
    torch.save({k: v for k, v in state.items() if not k.startswith("lidar_heads.")}, old / "model.pt")
    (old / "occupancy.pt").unlink(missing_ok=True)  # its fingerprint covers the weights
    scene = load_scene(old, device="cpu", renderer="reference")
    assert scene.model.lidar_heads is None
    _plate_model(scene.model, plate)
    sweep, sensor = scene.log.lidar[0], scene.log.lidar_sensors["lidar"]
    out = scene.render_lidar(sensor, sweep.s2w, sweep.timestamp, {})
    assert out.intensity is None and out.returned.any()
    assert score_sweeps(scene, scene.log.lidar, max_sweeps=1).drop_model == "geometric"


def test_head_settings_round_trip_and_switch_on_from_the_log():
    cfg = TrainConfig()
    assert cfg.model.lidar_heads == LidarHeadsConfig()
    parse_settings(cfg, ["model.lidar_heads.drop=off", "model.lidar_heads.samples=6", "losses.intensity_weight=0.5",
                         "sampling.lidar_head_rays=64"])
    back = TrainConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert back == cfg and back.model.lidar_heads.drop == "off" and back.sampling.lidar_head_rays == 64
    cfg.model.lidar_heads.intensity = "maybe"
    with pytest.raises(ValueError, match="config.model.lidar_heads.intensity: expected auto, on or off"):
        cfg.check()
    assert _decide("auto", True, "drop", "") == "on" and _decide("auto", False, "drop", "") == "off"
    assert _decide("off", True, "drop", "") == "off"
    with pytest.raises(ValueError, match="config.model.lidar_heads.intensity: on, but no sweep"):
        _decide("on", False, "intensity", "no sweep")


def test_sweep_range_is_the_median_distance_not_pulled_out_by_weight_leaked_to_the_far_plane():
    from simrecon.render.model import RaySamples, RenderResult
    from simrecon.scene.lidar import ray_range

    mids = torch.tensor([[5.0, 10.0, 10.5, 11.0, 1000.0]])
    weights = torch.tensor([[0.01, 0.6, 0.25, 0.05, 0.05]])  # a surface at ~10 m, 5 % of the weight at the far plane
    acc = weights.sum(1)
    out = RenderResult(depth=(weights * mids).sum(1) / acc, acc=acc, samples=RaySamples(mids=mids, weights=weights))
    assert ray_range(out, "median_sample").item() == 10.0
    assert 7.5 < ray_range(out, "median").item() < 10.25  # inside the 10 m sample's interval
    assert ray_range(out, "expected").item() > 55, "the far plane's 5 % alone adds 50 m"
    with pytest.raises(ValueError, match="NeuralLidarConfig.range"):
        ray_range(out, "mean")


def test_sweep_median_inside_an_interval_is_exact_for_piecewise_constant_density():
    from simrecon.render.composite import alpha_weights
    from simrecon.render.model import RaySamples, RenderResult
    from simrecon.scene.lidar import ray_range

    edges = torch.arange(0.0, 20.01, 0.5, dtype=torch.float64)
    mids = ((edges[1:] + edges[:-1]) / 2)[None]
    sigma = torch.where(mids > 10.1, 0.8, 0.0)  # empty, then a medium of density 0.8 /m from the 10 m edge on
    w = alpha_weights(sigma, torch.full_like(mids, 0.5))
    out = RenderResult(depth=(w * mids).sum(1), acc=w.sum(1), samples=RaySamples(mids=mids, weights=w))
    # half the ray's opacity reached -ln(1 - acc / 2) / sigma into the medium (ln 2 / sigma for an opaque ray)
    exact = 10.0 - math.log(1 - out.acc.item() / 2) / 0.8
    # up to the 1e-10 that alpha_weights adds to each transmittance factor
    assert ray_range(out, "median").item() == pytest.approx(exact, abs=1e-6)
    assert abs(ray_range(out, "median_sample").item() - exact) > 0.1  # the crossing sample's middle, 10.75 m


def test_eval_sweep_line_names_how_drops_were_decided():
    from simrecon.cli.scene_cmds import sweep_line

    m = {"sweeps": 2, "held_out_sweeps": True, "median_range_error_m": 0.07, "mean_range_error_m": 0.3,
         "chamfer_m": 0.14, "drop_accuracy": 0.978, "drop_f1": 0.776, "intensity_rmse": None, "drop_model": "learned"}
    line = sweep_line(m)
    assert "97.8%" in line and "(learned drops)" in line and "intensity RMSE -" in line
    assert "drops)" not in sweep_line({**m, "drop_model": None})


def _ddp_heads_rank(rank: int, port: int, result) -> None:
    import torch.distributed as dist

    from simrecon.fields.lidar_heads import LidarHeads
    from simrecon.train.lidar_heads import average_head_grads, share_heads

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # each rank starts from other weights
        model = torch.nn.Module()
        model.lidar_heads = LidarHeads(LidarHeadsConfig(intensity="on", drop="on"), 8)
        share_heads(model)
        params = list(model.lidar_heads.parameters())
        for i, p in enumerate(params):
            p.grad = torch.full_like(p, float(rank * 10 + i))
        average_head_grads(model)
        result[rank] = ([p.detach().clone() for p in params], [p.grad.clone() for p in params])
    finally:
        dist.destroy_process_group()


def test_ddp_ranks_share_the_heads_and_average_their_gradients():
    import torch.multiprocessing as mp

    port = 29600 + int(np.random.default_rng().integers(0, 300))
    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_ddp_heads_rank, args=(port, result), nprocs=2, join=True)
        (w0, g0), (w1, g1) = result[0], result[1]
    assert all(torch.equal(a, b) for a, b in zip(w0, w1)), "rank 1 takes rank 0's initial weights"
    assert all(torch.allclose(g, torch.full_like(g, 5.0 + i)) for i, g in enumerate(g0))  # (0 + 10) / 2 + i
    assert all(torch.equal(a, b) for a, b in zip(g0, g1))


def _fresh_heads(model) -> None:
    """Untrained heads in ``model`` (as a scene's before any step)."""
    from simrecon.fields.lidar_heads import LidarHeads, sample_feature_dim

    torch.manual_seed(0)
    model.lidar_heads = LidarHeads(model.cfg.lidar_heads, sample_feature_dim(model.cfg.background.geo_features))


def test_the_last_fit_teaches_untrained_heads_the_planted_pattern_and_leaves_the_fields(planted):
    scene_dir, plate = planted
    scene = load_scene(scene_dir, device="cpu", renderer="reference")
    model = scene.model
    _plate_model(model, plate)
    _fresh_heads(model)
    fields = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("lidar_heads.")}
    geometric = _metrics(scene, NeuralLidarConfig(heads=False))
    cfg = TrainConfig()
    cfg.head_fit = HeadFitConfig(rays=4096, steps=80, batch=1024, lr=1e-2)
    fit = final_head_fit(model, head_rays(scene.log, set()), cfg, torch.Generator().manual_seed(0))
    assert fit["intensity_after"] < 0.5 * fit["intensity_before"] and fit["drop_after"] < fit["drop_before"], fit
    after = {k: v for k, v in model.state_dict().items() if not k.startswith("lidar_heads.")}
    assert all(torch.equal(fields[k], after[k]) for k in fields), "the last fit moves the heads only"
    model.eval()
    learned = _metrics(scene, NeuralLidarConfig())
    recorded = np.concatenate([s.load(scene.log.root)[:, 3] for s in scene.log.lidar])
    assert learned.intensity_rmse < 0.4 * recorded.std(), (learned.intensity_rmse, recorded.std())
    assert learned.drop_accuracy > geometric.drop_accuracy + 0.05, (learned.drop_accuracy, geometric.drop_accuracy)


def test_the_last_fit_runs_once_a_run_completes_and_not_when_switched_off(planted, tmp_path, monkeypatch):
    import simrecon.train.trainer as trainer

    calls = []

    def spy(model, data, cfg, gen):
        calls.append(cfg.head_fit.rays)
        return final_head_fit(model, data, cfg, gen)

    monkeypatch.setattr(trainer, "final_head_fit", spy)
    log_root = planted[0].parent / "log"
    reconstruct(log_root, tmp_path / "a", tiny_files(1))
    assert calls == [1024], "the tiny preset's last fit, once, at the end"
    assert fit_heads(torch.nn.Linear(1, 1), lambda n: pytest.fail("nothing to render"), HeadFitConfig(rays=0),
                     (1.0, 1.0), torch.Generator()) == {}
    with pytest.raises(ValueError, match=r"config.head_fit: rays and steps must be >= 0, batch >= 1"):
        HeadFitConfig(batch=0).check()
