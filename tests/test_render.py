"""Rendering conventions with analytic fields: ray generation, a known plane's depth, actor compositing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from simrecon.data import Actor, Intrinsics, Track
from simrecon.data.geometry import make_pose, rot_z
from simrecon.fields import SceneBox
from simrecon.render import SceneModel, camera_directions
from simrecon.render.image import render_image
from simrecon.render.samplers import pdf_bins, spaced_bins
from simrecon.synth.rig import CameraMount
from simrecon.train import preset

INTR = Intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48)


def test_camera_directions_go_through_pixel_centres_and_undo_distortion():
    for intr in (INTR, Intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48, k1=-0.2, k2=0.05, p1=0.01, p2=-0.005),
                 Intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48, model="OPENCV_FISHEYE", k1=0.1, k2=-0.02)):
        d = camera_directions(intr).numpy()  # [H, W, 3]
        uv, depth = intr.project(d.reshape(-1, 3).astype(np.float64) * 3.0)
        u, v = np.meshgrid(np.arange(64) + 0.5, np.arange(48) + 0.5)
        # Projection re-applies the distortion the rays removed: back to the pixel centres (float32 rays).
        np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], 1), atol=2e-3)
        assert np.all(depth > 0)
        np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-6)


def test_pdf_resampling_concentrates_samples_where_the_weight_is():
    near = torch.full((3,), 0.05)
    bins = spaced_bins(near, 1000.0, 32, stratified=False)
    w = torch.zeros(3, 32)
    w[:, 10] = 1.0
    new = pdf_bins(bins, w, 16, stratified=False)
    inside = ((new >= bins[:, 10:11]) & (new <= bins[:, 11:12])).float().mean()
    assert inside > 0.8
    assert torch.all(new[:, 0] == bins[:, 0]) and torch.all(new[:, -1] == bins[:, -1])


def test_pdf_resampling_keeps_a_uniform_share_along_the_ray():
    # A proposal that went opaque near the camera must not take every final sample with it.
    near = torch.full((3,), 0.05)
    bins = spaced_bins(near, 1000.0, 32, stratified=False)
    w = torch.zeros(3, 32)
    w[:, 0] = 1.0
    behind = lambda e: (e[:, 1:-1] > bins[:, 1:2]).float().mean()  # noqa: E731  # edges past the first bin
    assert behind(pdf_bins(bins, w, 40, stratified=False)) < 0.05
    share = behind(pdf_bins(bins, w, 40, stratified=False, uniform=0.25))
    assert 0.15 < share < 0.35  # ~25% of the mass spread over all 32 bins, 31 of them past the first


def _model(actors=()) -> SceneModel:
    cfg = preset("tiny").model
    cfg.samples, cfg.proposal_samples, cfg.actor_samples = 48, 64, 32
    box = SceneBox(np.array([10.0, 0.0, 2.0]), np.array([20.0, 10.0, 5.0]))
    return SceneModel(cfg, box, list(actors), num_appearance=1)


def _plane_density(model: SceneModel):
    """Replace the learned densities by an opaque ground (z < 0); colour stays learned (irrelevant here)."""
    bg_density = model.background.density

    def density(x):
        sigma, geo = bg_density(x)
        return torch.where(x[:, 2] < 0, torch.full_like(sigma, 1e4), torch.zeros_like(sigma)), geo

    model.background.density = density
    model.proposal.forward = lambda x: torch.where(x[:, 2] < 0, torch.full_like(x[:, 0], 1e4),
                                                   torch.zeros_like(x[:, 0]))


def test_rendered_depth_of_a_known_plane():
    model = _model()
    _plane_density(model)
    c2w = CameraMount("front", (0.0, 0.0, 1.5), 0.0).camera_to_vehicle()  # 1.5 m above z = 0, looking +x
    out = render_image(model, c2w, INTR, 0.0, 0, near=0.3)
    v = 47
    expected = 1.5 / ((v + 0.5 - INTR.cy) / INTR.fl_y)  # depth along the view axis of the bottom row
    # Sample spacing limits the accuracy of the expected termination: a few percent at 48 + 64 samples.
    assert out.depth[v, 32] == pytest.approx(expected, rel=0.03)
    assert np.all(np.isinf(out.depth[:20]))  # above the horizon: nothing but sky
    assert out.acc[v, 32] > 0.99 and out.acc[0, 32] < 0.01


def _box_actor_density(model: SceneModel):
    """Every actor field becomes a solid box filling its actor's size."""
    for f in model.actor_fields:
        half = f.half_size / (1 + f.cfg.margin)

        def forward(x, d, half=half):
            inside = (x.abs() <= half).all(-1)
            return torch.where(inside, torch.full_like(x[:, 0], 1e4), torch.zeros_like(x[:, 0])), \
                torch.ones_like(x) * torch.tensor([1.0, 0.0, 0.0])

        f.forward = forward


