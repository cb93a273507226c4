"""Meshed objects: extraction on analytic fields, export round trips, mesh assets, ray casting and
occlusion-correct compositing of an inserted mesh into the synthetic street."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("skimage")

from simrecon.data.scene_api import ActorPlacement, logged_placements  # noqa: E402
from simrecon.mesh import (MeshData, SceneWithAssets, density_threshold, extract_field, load_asset,  # noqa: E402
                           load_assets, make_raycaster, resolve_asset, save_mesh)
from simrecon.mesh.raycast import TorchRaycaster  # noqa: E402


class SphereField:
    """A fake actor field (ActorField's interface): a ball of radius ``r`` whose density rises steeply at the
    surface; red below z = 0, green above, whatever the view direction."""

    def __init__(self, r: float = 1.0, peak: float = 1000.0, width: float = 0.01):
        self.r, self.peak, self.width = r, peak, width
        self.half_size = torch.full((3,), 1.25 * r)

    def forward(self, x, dirs):
        d = x.norm(dim=-1)
        sigma = self.peak * torch.sigmoid((self.r - d) / self.width)
        up = (x[:, 2] > 0).float()
        rgb = torch.stack([1 - up, up, torch.full_like(d, 0.25)], -1)
        return sigma, rgb

    __call__ = forward


def sphere_mesh(resolution: int = 48, target_faces: int | None = 3000) -> MeshData:
    f = SphereField()
    h = f.half_size.numpy()
    # Threshold from the opacity rule: the sigmoid's mid-point (peak / 2) is the surface.
    return extract_field(f, -h, h, resolution, threshold=500.0, target_faces=target_faces)


@pytest.fixture(scope="module")
def sphere():
    return sphere_mesh()


def test_sphere_density_gives_a_sphere(sphere):
    m = sphere
    r = np.linalg.norm(m.vertices, axis=1)
    assert np.abs(r - 1.0).max() < 0.02  # voxel 0.053 m: decimated vertices stay on the surface
    assert abs(r.mean() - 1.0) < 0.005
    tm = trimesh.Trimesh(m.vertices, m.faces)
    assert tm.is_watertight and tm.is_winding_consistent
    assert tm.volume == pytest.approx(4 / 3 * np.pi, rel=0.03)  # positive: faces wound outward
    assert len(m.faces) <= 3000
    # Colours baked looking along the inward normal: red below, green above.
    top, bottom = m.vertices[:, 2] > 0.2, m.vertices[:, 2] < -0.2
    assert (m.colors[top, 1] == 255).all() and (m.colors[top, 0] == 0).all()
    assert (m.colors[bottom, 0] == 255).all() and (m.colors[bottom, 1] == 0).all()


def test_threshold_is_an_opacity_over_a_voxel():
    # sigma * h / scale = ln 2 <=> a voxel-sized step is half opaque.
    assert density_threshold(0.05, 20.0) == pytest.approx(np.log(2) * 20.0 / 0.05)
    # A linear density profile sigma = k (1.1 - |x|) crosses that threshold where predicted.
    k, scale = 2000.0, 4.0

    class Ramp(SphereField):
        def forward(self, x, dirs):
            return (k * (1.1 - x.norm(dim=-1))).clamp(min=0), torch.full_like(x, 0.5)

        __call__ = forward

    m = extract_field(Ramp(), -1.3 * np.ones(3), 1.3 * np.ones(3), 40, scale=scale, target_faces=None)
    h = m.meta["voxel_size"]
    expect = 1.1 - density_threshold(h, scale) / k
    err = np.linalg.norm(m.vertices, axis=1) - expect
    assert abs(err.mean()) < 0.005 and np.abs(err).max() < 0.02  # |x| is not linear inside a voxel (0.067 m)


def test_nothing_above_threshold_gives_an_empty_mesh():
    m = extract_field(SphereField(peak=1.0), -np.ones(3), np.ones(3), 16, threshold=500.0)
    assert len(m.faces) == 0 and m.meta["raw_peak_density"] < 500


class OneSidedBox(SphereField):
    """A box spanning y in [-0.1, 0.5] (a car seen from its left side only): green where y > 0, blue below."""

    def forward(self, x, dirs):
        c, h = torch.tensor([0.0, 0.2, 0.0]), torch.tensor([0.8, 0.3, 0.4])
        q = (x - c).abs() - h
        sd = q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)
        left = (x[:, 1] > 0).float()
        return 1000.0 * torch.sigmoid(-sd / 0.01), torch.stack([torch.zeros_like(left), left, 1 - left], -1)

    __call__ = forward


def test_mirrored_extraction_completes_the_unseen_side():
    lo, hi = -np.ones(3), np.ones(3)
    plain = extract_field(OneSidedBox(), lo, hi, 40, threshold=500.0, target_faces=None)
    mirrored = extract_field(OneSidedBox(), lo, hi, 40, threshold=500.0, target_faces=None, mirror_axis=1)
    h = plain.meta["voxel_size"]  # 0.05: the iso-surface is placed within a voxel of the box face
    assert abs(plain.bounds[0, 1] + 0.1) < h and abs(plain.bounds[1, 1] - 0.5) < h
    assert abs(mirrored.bounds[0, 1] + 0.5) < h and abs(mirrored.bounds[1, 1] - 0.5) < h
    np.testing.assert_allclose(mirrored.bounds[:, [0, 2]], plain.bounds[:, [0, 2]], atol=1e-4)
    # The completed side takes the colour of the side that was seen (green), not the field's own (blue).
    far = mirrored.vertices[:, 1] < -0.2
    assert far.sum() > 50 and (mirrored.colors[far, 1] == 255).all() and (mirrored.colors[far, 2] == 0).all()
    with pytest.raises(ValueError, match="centred on 0"):
        extract_field(OneSidedBox(), np.array([-1.0, -1.0, -1.0]), np.array([1.0, 0.5, 1.0]), 16,
                      threshold=500.0, mirror_axis=1)


@pytest.mark.parametrize("fmt", ["glb", "ply", "obj"])
def test_export_round_trip(tmp_path, sphere, fmt):
    meta = {"class": "ball", "size": [2.0, 2.0, 2.0], "forward": "+x"}
    m = MeshData(sphere.vertices, sphere.faces, sphere.colors, meta)
    path = save_mesh(m, tmp_path / "ball", fmt)
    assert path == tmp_path / f"ball.{fmt}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"ball.{fmt}", "ball.json"])  # no temporaries
    assert json.loads((tmp_path / "ball.json").read_text()) == meta
    back = trimesh.load(path, force="mesh", process=False)
    assert len(back.vertices) == len(m.vertices) and len(back.faces) == len(m.faces)
    assert np.allclose(back.bounds, m.bounds, atol=1e-5)
    # Same vertices in the same order, with their colours.
    assert np.allclose(back.vertices, m.vertices, atol=1e-5)
    assert np.array_equal(np.asarray(back.visual.vertex_colors)[:, :3], m.colors)
    asset = load_asset(path)
    assert asset.name == "ball" and asset.cls == "ball" and list(asset.size) == [2.0, 2.0, 2.0]
    assert np.allclose(asset.vertices, m.vertices, atol=1e-5) and np.array_equal(asset.colors, m.colors)


def _box_asset(folder: Path, name: str, size, color=(255, 0, 255), sidecar: dict | None = None,
               fmt: str = "ply") -> Path:
    box = trimesh.creation.box(extents=size)
    colors = np.tile(np.array(color, np.uint8), (len(box.vertices), 1))
    side = {"class": "car", "size": list(size)} if sidecar is None else sidecar
    return save_mesh(MeshData(np.asarray(box.vertices, np.float32), np.asarray(box.faces), colors, side),
                     folder / f"{name}.{fmt}")


def test_asset_sidecar_axes_and_origin(tmp_path):
    # A mesh modelled with forward = -y, up = +z, origin on the ground: 4 x 2 x 1.5 box.
    box = trimesh.creation.box(extents=[2.0, 4.0, 1.5])
    box.apply_translation([0, -0.5, 0.75])  # nose (the -y end) sticks out further
    m = MeshData(np.asarray(box.vertices, np.float32), np.asarray(box.faces),
                 np.full((len(box.vertices), 3), 200, np.uint8),
                 {"class": "car", "size": [4.0, 2.0, 1.5], "forward": "-y", "up": "+z", "origin": "bottom_center"})
    a = load_asset(save_mesh(m, tmp_path / "van.obj"))
    lo, hi = a.vertices.min(0), a.vertices.max(0)
    assert np.allclose(lo, [-1.5, -1.0, -0.75], atol=1e-5) and np.allclose(hi, [2.5, 1.0, 0.75], atol=1e-5)
    assert set(load_assets(tmp_path)) == {"van"}
    assert resolve_asset("van.obj", scene_dir=tmp_path.parent / "nowhere", base_dir=tmp_path) == tmp_path / "van.obj"
    (tmp_path.parent / "scn" / "assets").mkdir(parents=True)
    os.replace(tmp_path / "van.obj", tmp_path.parent / "scn" / "assets" / "van.obj")
    assert resolve_asset("van", scene_dir=tmp_path.parent / "scn").name == "van.obj"
    with pytest.raises(FileNotFoundError) as e:
        resolve_asset("bus", scene_dir=tmp_path.parent / "scn")
    _one_line_error(e, "asset 'bus'", "assets")


def _one_line_error(exc_info, *needles):
    msg = str(exc_info.value).strip("'\"")
    assert "\n" not in msg
    for n in needles:
        assert n in msg, msg


def test_bad_assets_fail_with_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_asset(tmp_path / "none.glb")
    _one_line_error(e, "none.glb")
    # Sidecar without a size.
    p = _box_asset(tmp_path, "nosize", [1, 1, 1], sidecar={"class": "car"})
    with pytest.raises(ValueError) as e:
        load_asset(p)
    _one_line_error(e, "nosize.json", "size: missing")
    # No sidecar at all.
    (tmp_path / "nosize.json").unlink()
    with pytest.raises(ValueError) as e:
        load_asset(p)
    _one_line_error(e, "no sidecar")
    # Unreadable and empty meshes (sidecars fine).
    side = json.dumps({"class": "car", "size": [1, 1, 1]})
    (tmp_path / "junk.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage-garbage")
    (tmp_path / "junk.json").write_text(side)
    with pytest.raises(ValueError) as e:
        load_asset(tmp_path / "junk.glb")
    _one_line_error(e, "junk.glb", "unreadable mesh")
    (tmp_path / "empty.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                                        "property float z\nelement face 0\nproperty list uchar int vertex_indices\n"
                                        "end_header\n")
    (tmp_path / "empty.json").write_text(side)
    with pytest.raises(ValueError) as e:
        load_asset(tmp_path / "empty.ply")
    _one_line_error(e, "empty.ply", "empty mesh")
    (tmp_path / "bad.json").write_text(json.dumps({"size": [1, 1, 1], "forward": "+x", "up": "+x"}))
    (tmp_path / "bad.ply").write_bytes((tmp_path / "nosize.ply").read_bytes())
    with pytest.raises(ValueError) as e:
        load_asset(tmp_path / "bad.ply")
    _one_line_error(e, "perpendicular")


def test_save_mesh_leaves_nothing_half_written(tmp_path, sphere, monkeypatch):
    with pytest.raises(ValueError):
        save_mesh(MeshData(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.uint8)),
                  tmp_path / "e.glb")
    with pytest.raises(ValueError):
        save_mesh(sphere, tmp_path / "x.stl")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_mesh(sphere, tmp_path / "s.glb")
    assert list(tmp_path.iterdir()) == []


def test_raycaster_matches_analytic_box():
    box = trimesh.creation.box(extents=[2.0, 1.0, 0.5])
    rng = np.random.default_rng(0)
    o = rng.uniform(-1.2, 1.2, (4000, 3))
    o[:, 0] = -5.0
    d = np.tile([1.0, 0.0, 0.0], (4000, 1)) + rng.normal(0, 0.05, (4000, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    hits = TorchRaycaster(box.vertices, box.faces, block=4).cast(o, d)
    # Slab test for the same box.
    inv = 1 / d
    t1, t2 = (-np.array([1, 0.5, 0.25]) - o) * inv, (np.array([1, 0.5, 0.25]) - o) * inv
    tmin, tmax = np.minimum(t1, t2).max(1), np.maximum(t1, t2).min(1)
    hit = tmax >= tmin
    assert 200 < hit.sum() < 3800
    assert np.array_equal(np.isfinite(hits.t), hit)
    assert np.allclose(hits.t[hit], tmin[hit], atol=1e-4)
    assert (hits.face[hit] >= 0).all() and (hits.face[~hit] == -1).all()
    # Barycentrics reproduce the hit point.
    tri = box.vertices[box.faces[hits.face[hit]]]
    u, v = hits.uv[hit, :1], hits.uv[hit, 1:]
    p = (1 - u - v) * tri[:, 0] + u * tri[:, 1] + v * tri[:, 2]
    assert np.allclose(p, o[hit] + hits.t[hit, None] * d[hit], atol=1e-4)
    auto = make_raycaster(box.vertices, box.faces).cast(o, d)  # Open3D when it imports
    assert np.allclose(np.nan_to_num(auto.t, posinf=-1), np.nan_to_num(hits.t, posinf=-1), atol=1e-4)
    assert np.array_equal(auto.face, hits.face) or np.allclose(auto.t, hits.t, atol=1e-4)  # ties on edges


def test_open3d_raycaster_agrees_with_torch():
    pytest.importorskip("open3d")
    from simrecon.mesh.raycast import Open3DRaycaster

    sphere = trimesh.creation.icosphere(subdivisions=3)
    rng = np.random.default_rng(1)
    o = rng.normal(size=(3000, 3)) * 3
    d = rng.normal(size=(3000, 3)) * 0.3 - o / np.linalg.norm(o, axis=1, keepdims=True)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    a = Open3DRaycaster(sphere.vertices, sphere.faces).cast(o, d)
    b = TorchRaycaster(sphere.vertices, sphere.faces).cast(o, d)
    assert np.array_equal(np.isfinite(a.t), np.isfinite(b.t)) and np.isfinite(a.t).sum() > 500
    hit = np.isfinite(a.t)
    assert np.allclose(a.t[hit], b.t[hit], atol=1e-4)
    same = a.face == b.face
    assert same.mean() > 0.99 and np.allclose(a.uv[same], b.uv[same], atol=1e-3)


# -- compositing into the synthetic street -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def street(synth_small):
    from simrecon.synth import GroundTruthScene

    return GroundTruthScene.from_log(synth_small / "log")


def _front(street, t=0.0):
    return next(f for f in street.log.cameras["front"] if abs(f.timestamp - t) < 1e-9)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_inserted_mesh_is_occluded_by_depth(tmp_path, street, backend):
    frame = _front(street)
    intr, c2w = frame.intrinsics, frame.c2w
    logged = logged_placements(street.log, 0.0)
    car = "car_1"  # ahead in the right lane, 10 m in front of the camera
    base = street.render(c2w, intr, 0.0, logged)
    k_car = list(logged).index(car) + 1
    car_px = base.instance == k_car
    assert car_px.sum() > 100
    big = load_asset(_box_asset(tmp_path, "big", [4.4, 1.8, 1.5], color=(255, 0, 255)))
    small = load_asset(_box_asset(tmp_path, "small", [1.0, 1.0, 1.0], color=(0, 255, 255)))
    scene = SceneWithAssets(street, {"big": big, "small": small}, raycast_backend=backend)
    pose = logged[car].pose
    ray = pose[:3, 3] - c2w[:3, 3]
    ray /= np.linalg.norm(ray)
    left = np.cross([0, 0, 1.0], ray)

    def place(name, offset):
        p = pose.copy()
        p[:3, 3] = p[:3, 3] + offset
        return ActorPlacement(f"asset:{name}", p)

    def mesh_alone(asset, placement):
        """Pixels the mesh covers with nothing else in the way (its own ray cast)."""
        only = scene.render(c2w, intr, 0.0, {"m": placement}, ("instance", "depth"))
        hits_px = only.instance == 1
        return hits_px

    # Behind the car (6 m further along the view ray, 1.5 m to the left): hidden by the car where they overlap.
    behind = place("big", 6.0 * ray + 1.5 * left)
    out = scene.render(c2w, intr, 0.0, {**logged, "mesh": behind})
    k_mesh = len(logged) + 1
    assert out.instance_names == list(logged) + ["mesh"]
    alone = mesh_alone(big, behind)
    overlap = alone & car_px
    assert overlap.sum() > 20
    assert (out.instance[overlap] == k_car).all()  # the logged car is in front
    assert np.array_equal(out.instance[car_px], base.instance[car_px])
    visible = out.instance == k_mesh
    assert visible.sum() > 20 and not (visible & car_px).any()
    assert np.allclose(out.rgb[visible], [1.0, 0.0, 1.0])
    assert (out.depth[visible] < base.depth[visible]).all()
    assert np.allclose(out.depth[~visible], base.depth[~visible])
    # Everything else in the image is untouched.
    assert np.allclose(out.rgb[~visible], base.rgb[~visible])
    assert np.array_equal(out.instance[~visible], base.instance[~visible])

    # In front of the car (4 m closer): it hides the car where they overlap.
    front = place("small", -4.0 * ray)
    out = scene.render(c2w, intr, 0.0, {"mesh": front, **logged})
    k_mesh, k_car2 = 1, list(logged).index(car) + 2
    mine = out.instance == k_mesh
    overlap = mine & car_px
    assert overlap.sum() > 20
    assert np.allclose(out.rgb[overlap], [0.0, 1.0, 1.0])
    assert ((out.instance == k_car2) == (car_px & ~mine)).all()
    assert (car_px & ~mine).sum() > 20  # the rest of the car is still there

    with pytest.raises(KeyError) as e:
        scene.render(c2w, intr, 0.0, {"x": ActorPlacement("asset:nope", pose)})
    _one_line_error(e, "no asset 'nope'")
    # Without asset placements the base scene renders alone.
    plain = scene.render(c2w, intr, 0.0, logged, ("instance",))
    assert np.array_equal(plain.instance, base.instance)


def test_mesh_assets_return_lidar_points_and_occlude_what_is_behind(tmp_path, street):
    log = street.log
    sensor = next(iter(log.lidar_sensors.values()))
    sweep = log.lidar[0]
    logged = logged_placements(log, sweep.timestamp)
    base = street.render_lidar(sensor, sweep.s2w, sweep.timestamp, logged)
    grey = load_asset(_box_asset(tmp_path, "grey", [3.0, 2.0, 2.0], color=(128, 128, 128)))
    scene = SceneWithAssets(street, {"grey": grey})
    pose = sweep.s2w.copy()  # 8 m ahead of the sensor, on the sensor's axes, at its height
    pose[:3, 3] = sweep.s2w[:3, 3] + 8.0 * sweep.s2w[:3, 0]
    out = scene.render_lidar(sensor, sweep.s2w, sweep.timestamp, {**logged, "box": ActorPlacement("asset:grey", pose)})
    k = len(logged) + 1
    assert out.instance_names == list(logged) + ["box"]
    mine = out.instance == k
    assert mine.sum() > 50 and out.returned[mine].all()
    # the points lie on the box's near face (x = -1.5 in its frame, 6.5 m ahead) or its sides, and nothing behind
    # the box returns through it
    pts = (out.points()[out.instance[out.returned] == k])
    local = (pts - [8.0, 0.0, 0.0])
    assert np.all(np.abs(local) <= [1.5 + 1e-4, 1.0 + 1e-4, 1.0 + 1e-4])
    front = np.isclose(local[:, 0], -1.5, atol=1e-4)
    assert front.mean() > 0.5
    assert (out.range_m[mine] <= base.range_m[mine] + 1e-6).all()
    # a face seen head-on returns the colour's mean (0.5) times cos(incidence), the exact scene models intensity
    d = sensor.directions()[mine]
    face_on = mine.nonzero()[0][np.isclose(out.range_m[mine] * d[:, 0], 6.5, atol=1e-3)]
    assert np.allclose(out.intensity[face_on], (128 / 255) * sensor.directions()[face_on, 0], atol=1e-4)
    rest = ~mine
    assert np.array_equal(out.returned[rest], base.returned[rest]) and np.array_equal(out.instance[rest],
                                                                                       base.instance[rest])
    assert np.allclose(out.range_m[rest & base.returned], base.range_m[rest & base.returned])


def test_composer_renders_an_asset_actor(tmp_path, synth_small, street):
    """What the composer does once a scenario accepts ``source: asset:...``: an inserted actor whose source is
    a mesh is drawn, labelled and occluded through SceneWithAssets."""
    import yaml

    from simrecon.compose import load_scenario, render_frame
    from simrecon.mesh.compose import ground_z, scenario_assets

    _box_asset(tmp_path, "van", [4.0, 2.0, 2.0], color=(0, 0, 255), sidecar={"class": "truck", "size": [4, 2, 2]})
    assets = scenario_assets(["car_1", "asset:van.ply"], scene_dir=None, base_dir=tmp_path)
    assert list(assets) == ["van.ply"] and assets["van.ply"].cls == "truck"
    assert ground_z(street.log) == pytest.approx(0.0, abs=1e-6)
    traj = [{"t": 0.0, "position": [12.0, -1.75]}, {"t": 0.5, "position": [14.0, -1.75]}]
    doc = {"scene": str(synth_small / "log"), "cameras": ["front"], "time": {"times": [0.0]},
           "visibility": "render", "actors": [{"id": "van_1", "source": "asset:van.ply", "trajectory": traj}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    plan = load_scenario(tmp_path / "s.yaml", scene=street)
    new = plan.actor("van_1")
    assert new.cls == "truck" and list(new.size) == [4, 2, 2]  # from the sidecar
    frame = render_frame(plan, "front", 0)
    mask = frame.instance == new.instance_id
    assert mask.sum() > 100 and (frame.rgb[mask] == [0, 0, 255]).all()
    rec = next(o for o in frame.record["objects"] if o["id"] == "van_1")
    assert rec["source"] == "asset:van.ply" and rec["visible_pixels"] == mask.sum()
    assert rec["visibility"] == pytest.approx(1.0)
    assert np.isfinite(frame.depth[mask]).all()


def test_vertex_clustering_fallback_decimates(sphere):
    from simrecon.mesh.clean import cluster_decimate

    dense = trimesh.creation.icosphere(subdivisions=5)  # 20480 faces
    out = cluster_decimate(dense, 2000)
    assert 200 < len(out.faces) <= 2000
    assert np.abs(np.linalg.norm(out.vertices, axis=1) - 1.0).max() < 0.05


def test_union_surface_has_no_interior_faces_and_no_double_sampling():
    from simrecon.mesh.evaluate import sample_union_surface

    # Body and cabin stacked face to face (as the synthetic cars are): the shared plane z = 0 is inside the union.
    body = (np.array([0.0, 0.0, -0.25]), np.array([1.0, 0.5, 0.25]))
    cabin = (np.array([0.0, 0.0, 0.25]), np.array([0.5, 0.4, 0.25]))
    pts = sample_union_surface([body, cabin], 200000, seed=0)
    at_seam = (np.abs(pts[:, 2]) < 1e-9) & (np.abs(pts[:, 0]) < 0.5) & (np.abs(pts[:, 1]) < 0.4)
    assert at_seam.sum() == 0
    # The body's top outside the cabin's footprint is real surface and kept.
    assert ((np.abs(pts[:, 2]) < 1e-9) & (np.abs(pts[:, 0]) > 0.55)).sum() > 1000
    # A wheel flush with the body side: the shared side plane is sampled once, at the same density as elsewhere.
    wheel = (np.array([0.5, 0.4, -0.25]), np.array([0.2, 0.1, 0.2]))
    pts = sample_union_surface([body, wheel], 200000, seed=0)
    side = np.abs(pts[:, 1] - 0.5) < 1e-9
    in_patch = side & (np.abs(pts[:, 0] - 0.5) < 0.2) & (np.abs(pts[:, 2] + 0.25) < 0.2)
    density_patch = in_patch.sum() / (0.4 * 0.4)
    density_side = (side & ~in_patch).sum() / (2.0 * 0.5 - 0.4 * 0.4)
    assert density_patch == pytest.approx(density_side, rel=0.1)  # 2x if the wheel's face were kept too


def test_interior_of_a_hollow_shell_is_filled_and_open_gaps_stay_open():
    from simrecon.mesh.solid import interior_mask

    occ = np.zeros((24, 20, 16), bool)
    occ[4:20, 4:16, 6:12] = True
    occ[6:18, 6:14, 8:10] = False  # a hollow body (walls 2 voxels thick) ...
    occ[4:8, 4:16, 2:6] = occ[16:20, 4:16, 2:6] = True  # ... on two axles: the gap under it is open along y
    inside = interior_mask(occ)
    cavity = np.zeros_like(occ)
    cavity[6:18, 6:14, 8:10] = True
    assert (inside == cavity).all()
    # A hole through the top wall: the voxels below it see the sky straight up, one direction only. Counted as
    # outside (min_directions=1) they stay an empty tube, a surface inside the object; by default they are filled.
    occ[12, 10, 10:12] = False
    tube = np.zeros_like(occ)
    tube[12, 10, 8:10] = True
    assert (interior_mask(occ, min_directions=1) == cavity & ~tube).all()
    assert interior_mask(occ)[cavity].all()


class HollowBall(SphereField):
    """A ball whose field is dense only in a 0.15-thick skin (r in [0.85, 1]) with a hole at its top: the inside
    is empty, as an actor field's inside is when no ray ever reached it."""

    def forward(self, x, dirs):
        d = x.norm(dim=-1)
        skin = torch.sigmoid((1.0 - d) / 0.01) * torch.sigmoid((d - 0.85) / 0.01)
        hole = (x[:, 2] > 0.8) & (x[:, :2].norm(dim=-1) < 0.12)
        return 1000.0 * skin * ~hole, torch.full_like(x, 0.5)

    __call__ = forward


def test_solid_extraction_has_no_inner_shell():
    lo, hi = -1.25 * np.ones(3), 1.25 * np.ones(3)
    hollow = extract_field(HollowBall(), lo, hi, 48, threshold=500.0, target_faces=None)
    solid = extract_field(HollowBall(), lo, hi, 48, threshold=500.0, target_faces=None, solid=True)
    r_hollow = np.linalg.norm(hollow.vertices, axis=1)
    r_solid = np.linalg.norm(solid.vertices, axis=1)
    assert (r_hollow < 0.9).mean() > 0.3  # the inner wall, reached through the hole, is meshed
    # Filled: what is left below the skin are the few voxels that see out through the hole along one of the 26
    # grid directions (a thin shaft straight down and one along each diagonal).
    assert (r_solid < 0.9).sum() < 0.25 * (r_hollow < 0.9).sum()
    assert solid.meta["filled_voxels"] > 0.5 * (4 / 3 * np.pi * 0.85 ** 3) / solid.meta["voxel_size"] ** 3


class _Box:
    """An actor field that is a dense box filling its whole field box."""

    def __init__(self, size):
        self.half_size = torch.as_tensor(np.asarray(size, np.float32) / 2)

    def __call__(self, x, dirs):
        inside = ((x.abs() <= self.half_size).all(-1)).float()
        return 1000.0 * inside, torch.full_like(x, 0.5)


class _Empty(_Box):
    def __init__(self, half):
        self.half_size = half

    def __call__(self, x, dirs):
        return torch.zeros(len(x)), torch.ones_like(x)


def test_shape_prior_borrows_from_the_best_seen_actor_of_the_class(synth_small):
    from types import SimpleNamespace

    from simrecon.data.io import load_log
    from simrecon.mesh.prior import PriorField, ShapePriorConfig, choose_template, observed_pixels, spans_box

    log = load_log(synth_small / "log")
    px = {a.id: observed_pixels(log, a.id) for a in log.actors}
    cars = sorted((a.id for a in log.actors if a.cls == "car"), key=px.get)
    assert px[cars[0]] > 0 and px[cars[-1]] > 10 * px[cars[0]]  # far and near cars of the small street
    ids = [a.id for a in log.actors]
    scene = SimpleNamespace(log=log, info=SimpleNamespace(actors=ids, holdout=[]),
                            model=SimpleNamespace(num_actor_fields=len(ids)))
    cfg = ShapePriorConfig(min_pixels=px[cars[-1]] * 0.9)
    template, w = choose_template(scene, cars[0], cfg)
    assert template == cars[-1] and w == pytest.approx(px[cars[0]] / cfg.min_pixels)
    assert choose_template(scene, cars[-1], cfg) == (None, 1.0)  # seen enough: its own shape
    assert choose_template(scene, "ped_0", cfg) == (None, 1.0)  # no other pedestrian to borrow from
    # A template only within max_size_ratio (1.25) of the actor's size on every axis: the best-seen car made a
    # 1.5x longer truck-sized box of the same class no longer lends its shape (and no other car is seen enough).
    import dataclasses

    stretched = {a.id: dataclasses.replace(a, size=np.asarray(a.size) * [1.5, 1.0, 1.0]) if a.id == cars[-1] else a
                 for a in log.actors}
    long_log = SimpleNamespace(frames=log.frames, actors=list(stretched.values()), actor=stretched.__getitem__)
    assert choose_template(SimpleNamespace(log=long_log, info=scene.info, model=scene.model), cars[0], cfg) \
        == (None, 1.0)
    assert choose_template(SimpleNamespace(log=long_log, info=scene.info, model=scene.model), cars[0],
                           ShapePriorConfig(min_pixels=cfg.min_pixels, max_size_ratio=1.6))[0] == cars[-1]
    # Templates are vetted best-seen first; an actor no training image saw borrows nothing.
    assert choose_template(scene, cars[0], cfg, usable=lambda o: False) == (None, 1.0)
    scene.info.holdout = [f.file_path for f in log.frames]
    assert choose_template(scene, cars[0], cfg) == (None, 1.0)
    # A template must span its box: a dense box does, fog that is dense only in its middle does not.
    size = np.array([4.0, 2.0, 1.5])
    assert spans_box(_Box(size), 500.0, size, 0.8, mirror=False)
    assert not spans_box(_Box(size * 0.5), 500.0, size, 0.8, mirror=False)
    # The blend stretches the template's box onto the actor's and keeps the actor's colours.
    own, tmpl = _Box([2.0, 1.0, 1.0]), _Box([4.0, 2.0, 2.0])
    f = PriorField(_Empty(own.half_size), tmpl, 0.25)  # the actor's own field is empty, coloured white
    x = torch.tensor([[0.9, 0.0, 0.0], [1.1, 0.0, 0.0]])  # inside / outside the actor's box (half length 1)
    sigma, rgb = f(x, torch.zeros_like(x))
    assert sigma.tolist() == pytest.approx([750.0, 0.0]) and (rgb == 1).all()
