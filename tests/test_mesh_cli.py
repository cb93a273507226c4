"""``mesh_command`` (simrecon mesh) on a tiny trained scene: outputs, sidecars, bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch

trimesh = pytest.importorskip("trimesh")
pytest.importorskip("skimage")

from rich.console import Console  # noqa: E402

from simrecon.cli.mesh_cmd import mesh_command  # noqa: E402
from simrecon.mesh import load_asset  # noqa: E402


@pytest.fixture(scope="module")
def tiny_scene(synth_small, tmp_path_factory):
    """A 1-step tiny reconstruction whose actor fields are made dense (density bias +10 in scene.json), so
    each actor's mesh is the box its density is clipped to (the tracked box, or the field's margin box)."""
    from simrecon.train import preset, reconstruct

    cfg = preset("tiny")
    cfg.budget.steps = 1
    scene = tmp_path_factory.mktemp("mesh") / "scene"
    reconstruct(synth_small / "log", scene, cfg)
    info = json.loads((scene / "scene.json").read_text())
    info["config"]["model"]["actor"]["density_bias"] = 10.0
    (scene / "scene.json").write_text(json.dumps(info))
    return scene


def _console():
    return Console(file=io.StringIO(), width=200)


def test_mesh_command_writes_meshes_and_sidecars(tiny_scene, tmp_path):
    out = tmp_path / "meshes"
    paths = mesh_command(tiny_scene, out, ["car_1", "ped_0"], False, False, 32, "ply", None, _console())
    assert [p.name for p in paths] == ["car_1.ply", "ped_0.ply"]
    assert sorted(p.name for p in out.iterdir()) == ["car_1.json", "car_1.ply", "ped_0.json", "ped_0.ply"]
    side = json.loads((out / "car_1.json").read_text())
    assert side["class"] == "car" and side["size"] == pytest.approx([4.4, 1.8, 1.5]) and side["forward"] == "+x"
    assert side["source"] == {"scene": str(tiny_scene), "actor": "car_1"}
    a = load_asset(out / "car_1.ply")
    half = np.array([4.4, 1.8, 1.5]) / 2
    vox = side["extraction"]["voxel_size"]
    lo, hi = a.vertices.min(0), a.vertices.max(0)
    assert np.allclose(hi, half, atol=vox) and np.allclose(lo, -half, atol=vox)  # clipped to the tracked box
    assert trimesh.Trimesh(a.vertices, a.faces).is_watertight
    assert a.colors.shape == (len(a.vertices), 3)


def test_mesh_command_clip_modes(tiny_scene, tmp_path):
    margin = np.array([4.4, 1.8, 1.5]) / 2 * 1.1  # the field's box: margin 10 %
    for clip, lo_z in (("ground", -0.75), ("none", -margin[2])):
        p = mesh_command(tiny_scene, tmp_path / clip, ["car_1"], False, False, 32, "obj", None, _console(),
                         clip=clip)[0]
        a = load_asset(p)
        vox = json.loads(p.with_suffix(".json").read_text())["extraction"]["voxel_size"]
        assert np.allclose(a.vertices.max(0), margin, atol=vox)
        assert np.allclose(a.vertices.min(0)[:2], -margin[:2], atol=vox)
        assert a.vertices.min(0)[2] == pytest.approx(lo_z, abs=vox)


def test_mesh_command_all_actors_glb(tiny_scene, tmp_path):
    paths = mesh_command(tiny_scene, tmp_path / "all", None, True, False, 16, "glb", None, _console())
    assert len(paths) == 8 and all(p.suffix == ".glb" for p in paths)
    assert all(load_asset(p).faces.shape[0] > 0 for p in paths)


@pytest.mark.parametrize("kwargs, exc, needle", [
    (dict(actors=["car_9"]), KeyError, "no actor 'car_9'"),
    (dict(actors=["car_1", "car_9"]), KeyError, "no actor 'car_9'"),
    (dict(actors=["car_1"], all_actors=True), ValueError, "cannot be combined"),
    (dict(), ValueError, "nothing to extract"),
    (dict(actors=["car_1"], fmt="stl"), ValueError, "--format"),
    (dict(actors=["car_1"], resolution=4), ValueError, "--resolution"),
    (dict(background=True), ValueError, "--region"),
    (dict(background=True, region="1,2,3"), ValueError, "--region"),
    (dict(background=True, region="0,0,0,1,1,-1"), ValueError, "--region"),
    (dict(actors=["car_1"], region="0,0,0,1,1,1"), ValueError, "add --background"),
    (dict(actors=["car_1"], clip="tight"), ValueError, "--clip"),
    (dict(actors=["car_1"], prior="mean"), ValueError, "--prior"),
])
def test_mesh_command_bad_input(tiny_scene, tmp_path, kwargs, exc, needle):
    out = tmp_path / "out"
    args = dict(actors=None, all_actors=False, background=False, resolution=32, fmt="glb", region=None)
    args.update(kwargs)
    with pytest.raises(exc) as e:
        mesh_command(tiny_scene, out, console=_console(), **args)
    msg = str(e.value).strip("'\"")
    assert needle in msg and "\n" not in msg
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_mesh_command_missing_scene_and_actor_without_field(tiny_scene, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        mesh_command(tmp_path / "nope", tmp_path / "o", ["car_1"], False, False, 32, "glb", None, _console())
    import simrecon.scene as scene_mod

    loaded = scene_mod.load_scene(tiny_scene)
    loaded.model.actor_fields = torch.nn.ModuleList()  # as a scene reconstructed without actor fields
    monkeypatch.setattr(scene_mod, "load_scene", lambda *a, **k: loaded)
    out = tmp_path / "o"
    with pytest.raises(ValueError) as e:
        mesh_command(tiny_scene, out, ["car_1"], False, False, 32, "glb", None, _console())
    assert "has no field" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError) as e:
        mesh_command(tiny_scene, out, None, True, False, 32, "glb", None, _console())
    assert "no actor fields" in str(e.value)
    assert not out.exists()


def test_mesh_command_background_region(tiny_scene, tmp_path):
    # The 1-step background is empty everywhere: a clear line, and nothing written.
    out = tmp_path / "bg"
    with pytest.raises(ValueError) as e:
        mesh_command(tiny_scene, out, None, False, True, 16, "glb", "0,-8,-1,20,8,5", _console(),
                     background_resolution=24)
    assert "no surface" in str(e.value) and "\n" not in str(e.value)
    assert not out.exists()
    # With an actor that has a surface, the background is skipped with a warning and the actor is written.
    con = _console()
    paths = mesh_command(tiny_scene, out, ["ped_0"], False, True, 16, "glb", "0,-8,-1,20,8,5", con,
                         background_resolution=24)
    assert [p.name for p in paths] == ["ped_0.glb"]
    assert "skipped: background: no surface" in con.file.getvalue()
    assert sorted(p.name for p in out.iterdir()) == ["ped_0.glb", "ped_0.json"]


def test_barely_seen_actor_borrows_the_best_seen_shape(tiny_scene):
    from simrecon.mesh import extract_actor
    from simrecon.mesh.prior import ShapePriorConfig, observed_pixels
    from simrecon.scene import load_scene

    sc = load_scene(tiny_scene, device="cpu")
    holdout = set(sc.info.holdout)
    cars = [a for a in sc.info.actors if sc.log.actor(a).cls == "car"]
    px = {a: observed_pixels(sc.log, a, holdout) for a in cars}
    best, worst = max(cars, key=px.get), min(cars, key=px.get)
    cfg = ShapePriorConfig(min_pixels=px[best])
    m = extract_actor(sc, worst, resolution=24, prior_cfg=cfg)
    assert m.meta["extraction"]["prior"] == {"template": best, "own_weight": pytest.approx(px[worst] / px[best])}
    assert extract_actor(sc, best, resolution=24, prior_cfg=cfg).meta["extraction"]["prior"] is None
    assert extract_actor(sc, worst, resolution=24, prior="off", prior_cfg=cfg).meta["extraction"]["prior"] is None
    # With the default threshold (20 000 pixels) nothing in this 160x96 log is seen enough to lend its shape.
    assert extract_actor(sc, worst, resolution=24).meta["extraction"]["prior"] is None


def test_mesh_command_on_the_real_dgp_log(tmp_path):
    """simrecon mesh on a reconstruction of real DGP tracks (box frames and sizes from the log, 97 actors); the
    fields are made dense as in ``tiny_scene``, so each mesh must be its actor's tracked box."""
    from fixtures_readers import shared_data

    from simrecon.data.readers import convert
    from simrecon.train import preset, reconstruct

    log = convert("dgp", shared_data("dgp_test_scene") / "scene_01", tmp_path / "log")
    cfg = preset("tiny")
    cfg.budget.steps = 1
    scene = tmp_path / "scene"
    reconstruct(tmp_path / "log", scene, cfg)
    info = json.loads((scene / "scene.json").read_text())
    info["config"]["model"]["actor"]["density_bias"] = 10.0
    (scene / "scene.json").write_text(json.dumps(info))
    actor = log.actors[0]
    paths = mesh_command(scene, tmp_path / "meshes", [actor.id], False, False, 24, "ply", None, _console())
    side = json.loads(paths[0].with_suffix(".json").read_text())
    assert side["class"] == actor.cls and side["size"] == pytest.approx(list(actor.size))
    a = load_asset(paths[0])
    vox = side["extraction"]["voxel_size"]
    assert np.allclose(a.vertices.max(0), np.asarray(actor.size) / 2, atol=vox)
    assert np.allclose(a.vertices.min(0), -np.asarray(actor.size) / 2, atol=vox)
