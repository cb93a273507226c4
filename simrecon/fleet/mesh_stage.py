"""The fleet's ``mesh`` stage: the log's reconstructed actors (and, when asked, the background inside a region) as
mesh files with their JSON sidecars, as ``simrecon mesh`` writes them (docs/meshes.md), in ``OUT/<log>/<stage>/``.

The folder is built under a temporary name and renamed when complete, with ``meshes.json`` listing each mesh (its
file, actor, class, vertices, faces, bytes) and the fields skipped for having no surface. A stage that writes no
mesh at all fails with the first skip's line (a reconstruction too weak to mesh is bad input, not retried).
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .state import StageFigures

INDEX = "meshes.json"  # OUT/<log>/<stage>/meshes.json: what the stage wrote and skipped


@dataclass(frozen=True)
class MeshFile:
    file: str  # the mesh file, relative to the stage's folder (its sidecar: the same name with .json)
    actor: str | None  # the actor id; None for the background
    cls: str  # the actor's class, or "background"
    vertices: int
    faces: int
    bytes: int  # the mesh file and its sidecar


def _file_stem(actor_id: str) -> str:
    """A file stem for an actor id: letters, digits, '.', '_' and '-' only, no leading dot (no hidden file, no
    '..'), so that the mesh lands in the stage's folder whatever the log calls its actors."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", actor_id).lstrip(".") or "actor"


def _needs_mesh_extra() -> None:
    from .stages import StageError

    for module, package in (("trimesh", "trimesh"), ("skimage", "scikit-image")):
        try:
            __import__(module)
        except ImportError:
            raise StageError(f"the mesh stage needs {package}: pip install 'simrecon[mesh]'") from None


def _actors(scene, opts) -> tuple[list[str], list[str]]:
    """(actor ids, their file stems): the stage's ``actors`` checked against the scene, or every actor field."""
    from ..mesh import check_actors
    from .stages import StageError

    actors = list(opts.actors) if opts.actors is not None else \
        list(scene.info.actors)[:scene.model.num_actor_fields]
    check_actors(scene, actors)
    stems = [_file_stem(a) for a in actors]
    if len(set(stems)) != len(stems) or (opts.background and "background" in stems):
        raise StageError("mesh.actors: actor ids collide as file names; mesh them in separate stages")
    return actors, stems


def _write(mesh, folder: Path, stem: str, fmt: str, actor: str | None) -> MeshFile:
    from ..mesh import save_mesh, sidecar_path

    path = save_mesh(mesh, folder / f"{stem}.{fmt}", fmt)
    size = path.stat().st_size + sidecar_path(path).stat().st_size
    return MeshFile(path.name, actor, str(mesh.meta.get("class", "background")), len(mesh.vertices),
                    len(mesh.faces), size)


def _extract(scene, opts, folder: Path) -> tuple[list[MeshFile], list[str]]:
    """Mesh every actor (and the background) into ``folder``; (files written, lines of fields skipped)."""
    from ..mesh import extract_actor, extract_background, parse_region
    from ..mesh.scene_mesh import NoSurfaceError

    written, skipped = [], []
    for actor, stem in zip(*_actors(scene, opts)):
        try:
            mesh = extract_actor(scene, actor, resolution=opts.resolution, opacity=opts.opacity,
                                 target_faces=opts.faces, clip=opts.clip, symmetric=opts.symmetric,
                                 prior=opts.prior)
        except NoSurfaceError as exc:  # a weak field: the others may still be fine
            skipped.append(str(exc))
            continue
        written.append(_write(mesh, folder, stem, opts.format, actor))
    if opts.background:
        lo, hi = parse_region(opts.region)
        try:
            mesh = extract_background(scene, lo, hi, resolution=opts.background_resolution or
                                      max(opts.resolution, 256), opacity=opts.opacity)
            written.append(_write(mesh, folder, "background", opts.format, None))
        except NoSurfaceError as exc:
            skipped.append(str(exc))
    return written, skipped


def run_mesh(task) -> StageFigures:
    """The ``mesh`` stage of ``task`` (a ``StageTask``): meshes of the log's reconstruction in OUT/<log>/<stage>."""
    from ..data.outdir import check_target, swap_in, temp_beside
    from ..scene import load_scene
    from .stages import StageError

    opts = task.stage.options
    _needs_mesh_extra()
    scene = load_scene(task.scene_dir, device=opts.device, log=Path(task.log_dir))
    out = task.log_out / task.stage.name
    check_target(out, force=True)  # replaces an earlier run's meshes, never a folder simrecon did not write
    tmp = temp_beside(out)
    try:
        written, skipped = _extract(scene, opts, tmp)
        if not written:
            raise StageError(skipped[0] if len(skipped) == 1 else
                             f"no mesh written: {len(skipped)} fields without a surface ({skipped[0]}; ...)")
        index = {"meshes": [asdict(m) for m in written], "skipped": skipped}
        (tmp / INDEX).write_text(json.dumps(index, indent=1))
        swap_in(tmp, out, "fleet mesh")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return StageFigures(meshes=len(written), mesh_faces=sum(m.faces for m in written),
                        mesh_mb=round(sum(m.bytes for m in written) / 1e6, 3))
