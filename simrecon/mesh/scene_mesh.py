"""Meshes of a reconstructed scene: each actor in its box frame, the background in a world region."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .extract import DEFAULT_RESOLUTION, DEFAULT_TARGET_FACES, MeshData, extract_field, grid_shape, iso_level
from .prior import PriorField, ShapePriorConfig, choose_template, spans_box


class NoSurfaceError(ValueError):
    """The field never reaches the surface threshold in the region (a weak or empty field)."""


def actor_field(scene, actor_id: str):
    """The field of ``actor_id`` in a NeuralScene; one-line KeyError / ValueError otherwise."""
    info_actors = list(scene.info.actors)
    if actor_id not in info_actors:
        known = ", ".join(info_actors) or "none"
        raise KeyError(f"no actor {actor_id!r} in scene {scene.scene_dir} (actors: {known})")
    k = info_actors.index(actor_id)
    if k >= scene.model.num_actor_fields:
        raise ValueError(f"actor {actor_id!r} has no field in scene {scene.scene_dir} (it was reconstructed "
                         "without actor fields: the actor is part of the background)")
    return scene.model.actor_view(k)


def check_actors(scene, actor_ids: Sequence[str]) -> None:
    """Validate every id before anything is extracted (nothing half-written on bad input)."""
    seen = set()
    for a in actor_ids:
        if a in seen:
            raise ValueError(f"actor {a!r} is listed twice")
        seen.add(a)
        actor_field(scene, a)


# Left-right symmetric in their box frame (x forward, y left): mirrored about y = 0 by default.
SYMMETRIC_CLASSES = frozenset({"car", "van", "truck", "bus", "trailer", "vehicle"})


def is_symmetric_class(cls: str) -> bool:
    return str(cls).lower() in SYMMETRIC_CLASSES


def _scene_scale(scene) -> float:
    return float(scene.model.scale)


def extract_actor(scene, actor_id: str, resolution: int = DEFAULT_RESOLUTION, opacity: float = 0.5,
                  threshold: float | None = None, target_faces: int | None = DEFAULT_TARGET_FACES,
                  step: float | str = "training", clip: str = "box", symmetric: bool | None = None,
                  prior: str = "auto", prior_cfg: ShapePriorConfig | None = None,
                  timings: dict | None = None) -> MeshData:
    """Mesh of actor ``actor_id`` of a NeuralScene, in its box frame (x forward, y left, z up, metres).

    The field's box is the actor's box grown by a margin (tracks are not exact). ``clip``: "box" (default)
    ignores density outside the tracked box: sides the cameras never saw fill the margin with fog, and
    below the box bottom the margin holds the road (background density is zero inside actor boxes, so the
    actor field learns it); "ground" only cuts below the box bottom (for loose tracks whose boxes cut the
    object); "none" keeps the whole margin.

    ``step``: the length (metres) over which the surface is ``opacity`` opaque (docs/meshes.md): "training"
    (default) is the spacing of the actor samples the field was trained with, the mean extent of its box
    over ``actor_samples``; "voxel" the grid's voxel; or a number. The voxel is used when it is larger.

    ``symmetric``: mirror the density about the box's x-z plane (left = right), so that a side the cameras
    never saw takes the seen side's surface; None (default) does so for vehicle classes (SYMMETRIC_CLASSES).

    ``prior``: "auto" (default) lets an actor seen in fewer than ``prior_cfg.min_pixels`` training pixels borrow
    its shape from the best-seen actor of its class and size (simrecon.mesh.prior); "off" uses its own field
    only. The mesh's sidecar records the template and the share of the actor's own density."""
    if prior not in ("auto", "off"):
        raise ValueError(f"prior: expected auto or off, got {prior!r}")
    fld = actor_field(scene, actor_id)
    actor = scene.log.actor(actor_id)
    half = fld.half_size.detach().cpu().numpy().astype(np.float64)
    device = fld.half_size.device
    inf = np.full(3, np.inf)
    size = np.asarray(actor.size, dtype=float)
    clips = {"ground": (np.array([-np.inf, -np.inf, -size[2] / 2]), inf), "box": (-size / 2, size / 2),
             "none": None}
    if clip not in clips:
        raise ValueError(f"clip: expected ground, box or none, got {clip!r}")
    if step == "training":
        step_m = float(np.mean(2 * half)) / max(1, int(scene.model.cfg.actor_samples))
    elif step == "voxel":
        step_m = None
    elif isinstance(step, (int, float)) and step > 0:
        step_m = float(step)
    else:
        raise ValueError(f"step: expected 'training', 'voxel' or a positive length, got {step!r}")
    if symmetric is None:
        symmetric = is_symmetric_class(actor.cls)
    template, own_weight = None, 1.0
    if prior == "auto":
        pcfg = prior_cfg or ShapePriorConfig()
        # The level a template must reach: the one this actor's extraction uses (same scene, similar box).
        level = iso_level(grid_shape(-half, half, resolution)[1], threshold, _scene_scale(scene), opacity, step_m)[1]
        template, own_weight = choose_template(
            scene, actor_id, pcfg,
            usable=lambda o: spans_box(actor_field(scene, o), level, scene.log.actor(o).size, pcfg.min_fill,
                                       symmetric))
    source = fld if template is None else PriorField(fld, actor_field(scene, template), own_weight)
    mesh = extract_field(source, -half, half, resolution, threshold=threshold, scale=_scene_scale(scene),
                         opacity=opacity, step=step_m, target_faces=target_faces, keep="largest", device=device,
                         clip=clips[clip], mirror_axis=1 if symmetric else None, solid=True, timings=timings)
    if not len(mesh.faces):
        raise NoSurfaceError(f"actor {actor_id!r}: no surface (peak density {mesh.meta['raw_peak_density']:.3g} is "
                         f"below the threshold {mesh.meta['threshold']:.3g}; try a lower --opacity or a longer "
                         "reconstruction)")
    mesh.meta = {
        "class": actor.cls, "size": [float(x) for x in actor.size], "forward": "+x", "up": "+z",
        "frame": "box: origin at the box centre, x forward, y left, z up", "units": "m",
        "source": {"scene": str(scene.scene_dir), "actor": actor_id},
        "extraction": {**mesh.meta, "resolution": resolution, "target_faces": target_faces, "clip": clip,
                       "symmetric": bool(symmetric),
                       "prior": None if template is None else {"template": template, "own_weight": own_weight}},
    }
    return mesh


def parse_region(text: str) -> tuple[np.ndarray, np.ndarray]:
    """``"xmin,ymin,zmin,xmax,ymax,zmax"`` (world metres) -> (lo [3], hi [3])."""
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--region: expected xmin,ymin,zmin,xmax,ymax,zmax (numbers), got {text!r}") from None
    if len(vals) != 6 or not all(np.isfinite(vals)):
        raise ValueError(f"--region: expected 6 finite numbers xmin,ymin,zmin,xmax,ymax,zmax, got {text!r}")
    lo, hi = np.array(vals[:3]), np.array(vals[3:])
    if np.any(hi <= lo):
        raise ValueError(f"--region: each max must exceed its min, got {text!r}")
    return lo, hi


def extract_background(scene, lo: np.ndarray, hi: np.ndarray, resolution: int = 256, opacity: float = 0.5,
                       threshold: float | None = None, target_faces: int | None = 200000,
                       camera: str | None = None, timings: dict | None = None) -> MeshData:
    """Mesh of the static background inside the world box [lo, hi] (world frame, metres); colours as seen
    by ``camera``'s appearance (default: the first camera)."""
    appearance = scene.appearance_for(camera) if camera else 0
    model = scene.model
    device = next(model.parameters()).device
    mesh = extract_field(model.background_view(appearance), lo, hi, resolution, threshold=threshold,
                         scale=_scene_scale(scene), opacity=opacity, target_faces=target_faces, keep="all",
                         device=device, timings=timings)
    if not len(mesh.faces):
        raise NoSurfaceError(f"background: no surface in the region (peak density {mesh.meta['raw_peak_density']:.3g} "
                         f"is below the threshold {mesh.meta['threshold']:.3g})")
    ext = (np.asarray(hi) - np.asarray(lo)).tolist()
    mesh.meta = {
        "class": "background", "size": [float(x) for x in ext], "forward": "+x", "up": "+z",
        "frame": "world", "units": "m", "region": [float(x) for x in list(lo) + list(hi)],
        "source": {"scene": str(scene.scene_dir), "actor": None},
        "extraction": {**mesh.meta, "resolution": resolution, "target_faces": target_faces},
    }
    return mesh
