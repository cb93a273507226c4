"""``simrecon mesh``: the work behind the command (docs/meshes.md).

The typer wiring lives in the CLI app; bad input raises ``ValueError`` / ``KeyError`` /
``FileNotFoundError`` with a one-line message (exit code 2). Every input is checked before anything is
extracted, and every file is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.markup import escape

FORMATS = ("glb", "ply", "obj")


def _file_stem(actor_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", actor_id) or "actor"


def _first_missing(path: Path) -> Path | None:
    """The outermost folder that ``path.mkdir(parents=True)`` would create; None when ``path`` exists."""
    if path.exists():
        return None
    while not path.parent.exists() and path.parent != path:
        path = path.parent
    return path


def _extract_all(sc, out: Path, actors: list[str], stems: list[str], bounds, fmt: str, console: Console, *,
                 resolution: int, opacity: float, target_faces: int, clip: str, symmetric: bool | None, prior: str,
                 background_resolution: int | None) -> tuple[list[Path], list[str]]:
    """Extract and write each actor's mesh (and the background's inside ``bounds``, when given) into ``out``.
    Returns (the mesh paths written, the messages of fields skipped for having no surface)."""
    from ..mesh import extract_actor, extract_background, save_mesh
    from ..mesh.scene_mesh import NoSurfaceError

    written: list[Path] = []
    skipped: list[str] = []

    def skip(exc: Exception) -> None:
        skipped.append(str(exc))
        console.print(escape(f"skipped: {exc}"), style="yellow", highlight=False, soft_wrap=True)

    for actor_id, stem in zip(actors, stems):
        t0 = time.perf_counter()
        with console.status(f"meshing {actor_id} at resolution {resolution}"):
            try:
                mesh = extract_actor(sc, actor_id, resolution=resolution, opacity=opacity,
                                     target_faces=target_faces, clip=clip, symmetric=symmetric, prior=prior)
            except NoSurfaceError as exc:  # a weak field: the others may still be fine
                skip(exc)
                continue
            path = save_mesh(mesh, out / f"{stem}.{fmt}", fmt)
        written.append(path)
        ext = mesh.bounds[1] - mesh.bounds[0]
        console.print(escape(f"{path}: {actor_id} ({mesh.meta['class']}), {len(mesh.vertices)} vertices, "
                             f"{len(mesh.faces)} faces, extent {ext[0]:.2f} x {ext[1]:.2f} x {ext[2]:.2f} m "
                             f"(box {' x '.join(f'{x:.2f}' for x in mesh.meta['size'])}), "
                             f"{time.perf_counter() - t0:.1f} s"), highlight=False, soft_wrap=True)
        borrowed = mesh.meta["extraction"].get("prior")
        if borrowed:
            console.print(escape(f"  {actor_id}: barely seen; {1 - borrowed['own_weight']:.0%} of its shape from "
                                 f"{borrowed['template']} (--prior off to use its own field only)"),
                          highlight=False, soft_wrap=True)
        size = mesh.meta["size"]
        if any(e < 0.5 * s for e, s in zip(ext, size)):
            console.print(escape(f"warning: {actor_id}: the mesh spans less than half its box on some axis: the "
                                 "field is weak there (the log saw little of this actor)"), style="yellow",
                          highlight=False, soft_wrap=True)
    if bounds is not None:
        t0 = time.perf_counter()
        res = background_resolution or max(resolution, 256)
        with console.status(f"meshing the background at resolution {res}"):
            try:
                mesh = extract_background(sc, bounds[0], bounds[1], resolution=res, opacity=opacity)
            except NoSurfaceError as exc:
                skip(exc)
                mesh = None
            if mesh is not None:
                path = save_mesh(mesh, out / f"background.{fmt}", fmt)
        if mesh is not None:
            written.append(path)
            console.print(escape(f"{path}: background, {len(mesh.vertices)} vertices, {len(mesh.faces)} faces, "
                                 f"{time.perf_counter() - t0:.1f} s"), highlight=False, soft_wrap=True)
    return written, skipped


def _check_options(fmt: str, resolution: int, opacity: float, target_faces: int, clip: str, prior: str,
                   actors: list[str], all_actors: bool, background: bool, region: str | None):
    """Refuse bad options (one-line ValueError naming the option) before the scene is loaded; returns the
    background's bounds (None without --background)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not 8 <= int(resolution) <= 1024:
        raise ValueError(f"--resolution: expected 8..1024, got {resolution}")
    if not 0.0 < opacity < 1.0:
        raise ValueError(f"--opacity: expected a value in (0, 1), got {opacity}")
    if target_faces < 100:
        raise ValueError(f"--faces: expected >= 100, got {target_faces}")
    if clip not in ("box", "ground", "none"):
        raise ValueError(f"--clip: expected box, ground or none, got {clip!r}")
    if prior not in ("auto", "off"):
        raise ValueError(f"--prior: expected auto or off, got {prior!r}")
    if actors and all_actors:
        raise ValueError("--actor and --all-actors cannot be combined")
    if not actors and not all_actors and not background:
        raise ValueError("nothing to extract: give --actor ID, --all-actors or --background")
    if region is not None and not background:
        raise ValueError("--region bounds the background mesh: add --background")
    if not background:
        return None
    if region is None:
        raise ValueError("--background needs --region xmin,ymin,zmin,xmax,ymax,zmax (world metres)")
    from ..mesh.scene_mesh import parse_region

    return parse_region(region)


