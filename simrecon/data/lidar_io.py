"""Reading and writing lidar point files (.npy float32 [N, 3|4], or .ply with float x, y, z)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

_PLY_TYPES = {
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
    "uchar": "u1", "uint8": "u1", "char": "i1", "int8": "i1", "ushort": "u2", "uint16": "u2",
    "short": "i2", "int16": "i2", "uint": "u4", "uint32": "u4", "int": "i4", "int32": "i4",
}


# One sweep of today's densest automotive lidars holds well under a million returns; ten million bounds
# what a sweep file may claim in its header before anything is allocated for it (160 MB as float32 x 4).
MAX_POINTS = 10_000_000
_PLY_HEADER_LINES = 1000
_PLY_LINE_BYTES = 4096


def points_count_problem(n: int) -> str | None:
    """None when ``n`` points is a plausible sweep, else what is wrong."""
    if n < 0 or n > MAX_POINTS:
        return f"expected at most {MAX_POINTS} points per sweep, got {n}"
    return None


def _points_problem(dtype: np.dtype, shape: tuple[int, ...]) -> str | None:
    if dtype != np.float32:
        return f"expected dtype float32, got {dtype}"
    if len(shape) != 2 or shape[1] not in (3, 4):
        return f"expected shape (N, 3) or (N, 4), got {tuple(shape)}"
    return points_count_problem(shape[0])


def check_points_array(arr: np.ndarray) -> str | None:
    """None when ``arr`` is a valid sweep, else what is wrong with it."""
    return _points_problem(arr.dtype, arr.shape)


def npy_header(path: Path) -> tuple[tuple, np.dtype, int] | str:
    """(shape, dtype, data offset) from the header of the .npy file ``path``, or what is wrong with it (an
    unsupported version). Reads only the header: a header that claims billions of rows costs nothing."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        version = fmt.read_magic(fh)
        readers = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in readers:
            return f"unsupported .npy format version {version}"
        shape, _fortran, dtype = readers[version](fh)
        return tuple(shape), dtype, fh.tell()


def npy_problem(path: Path) -> str | None:
    """None when the .npy file ``path`` holds a valid sweep by its header and size, else what is wrong."""
    header = npy_header(path)
    if isinstance(header, str):
        return header
    shape, dtype, offset = header
    problem = _points_problem(dtype, shape)
    if problem:
        return problem
    need = offset + int(np.prod(shape)) * dtype.itemsize
    size = Path(path).stat().st_size
    if size < need:
        return f"the file is truncated: its header says {shape[0]} points ({need} bytes), the file has {size} bytes"
    return None


def _ply_header(fh) -> tuple[str | None, int, list[tuple[str, str]]]:
    """(format, vertex count, vertex properties) of a PLY header; ValueError naming what is wrong."""
    if fh.readline(16).strip() != b"ply":
        raise ValueError("not a PLY file (no 'ply' magic)")
    fmt, count, props, in_vertex = None, 0, [], False
    for _ in range(_PLY_HEADER_LINES):
        words = fh.readline(_PLY_LINE_BYTES).decode("ascii", "replace").split()
        if not words:
            continue
        if words[0] == "end_header":
            return fmt, count, props
        if len(words) < 2 and words[0] in ("format", "element", "property"):
            raise ValueError(f"PLY header line {' '.join(words)!r} is incomplete")
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            in_vertex = words[1] == "vertex"
            if in_vertex:
                if len(words) < 3 or not words[2].isdigit():
                    raise ValueError(f"PLY element vertex needs a count, got {' '.join(words[2:])!r}")
                count = int(words[2][:12])  # 12 digits already exceed MAX_POINTS; no giant int parsing
                problem = points_count_problem(count)
                if problem:
                    raise ValueError(f"PLY element vertex: {problem}")
        elif words[0] == "property" and in_vertex:
            if words[1] == "list":
                raise ValueError("PLY vertex list properties are not supported")
            if words[1] not in _PLY_TYPES or len(words) < 3:
                raise ValueError(f"PLY property {' '.join(words[1:])!r}: unknown type or no name")
            props.append((words[2], _PLY_TYPES[words[1]]))
    raise ValueError(f"PLY header has no end_header within {_PLY_HEADER_LINES} lines")


