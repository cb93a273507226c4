"""Reading and writing lidar point files (.npy float32 [N, 3|4], or .ply with float x, y, z)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_PLY_TYPES = {
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1", "ushort": "u2", "uint16": "u2",
    "short": "i2", "int16": "i2", "uint": "u4", "uint32": "u4", "int": "i4", "int32": "i4",
}


def check_points_array(arr: np.ndarray) -> str | None:
    """None when ``arr`` is a valid sweep, else what is wrong with it."""
    if arr.dtype != np.float32:
        return f"expected dtype float32, got {arr.dtype}"
    if arr.ndim != 2 or arr.shape[1] not in (3, 4):
        return f"expected shape (N, 3) or (N, 4), got {tuple(arr.shape)}"
    return None


def _read_ply(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        if fh.readline().strip() != b"ply":
            raise ValueError("not a PLY file (no 'ply' magic)")
        fmt, count, props, in_vertex = None, 0, [], False
        while True:
            line = fh.readline()
            if not line:
                raise ValueError("PLY header has no end_header")
            words = line.decode("ascii", "replace").split()
            if not words:
                continue
            if words[0] == "format":
                fmt = words[1]
            elif words[0] == "element":
                in_vertex = words[1] == "vertex"
                if in_vertex:
                    count = int(words[2])
            elif words[0] == "property" and in_vertex:
                if words[1] == "list":
                    raise ValueError("PLY vertex list properties are not supported")
                props.append((words[2], _PLY_TYPES[words[1]]))
            elif words[0] == "end_header":
                break
        names = [p[0] for p in props]
        if not {"x", "y", "z"} <= set(names):
            raise ValueError("PLY vertices need x, y, z properties")
        if fmt == "ascii":
            data = np.loadtxt(fh, max_rows=count, ndmin=2)
            cols = {n: data[:, i] for i, n in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(n, order + t) for n, t in props])
            data = np.frombuffer(fh.read(count * dtype.itemsize), dtype=dtype, count=count)
            cols = {n: data[n] for n in names}
        else:
            raise ValueError(f"unknown PLY format {fmt!r}")
    keys = ["x", "y", "z"] + [k for k in ("intensity", "reflectance") if k in cols][:1]
    return np.stack([np.asarray(cols[k], dtype=np.float32) for k in keys], axis=1)


def read_points(path: Path) -> np.ndarray:
    """Points [N, 3|4] float32 from ``path``; raises ValueError saying what is wrong."""
    path = Path(path)
    if path.suffix.lower() == ".ply":
        return _read_ply(path)
    arr = np.load(path, allow_pickle=False)
    problem = check_points_array(arr)
    if problem:
        raise ValueError(problem)
    return arr


def write_points(path: Path, points: np.ndarray) -> None:
    """Write points [N, 3|4] as float32 .npy."""
    arr = np.ascontiguousarray(points, dtype=np.float32)
    problem = check_points_array(arr)
    if problem:
        raise ValueError(problem)
    np.save(path, arr)