def test_actor_is_drawn_where_its_pose_puts_it_and_moves_with_it():
    car = Actor("car", "car", np.array([4.0, 2.0, 1.5]),
                Track([0.0, 1.0], [make_pose(np.eye(3), np.array([12.0, 0.0, 0.75])),
                                   make_pose(np.eye(3), np.array([12.0, 3.0, 0.75]))]))
    model = _model([car])
    _plane_density(model)
    _box_actor_density(model)
    c2w = CameraMount("front", (0.0, 0.0, 1.5), 0.0).camera_to_vehicle()
    at0 = render_image(model, c2w, INTR, 0.0, 0, near=0.3)
    at1 = render_image(model, c2w, INTR, 1.0, 0, near=0.3)  # track moved it 3 m to the left
    cols0 = np.nonzero(at0.instance == 1)[1]
    cols1 = np.nonzero(at1.instance == 1)[1]
    assert len(cols0) > 20 and len(cols1) > 20
    # Box front face at x = 10 m: depth along the view axis ~10 m where the car is seen.
    assert np.median(at0.depth[at0.instance == 1]) == pytest.approx(10.0, abs=0.5)
    assert cols1.mean() < cols0.mean() - 5  # moved left in the image
    assert np.all(at0.rgb[at0.instance == 1][:, 0] > 0.9)  # the actor's own (red) colour
    # An explicit placement overrides the track: the same car 2 m to the right at t = 0.
    moved = render_image(model, c2w, INTR, 0.0, 0, near=0.3,
                         placements=[(0, make_pose(rot_z(0.3), np.array([12.0, -2.0, 0.75])))])
    assert np.nonzero(moved.instance == 1)[1].mean() > cols0.mean() + 5
    # Outside its track's time span the actor is absent.
    gone = render_image(model, c2w, INTR, 5.0, 0, near=0.3)
    assert not np.any(gone.instance == 1)


def test_track_bank_poses_every_actor_as_its_own_track_does():
    from simrecon.render.poses import TrackBank, TrackTensor

    rng = np.random.default_rng(0)

    def track(times, static=False):
        poses = [make_pose(rot_z(float(rng.uniform(-3, 3))), rng.normal(size=3) * 5) for _ in times]
        return TrackTensor(Track(np.asarray(times, float), np.stack(poses)), static)

    tracks = [track([0.0, 0.5, 1.0, 1.5]), track([0.3]), track([0.3], static=True), track([0.2, 0.9], static=True),
              track([0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1])]
    # Before, at and between entries, exactly at the ends, after: presence and poses as TrackTensor.at says.
    t = torch.tensor([-0.5, 0.0, 0.2, 0.3, 0.3 + 1e-8, 0.55, 0.9, 1.0, 1.1, 1.5, 2.0], dtype=torch.float64)
    rot, trans, present = TrackBank(tracks).at(t)
    for k, tr in enumerate(tracks):
        r_ref, t_ref, p_ref = tr.at(t)
        assert torch.equal(present[k], p_ref), k
        torch.testing.assert_close(rot[k], r_ref, atol=1e-5, rtol=0)  # float32 slerp, same formula
        torch.testing.assert_close(trans[k], t_ref, atol=1e-5, rtol=0)
    assert TrackBank(tracks).at(torch.zeros(0, dtype=torch.float64))[0].shape == (5, 0, 3, 3)  # empty batch
    # a one-frame log: every track has one entry (crashed once: interpolation read past the single column)
    single = [track([0.3]), track([0.3], static=True)]
    rot, trans, present = TrackBank(single).at(t)
    for k, tr in enumerate(single):
        assert torch.equal(present[k], tr.at(t)[2])
        torch.testing.assert_close(trans[k], tr.at(t)[1], atol=1e-5, rtol=0)


def _perturbed_actor_fields(cfg, sizes, seed: int):
    from simrecon.fields import ActorField

    torch.manual_seed(seed)
    fields = [ActorField(cfg, np.asarray(s, dtype=np.float32)) for s in sizes]
    for f in fields:  # away from the near-zero init, so that every output and gradient carries information
        for p in f.parameters():
            with torch.no_grad():
                p.add_(torch.randn_like(p) * 0.3)
    return fields


