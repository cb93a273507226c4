"""Mesh clean-up with trimesh: components, small holes, decimation, outward orientation.

Decimation uses quadric edge collapse (trimesh + ``fast_simplification``, or Open3D) when installed and
falls back to vertex clustering (numpy only), so extraction works with trimesh alone.
"""

from __future__ import annotations

import numpy as np

SPECK_FRACTION = 0.01  # keep="all": components with fewer faces than this share of the largest are dropped


def _trimesh():
    try:
        import trimesh
    except ImportError:
        raise ImportError("meshes need trimesh: pip install 'simrecon[mesh]'") from None
    return trimesh


def clean_mesh(vertices: np.ndarray, faces: np.ndarray, keep: str = "largest",
               target_faces: int | None = 20000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (vertices [V, 3], faces [F, 3], outward vertex normals [V, 3]).

    ``keep``: "largest" keeps the largest connected component (by face count); "all" drops specks.
    ``target_faces``: decimate to about this many faces (None: no decimation).
    """
    if keep not in ("largest", "all"):
        raise ValueError(f"keep: expected 'largest' or 'all', got {keep!r}")
    if len(faces) == 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), np.zeros((0, 3), np.float32)
    trimesh = _trimesh()
    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, np.float64), faces=np.asarray(faces, np.int64),
                           process=True)  # merges duplicate vertices
    mesh = _components(mesh, keep)
    trimesh.repair.fill_holes(mesh)
    if target_faces is not None and len(mesh.faces) > target_faces:
        mesh = decimate(mesh, target_faces)
        mesh = _components(mesh, keep)
        trimesh.repair.fill_holes(mesh)
    mesh.remove_unreferenced_vertices()
    _orient_outward(mesh)
    normals = np.asarray(mesh.vertex_normals, np.float32)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64), normals


def _components(mesh, keep: str):
    parts = mesh.split(only_watertight=False)
    if len(parts) <= 1:
        return mesh
    sizes = np.array([len(p.faces) for p in parts])
    if keep == "largest":
        return parts[int(sizes.argmax())]
    trimesh = _trimesh()
    kept = [p for p, n in zip(parts, sizes) if n >= SPECK_FRACTION * sizes.max()]
    return trimesh.util.concatenate(kept)


def _orient_outward(mesh) -> None:
    """Consistent winding per component, then outward: the signed volume of a closed surface is positive."""
    trimesh = _trimesh()
    trimesh.repair.fix_winding(mesh)
    if len(mesh.faces) and mesh.is_winding_consistent:
        # Signed volume from the divergence theorem works on open surfaces too when they are nearly closed.
        tri = mesh.triangles
        vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0
        if vol < 0:
            mesh.invert()


def decimate(mesh, target_faces: int):
    """Decimate a trimesh mesh to about ``target_faces`` faces."""
    trimesh = _trimesh()
    try:
        import fast_simplification  # noqa: F401

        out = mesh.simplify_quadric_decimation(face_count=int(target_faces))
        if len(out.faces):
            return out
    except ImportError:
        pass
    try:
        import open3d as o3d

        m = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices),
                                      o3d.utility.Vector3iVector(mesh.faces.astype(np.int32)))
        m = m.simplify_quadric_decimation(int(target_faces))
        out = trimesh.Trimesh(np.asarray(m.vertices), np.asarray(m.triangles), process=True)
        if len(out.faces):
            return out
    except Exception:  # noqa: BLE001 (open3d missing or failing to import: fall back)
        pass
    return cluster_decimate(mesh, target_faces)


def cluster_decimate(mesh, target_faces: int, iterations: int = 12):
    """Vertex clustering (numpy): merge vertices on a grid whose cell is searched so that the result has at
    most about ``target_faces`` faces."""
    trimesh = _trimesh()
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    ext = float((v.max(0) - v.min(0)).max())
    lo_c, hi_c = ext * 1e-4, ext / 2
    best = None
    for _ in range(iterations):
        cell = float(np.sqrt(lo_c * hi_c))
        nv, nf = _cluster(v, f, cell)
        if len(nf) > target_faces:
            lo_c = cell
        else:
            hi_c = cell
            best = (nv, nf)
    if best is None:
        best = _cluster(v, f, hi_c)
    return trimesh.Trimesh(best[0], best[1], process=True)


def _cluster(v: np.ndarray, f: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    keys = np.floor((v - v.min(0)) / cell).astype(np.int64)
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    counts = np.bincount(inv)
    nv = np.zeros((len(counts), 3))
    np.add.at(nv, inv, v)
    nv /= counts[:, None]
    nf = inv[f]
    ok = (nf[:, 0] != nf[:, 1]) & (nf[:, 1] != nf[:, 2]) & (nf[:, 0] != nf[:, 2])
    nf = nf[ok]
    nf = np.unique(np.sort(nf, axis=1), axis=0, return_index=True)[1]
    return nv, inv[f][ok][np.sort(nf)]
