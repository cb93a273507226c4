"""Mesh files with a JSON sidecar: writing extracted meshes, and reading them (or any mesh) as assets.

A mesh asset is ``NAME.glb`` / ``NAME.ply`` / ``NAME.obj`` with ``NAME.json`` beside it::

    {"class": "car", "size": [4.4, 1.8, 1.5], "forward": "+x", "up": "+z", "origin": "box_center"}

``size`` [length, width, height] in metres is required; ``forward`` / ``up`` say which mesh axes point to
the front and the top (default ``+x`` / ``+z``); ``origin`` where the mesh origin is: ``box_center`` (the
box frame: what ``simrecon mesh`` writes), ``bottom_center`` (on the ground under the centre, as most
game-engine assets are) or ``bounds_center`` (centre the mesh's bounding box); ``scale`` multiplies
the mesh coordinates into metres (default 1). Loading moves the mesh into the simrecon box frame:
origin at the box centre, x forward, y left, z up, metres.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..scene.checkpoint import write_failed
from .extract import MeshData

FORMATS = ("glb", "ply", "obj")
AXES = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}
ORIGINS = ("box_center", "bottom_center", "bounds_center")
DEFAULT_COLOR = (128, 128, 128)


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise ImportError("meshes need trimesh: pip install 'simrecon[mesh]'") from None
    return trimesh


def sidecar_path(mesh_path: str | Path) -> Path:
    """``car.glb`` -> ``car.json``."""
    return Path(mesh_path).with_suffix(".json")


# -- writing -------------------------------------------------------------------------------------------------
def to_trimesh(mesh: MeshData):
    trimesh = _trimesh()
    colors = np.concatenate([mesh.colors, np.full((len(mesh.colors), 1), 255, np.uint8)], 1)
    return trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, vertex_colors=colors, process=False)


def save_mesh(mesh: MeshData, path: str | Path, fmt: str | None = None) -> Path:
    """Write ``mesh`` to ``path`` (format from ``fmt`` or the suffix) and its sidecar (``mesh.meta``), each
    through a temporary file in the same folder renamed when complete. Returns the mesh path."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not len(mesh.faces):
        raise ValueError(f"{path}: refusing to write an empty mesh")
    if path.suffix.lower() != f".{fmt}":
        path = path.with_suffix(f".{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_trimesh(mesh).export(file_type=fmt)
    if isinstance(data, str):
        data = data.encode("utf-8")
    side = json.dumps(mesh.meta, indent=1).encode("utf-8")
    tmps = []
    target = path
    try:
        for target, payload in ((path, data), (sidecar_path(path), side)):
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
            tmps.append((tmp, target))
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        for tmp, target in tmps:
            os.replace(tmp, target)
    except BaseException as exc:
        for tmp, _ in tmps:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):  # a full disk's error names no file: say which one
            raise write_failed(target, exc) from exc
        raise
    return path


# -- reading -------------------------------------------------------------------------------------------------
@dataclass
class Asset:
    """A mesh in the simrecon box frame (origin at the box centre, x forward, y left, z up, metres)."""

    name: str
    path: Path
    cls: str
    size: np.ndarray  # [3] length, width, height (metres): the box used for labels
    vertices: np.ndarray  # [V, 3] float32
    faces: np.ndarray  # [F, 3] int64
    colors: np.ndarray  # [V, 3] uint8
    sidecar: dict = field(default_factory=dict)
    _raycaster: object = field(default=None, repr=False)

    def raycaster(self, backend: str = "auto"):
        """Ray caster over the mesh in its box frame (built once)."""
        if self._raycaster is None:
            from .raycast import make_raycaster

            self._raycaster = make_raycaster(self.vertices, self.faces, backend)
        return self._raycaster

    def to_mesh(self) -> MeshData:
        return MeshData(self.vertices, self.faces, self.colors, dict(self.sidecar))


def read_sidecar(mesh_path: str | Path) -> dict:
    """The sidecar of ``mesh_path``, checked; one-line ValueError naming the file and the field."""
    side = sidecar_path(mesh_path)
    if not side.is_file():
        raise ValueError(f"{mesh_path}: no sidecar {side.name} (JSON with class, size [l, w, h], forward)")
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{side}: unreadable: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{side}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{side}: expected a JSON object")
    if "size" not in doc or doc["size"] is None:
        raise ValueError(f"{side}: size: missing ([length, width, height] in metres)")
    size = doc["size"]
    if (not isinstance(size, list) or len(size) != 3
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) and x > 0
                       for x in size)):
        raise ValueError(f"{side}: size: expected [length, width, height], 3 positive numbers, got {size!r}")
    cls = doc.get("class", "car")
    if not isinstance(cls, str) or not cls:
        raise ValueError(f"{side}: class: expected a non-empty string, got {cls!r}")
    for key, default in (("forward", "+x"), ("up", "+z")):
        v = doc.get(key, default)
        if v not in AXES:
            raise ValueError(f"{side}: {key}: expected one of {', '.join(AXES)}, got {v!r}")
    if np.dot(AXES[doc.get("forward", "+x")], AXES[doc.get("up", "+z")]) != 0:
        raise ValueError(f"{side}: forward {doc.get('forward', '+x')!r} and up {doc.get('up', '+z')!r} "
                         "must be perpendicular")
    origin = doc.get("origin", "box_center")
    if origin not in ORIGINS:
        raise ValueError(f"{side}: origin: expected one of {', '.join(ORIGINS)}, got {origin!r}")
    scale = doc.get("scale", 1.0)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"{side}: scale: expected a positive number, got {scale!r}")
    return doc