@pytest.mark.parametrize("low_precision", [False, True])
def test_all_actor_fields_in_one_pass_match_a_call_per_field(low_precision):
    from simrecon.fields import ActorFieldConfig, evaluate_actor_fields

    cfg = ActorFieldConfig(num_levels=3, log2_hashmap_size=10, max_resolution=32, hidden=16,
                           low_precision=low_precision)
    fields = _perturbed_actor_fields(cfg, [(4.5, 1.9, 1.5), (1.0, 0.8, 1.8), (12.0, 2.5, 3.5)], seed=0)
    fields.append(fields[0])  # one field placed twice (the composer's inserted copy)
    counts = [37, 0, 5, 12]  # a field no point reaches, groups of different sizes
    gen = torch.Generator().manual_seed(1)
    x = ((torch.rand(sum(counts), 3, generator=gen) - 0.5) * 6).requires_grad_(True)  # some outside their box
    d = torch.nn.functional.normalize(torch.randn(sum(counts), 3, generator=gen), dim=-1)
    sigma, rgb = evaluate_actor_fields(fields, x, d, counts)
    parts = [f(xa, da) for f, xa, da, c in zip(fields, x.split(counts), d.split(counts), counts) if c]
    ref_sigma, ref_rgb = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    # The same float32 (or bf16) arithmetic per row: a batched matmul instead of one per field; only the
    # summation order may differ (bf16 products are accumulated in float32 both ways).
    torch.testing.assert_close(sigma, ref_sigma, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(rgb, ref_rgb, rtol=1e-4, atol=1e-5)
    assert bool((sigma == 0).any()) and bool((sigma > 0).any())  # points outside their box have no density
    params = [p for f in fields[:3] for p in f.parameters()]
    got = torch.autograd.grad(sigma.sum() + rgb.sum(), [x, *params], allow_unused=True)
    ref = torch.autograd.grad(ref_sigma.sum() + ref_rgb.sum(), [x, *params], allow_unused=True)
    for g, r in zip(got, ref):
        assert (g is None) == (r is None)  # the unreached field gets no gradient, as with a call per field
        if r is not None:
            # float32: sums of many terms in another order. bf16: a weight gradient is a bf16 matmul output
            # (8-bit mantissa, relative rounding 2^-8), summed over the chunks of a group instead of rounded
            # once: a few roundings of 0.4 % each, relative to the largest entry.
            tol = 1e-3 if not low_precision else 2e-2 * float(r.abs().max())
            torch.testing.assert_close(g, r, rtol=1e-3 if not low_precision else 2e-2, atol=max(tol, 1e-4))


def test_actor_fields_of_different_configs_are_evaluated_one_by_one():
    from simrecon.fields import ActorFieldConfig, evaluate_actor_fields

    a = _perturbed_actor_fields(ActorFieldConfig(num_levels=2, log2_hashmap_size=8, hidden=8), [(4, 2, 1.5)], 2)
    b = _perturbed_actor_fields(ActorFieldConfig(num_levels=3, log2_hashmap_size=8, hidden=8), [(4, 2, 1.5)], 3)
    x, d = torch.zeros(6, 3), torch.nn.functional.normalize(torch.ones(6, 3), dim=-1)
    sigma, rgb = evaluate_actor_fields(a + b, x, d, [2, 4])
    torch.testing.assert_close(sigma[2:], b[0](x[2:], d[2:])[0])
    torch.testing.assert_close(rgb[:2], a[0](x[:2], d[:2])[1])
    with pytest.raises(ValueError, match=r"counts \[2, 3\] and points \[6, 3\]"):
        evaluate_actor_fields(a + b, x, d, [2, 3])


@pytest.mark.parametrize("low_precision", [False, True])
def test_colour_along_rays_is_the_per_sample_colour(low_precision):
    """The renderer colours every sample with the direction encoding and appearance code looked up once per ray;
    that must be the field's per-sample colour function, values and gradients."""
    from simrecon.fields import BackgroundField, BackgroundFieldConfig

    torch.manual_seed(0)
    cfg = BackgroundFieldConfig(num_levels=2, log2_hashmap_size=8, max_resolution=16, hidden=16,
                                low_precision=low_precision)
    field = BackgroundField(cfg, SceneBox(np.zeros(3), np.ones(3)), num_appearance=3)
    with torch.no_grad():
        field.appearance.weight.normal_()  # the zero init would hide a wrong code
    r, s = 5, 7
    geo = torch.randn(r, s, cfg.geo_features, requires_grad=True)
    dirs = torch.nn.functional.normalize(torch.randn(r, 3), dim=-1)
    app = torch.tensor([0, 2, 1, 2, 0])
    got = field.color_along_rays(geo, dirs, app)  # [R, S, 3]
    ref = field.color(geo.reshape(r * s, -1), dirs.repeat_interleave(s, 0), app.repeat_interleave(s)).view(r, s, 3)
    torch.testing.assert_close(got, ref)  # the same rows through the same MLP
    params = [geo, *field.color_net.parameters(), field.appearance.weight]
    weights = torch.rand(r, s, 3)
    g_got = torch.autograd.grad((got * weights).sum(), params)
    g_ref = torch.autograd.grad((ref * weights).sum(), params)
    for a, b in zip(g_got, g_ref):
        # the per-ray code's gradient is summed over its S samples before the embedding's scatter, not after:
        # float32 sums in another order (bf16 matmul outputs: a rounding of 2^-8 relative)
        tol = 1e-5 if not low_precision else 1e-2 * float(b.abs().max())
        torch.testing.assert_close(a, b, rtol=1e-4 if not low_precision else 1e-2, atol=tol)


def test_lower_sh_degree_takes_the_first_bands_and_degree_1_ignores_the_view():
    from simrecon.fields import BackgroundField, BackgroundFieldConfig
    from simrecon.fields.sh import sh_encode

    d = torch.nn.functional.normalize(torch.randn(50, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    full = sh_encode(d)
    assert full.shape == (50, 16)
    for k in (1, 2, 3):
        torch.testing.assert_close(sh_encode(d, k), full[:, :k * k])
    with pytest.raises(ValueError, match="degree must be 1 to 4, got 5"):
        sh_encode(d, 5)
    torch.manual_seed(0)
    field = BackgroundField(BackgroundFieldConfig(num_levels=2, log2_hashmap_size=8, max_resolution=16, hidden=16,
                                                  sh_degree=1), SceneBox(np.zeros(3), np.ones(3)), 1)
    geo = torch.randn(1, 15).expand(50, 15)
    rgb = field.color(geo, d, torch.zeros(50, dtype=torch.long))
    torch.testing.assert_close(rgb, rgb[:1].expand(50, 3))  # one point seen from 50 directions: one colour


def test_sky_texture_reads_each_direction_s_own_texels():
    from simrecon.fields import SkyField

    sky = SkyField(texture=8, texture_features=2)  # 8 rows over z, 16 columns over the azimuth
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(16.0), indexing="ij")
    with torch.no_grad():
        sky.texture.copy_(torch.stack([rows, cols])[None])
    r = torch.tensor([1.0, 3.0, 6.0, 4.0])
    c = torch.tensor([2.0, 9.0, 14.0, 7.5])  # the last one half-way between two columns: bilinear
    z = -1 + 2 * r / 7
    az = (-1 + 2 * c / 15) * math.pi
    rho = torch.sqrt(1 - z**2)
    dirs = torch.stack([rho * torch.cos(az), rho * torch.sin(az), z], -1)
    torch.testing.assert_close(sky.texture_features(dirs), torch.stack([r, c], -1), atol=1e-4, rtol=0)


def test_sky_texture_fits_a_sharp_horizon_that_harmonics_blur():
    """Sky above the horizon, grey road below (transparent rays early in training pull the sky there too): with
    the harmonics alone the sky's fit just above the horizon is poor, and a ceiling of density can do better.
    Fixed seed; the margin (3 dB) is well under the gap measured with these settings (6.6 dB)."""
    from simrecon.fields import SkyField
    from simrecon.synth.shading import sky_color

    def target(d):
        return torch.where(d[:, 2:3] >= 0, sky_color(d), torch.full_like(d, 0.3))

    gen = torch.Generator().manual_seed(0)
    test_dirs = torch.nn.functional.normalize(torch.randn(8000, 3, generator=gen), dim=-1)
    band = (test_dirs[:, 2] >= 0.05) & (test_dirs[:, 2] < 0.2)  # just above the horizon
    psnr = {}
    for texture in (0, 32):
        torch.manual_seed(0)
        sky = SkyField(texture=texture)
        opt = torch.optim.Adam(sky.parameters(), lr=1e-2, eps=1e-15, betas=(0.9, 0.99))
        app = torch.zeros(1024, dtype=torch.long)
        for _ in range(300):
            d = torch.nn.functional.normalize(torch.randn(1024, 3, generator=gen), dim=-1)
            loss = ((sky(d, app) - target(d)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        d = test_dirs[band]
        with torch.no_grad():
            err = (sky(d, torch.zeros(len(d), dtype=torch.long)) - target(d)) ** 2
        psnr[texture] = -10 * math.log10(err.mean().item())
    assert psnr[32] > psnr[0] + 3.0, psnr
