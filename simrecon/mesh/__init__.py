"""Meshed objects: extract actors (and the background) of a reconstructed scene as meshes, export them with a
JSON sidecar, and insert mesh assets into any RenderableScene (docs/meshes.md).

Needs the ``mesh`` extra (trimesh, scikit-image; Open3D optional) for extraction and mesh files; importing
this package does not.
"""

from .assets import Asset, load_asset, load_assets, read_sidecar, resolve_asset, save_mesh, sidecar_path
from .extract import DensityField, MeshData, density_threshold, extract_field
from .raycast import MeshHits, make_raycaster
from .render import ASSET_PREFIX, SceneWithAssets, is_asset_source
from .scene_mesh import check_actors, extract_actor, extract_background, parse_region

__all__ = [
    "ASSET_PREFIX", "Asset", "DensityField", "MeshData", "MeshHits", "SceneWithAssets", "check_actors",
    "density_threshold", "extract_actor", "extract_background", "extract_field", "is_asset_source", "load_asset",
    "load_assets", "make_raycaster", "parse_region", "read_sidecar", "resolve_asset", "save_mesh", "sidecar_path",
]