def _read_ply(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        fmt, count, props = _ply_header(fh)
        names = [p[0] for p in props]
        if not {"x", "y", "z"} <= set(names):
            raise ValueError("PLY vertices need x, y, z properties")
        if fmt == "ascii":
            data = np.loadtxt(fh, max_rows=count, ndmin=2)
            cols = {n: data[:, i] for i, n in enumerate(names)}
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(n, order + t) for n, t in props])
            left = os.fstat(fh.fileno()).st_size - fh.tell()
            if count * dtype.itemsize > left:  # checked first: read(n) would allocate n bytes up front
                raise ValueError(f"the file is truncated: its header says {count} points "
                                 f"({count * dtype.itemsize} bytes), {left} bytes follow the header")
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
    problem = npy_problem(path)  # the header first: what it claims is bounded before anything is allocated
    if problem:
        raise ValueError(problem)
    return np.load(path, allow_pickle=False)


def write_points(path: Path, points: np.ndarray) -> None:
    """Write points [N, 3|4] as float32 .npy."""
    arr = np.ascontiguousarray(points, dtype=np.float32)
    problem = check_points_array(arr)
    if problem:
        raise ValueError(problem)
    np.save(path, arr)


# Format v1.1 sidecars of a sweep (docs/drive-log.md): ``index_path`` int32 [N, 2] (beam, column) and
# ``time_path`` float32 [N] (seconds after the sweep's timestamp), row i describing point i.
SIDECARS = {"index_path": (np.dtype(np.int32), 2), "time_path": (np.dtype(np.float32), 1)}


def sidecar_problem(path: Path, key: str, points: int | None) -> str | None:
    """None when the .npy sidecar ``path`` of kind ``key`` (``SIDECARS``) fits a sweep of ``points`` points (None:
    unknown), by its header only; else what is wrong."""
    dtype, width = SIDECARS[key]
    try:
        header = npy_header(path)
    except ValueError as exc:
        return f"not a .npy file ({exc})"
    if isinstance(header, str):
        return header
    shape, got, offset = header
    want = "(N, 2)" if width == 2 else "(N,)"
    if got != dtype or (width == 2 and (len(shape) != 2 or shape[1] != 2)) or (width == 1 and len(shape) != 1):
        return f"expected {dtype} of shape {want}, got {got} of shape {tuple(shape)}"
    if points is not None and shape[0] != points:
        return f"has {shape[0]} rows but the sweep has {points} points"
    if Path(path).stat().st_size < offset + int(np.prod(shape)) * got.itemsize:
        return "the file is truncated"
    return points_count_problem(shape[0])


def points_in(path: Path) -> int | None:
    """How many points the sweep file ``path`` holds by its header (None: unknown without reading it)."""
    if Path(path).suffix.lower() != ".npy":
        return None
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            shape = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fh)[0]
    except (OSError, ValueError):
        return None
    return int(shape[0]) if shape else None


def read_sidecar(path: Path, key: str, points: int) -> np.ndarray:
    """The sidecar array; ValueError saying what is wrong (checked by its header before it is read)."""
    problem = sidecar_problem(path, key, points)
    if problem:
        raise ValueError(problem)
    return np.load(path, allow_pickle=False)


def write_sidecar(path: Path, key: str, arr: np.ndarray) -> None:
    """Write a sidecar (``SIDECARS``): int32 [N, 2] beam and column, or float32 [N] seconds."""
    dtype, _ = SIDECARS[key]
    np.save(path, np.ascontiguousarray(arr, dtype=dtype))