def mesh_command(scene: Path, out: Path, actors: Sequence[str] | None = None, all_actors: bool = False,
                 background: bool = False, resolution: int = 128, fmt: str = "glb", region: str | None = None,
                 console: Console | None = None, opacity: float = 0.5, target_faces: int = 20000,
                 background_resolution: int | None = None, clip: str = "box",
                 symmetric: bool | None = None, prior: str = "auto", log: Path | None = None) -> list[Path]:
    """Extract meshes of ``actors`` (or every actor with ``all_actors``) and optionally the background inside
    ``region`` ("xmin,ymin,zmin,xmax,ymax,zmax", world metres) into ``out``: ``<actor>.<fmt>`` and
    ``background.<fmt>``, each with a ``.json`` sidecar. Returns the mesh paths written. A field without a
    surface (an actor the log barely saw) is skipped with a warning; when nothing at all is written, a
    one-line ValueError (and no output folder left behind).

    Options beyond the command's core ones: ``opacity`` (surface opacity, docs/meshes.md), ``target_faces``
    (decimation target), ``background_resolution`` (default max(resolution, 256)), ``symmetric`` (mirror left/right;
    None: vehicles only), ``clip`` (box, ground or
    none: where actor density counts), ``prior`` (auto: barely seen actors borrow the shape of the best-seen
    actor of their class, simrecon.mesh.prior; off), ``log`` (the scene's drive log, when it moved).
    """
    console = console or Console(stderr=True)
    actors = list(actors or [])
    fmt = (fmt or "").lower()
    bounds = _check_options(fmt, resolution, opacity, target_faces, clip, prior, actors, all_actors, background,
                            region)
    scene = Path(scene)
    if not scene.exists():
        raise FileNotFoundError(f"{scene}: no such scene folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    # The mesh extra, before the (slow) scene load.
    for mod, what in (("trimesh", "trimesh"), ("skimage", "scikit-image")):
        try:
            __import__(mod)
        except ImportError:
            raise ValueError(f"simrecon mesh needs {what}: pip install 'simrecon[mesh]'") from None

    from ..mesh import check_actors
    from ..scene import load_scene

    with console.status(f"opening {scene}"):
        sc = load_scene(scene, log=log)
    if all_actors:
        actors = list(sc.info.actors)[:sc.model.num_actor_fields]
        if not actors:
            raise ValueError(f"{scene}: no actor fields (no tracked actors, or reconstructed without actor fields)")
    check_actors(sc, actors)
    stems = [_file_stem(a) for a in actors]
    if len(set(stems)) != len(stems) or (background and "background" in stems):
        raise ValueError("actor ids collide as file names; extract them one at a time")

    created = _first_missing(out)  # the folder this run makes (out, or a missing parent of it), if any
    out.mkdir(parents=True, exist_ok=True)
    try:
        written, skipped = _extract_all(sc, out, actors, stems, bounds, fmt, console, resolution=resolution,
                                        opacity=opacity, target_faces=target_faces, clip=clip,
                                        symmetric=symmetric, prior=prior,
                                        background_resolution=background_resolution)
    except BaseException:
        if created is not None:  # a failed run (a full disk, Ctrl-C) leaves no folder of its own behind
            shutil.rmtree(created, ignore_errors=True)
        raise
    if not written:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise ValueError(skipped[0] if len(skipped) == 1 else
                         f"no mesh written: {len(skipped)} fields without a surface ({skipped[0]}; ...)")
    if skipped:
        console.print(escape(f"{len(written)} mesh(es) written to {out}, {len(skipped)} skipped (no surface)"),
                      style="yellow", highlight=False, soft_wrap=True)
    return written