def _read_mesh(path: Path):
    """-> (vertices [V, 3], faces [F, 3], colours [V, 3] uint8); one-line ValueError when unreadable."""
    trimesh = _trimesh()
    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 (parsers raise anything on garbage)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path}: unreadable mesh: {msg}") from None
    if isinstance(loaded, list):
        loaded = trimesh.util.concatenate(loaded) if loaded else None
    if loaded is None or not hasattr(loaded, "faces") or loaded.faces is None or len(loaded.faces) == 0:
        raise ValueError(f"{path}: empty mesh (no triangles)")
    v = np.asarray(loaded.vertices, np.float64)
    f = np.asarray(loaded.faces, np.int64)
    if not np.isfinite(v).all():
        raise ValueError(f"{path}: mesh has non-finite vertex coordinates")
    colors = np.tile(np.array(DEFAULT_COLOR, np.uint8), (len(v), 1))
    try:
        vis = loaded.visual
        if getattr(vis, "kind", None) == "texture":
            vis = vis.to_color()
        if getattr(vis, "kind", None) in ("vertex", "face"):
            vc = np.asarray(vis.vertex_colors)
            if vc.shape[0] == len(v):
                colors = vc[:, :3].astype(np.uint8)
    except Exception:  # noqa: BLE001 (odd materials: keep grey)
        pass
    return v, f, colors


def load_asset(path: str | Path, name: str | None = None) -> Asset:
    """Read a mesh asset (``.glb`` / ``.ply`` / ``.obj`` + sidecar) into the box frame.

    Errors are one line (FileNotFoundError / ValueError): missing file, unknown format, unreadable or empty
    mesh, missing or bad sidecar (no size, bad axes...)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such mesh file")
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ValueError(f"{path}: unsupported mesh format {path.suffix!r} (expected .glb, .ply or .obj)")
    doc = read_sidecar(path)
    v, f, colors = _read_mesh(path)
    fwd = np.array(AXES[doc.get("forward", "+x")], float)
    up = np.array(AXES[doc.get("up", "+z")], float)
    rot = np.stack([fwd, np.cross(up, fwd), up])  # rows: box x, y, z in mesh axes
    v = (v * float(doc.get("scale", 1.0))) @ rot.T
    size = np.asarray(doc["size"], float)
    origin = doc.get("origin", "box_center")
    if origin == "bounds_center":
        v = v - (v.min(0) + v.max(0)) / 2
    elif origin == "bottom_center":
        v = v - np.array([0.0, 0.0, size[2] / 2])
    return Asset(name or path.stem, path, doc.get("class", "car"), size, v.astype(np.float32), f, colors, doc)


def load_assets(folder: str | Path) -> dict[str, Asset]:
    """Every mesh asset in ``folder`` (e.g. ``SCENE/assets``), keyed by file stem."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such asset folder")
    out: dict[str, Asset] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower().lstrip(".") in FORMATS and not p.name.startswith("."):
            if p.stem in out:
                raise ValueError(f"{folder}: two meshes named {p.stem!r} ({out[p.stem].path.name}, {p.name})")
            out[p.stem] = load_asset(p)
    return out


def resolve_asset(ref: str, scene_dir: str | Path | None = None, base_dir: str | Path | None = None) -> Path:
    """Find the mesh file of ``ref`` (what follows ``asset:`` in a scenario): a path (absolute, or relative to
    ``base_dir``, the scenario's folder), or a name in ``scene_dir/assets`` (``NAME.glb|ply|obj``)."""
    if not ref:
        raise ValueError("asset: empty name")
    p = Path(ref)
    cands = [p] if p.is_absolute() else ([Path(base_dir) / p] if base_dir is not None else []) + [p]
    for c in cands:
        if c.suffix.lower().lstrip(".") in FORMATS and c.is_file():
            return c
    if scene_dir is not None and p.suffix == "" and len(p.parts) == 1:
        for fmt in FORMATS:
            c = Path(scene_dir) / "assets" / f"{ref}.{fmt}"
            if c.is_file():
                return c
    where = f"; names are looked up as NAME.glb|ply|obj in {Path(scene_dir) / 'assets'}" if scene_dir is not None else ""
    raise FileNotFoundError(f"asset {ref!r}: no such mesh file{where}")
