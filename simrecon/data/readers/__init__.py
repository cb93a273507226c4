"""Dataset readers: convert public driving datasets into drive logs (format v1, docs/datasets.md).

Each format has one module with a ``read(src, cameras=None, frames=None, skip_missing=False)`` function
that reads the source folder (nothing is written) and returns a :class:`Conversion`: the
:class:`~simrecon.data.model.DriveLog` whose paths are relative to the future output folder, plus
where each image and lidar sweep comes from. :func:`convert` writes that out atomically.

    from simrecon.data.readers import convert, read
    log = read("kitti-odometry", "KITTI_sequence_1").log          # pure: a DriveLog
    convert("dgp", "scene_02", "out/scene_02", cameras=["CAMERA_01"], frames="0:2")
"""

from __future__ import annotations

import importlib
import inspect
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..io import validate_log, write_log
from ..lidar_io import write_points, write_sidecar
from ..model import DriveLog
from ..outdir import check_target, naming_failures, swap_in, temp_beside
from ..safe_paths import name_problem, relative_problem
from ._common import Conversion, ReaderError, load_sweep, parse_frames

# format name -> module (imported only when used, so optional dependencies stay optional)
FORMATS: dict[str, str] = {
    "nerfstudio": "nerfstudio",
    "kitti-odometry": "kitti_odometry",
    "kitti-tracking": "kitti_tracking",
    "dgp": "dgp",
    "nuscenes": "nuscenes",
    "waymo": "waymo",
    "pandaset": "pandaset",
    "argoverse2": "argoverse2",
    "rosbag": "rosbag",
}

__all__ = ["FORMATS", "Conversion", "ReaderError", "convert", "known_formats", "read", "read_log"]


def known_formats() -> list[str]:
    return [f for f in FORMATS if _module_exists(FORMATS[f])]


def _module_exists(name: str) -> bool:
    return (Path(__file__).parent / f"{name}.py").is_file()


def _reader(fmt: str):
    key = fmt.strip().lower().replace("_", "-")
    if key not in FORMATS or not _module_exists(FORMATS[key]):
        raise ReaderError(fmt, "format", f"unknown format; known formats: {', '.join(known_formats())}")
    return importlib.import_module(f"{__name__}.{FORMATS[key]}").read


def read(fmt: str, src: str | Path, cameras: Iterable[str] | None = None, frames: str | slice | None = None,
         skip_missing: bool = False, **options) -> Conversion:
    """Read ``src`` in format ``fmt``; returns the Conversion (log + file sources). Writes nothing. ``options``
    (not None) go to readers that take them (rosbag: ``topics``, ``start``, ``duration``); for others they are
    a ReaderError."""
    reader = _reader(fmt)
    src_path = Path(src)
    sel = parse_frames(frames)
    cams = list(cameras) if cameras is not None else None
    given = {k: v for k, v in options.items() if v is not None}
    takes = inspect.signature(reader).parameters
    unknown = [k for k in given if k not in takes]
    if unknown:
        raise ReaderError(src_path, "", f"--{unknown[0]} is not an option of the {fmt} reader")
    conv = reader(src_path, cameras=cams, frames=sel, skip_missing=skip_missing, **given)
    _check_output_names(conv, src_path)
    return conv


def _check_output_names(conv: Conversion, src: Path) -> None:
    """Every output path and every name that later becomes a file or folder name is safe to join.

    Each reader checks the strings it reads where it reads them (naming the dataset file and field);
    this catches what a reader missed before anything is written."""
    for rel in list(conv.images) + list(conv.lidar):
        problem = relative_problem(rel)
        if problem:
            raise ReaderError(src, "", f"output path {problem}")
    named = [(f"frames[{i}].camera", "camera name", f.camera) for i, f in enumerate(conv.log.frames)]
    named += [(f"lidar[{i}].sensor", "sensor name", s.sensor) for i, s in enumerate(conv.log.lidar)]
    named += [(f"actors[{i}].id", "actor id", a.id) for i, a in enumerate(conv.log.actors)]
    for fld, what, name in named:
        problem = name_problem(name)
        if problem:
            raise ReaderError(src, fld, f"{what} {problem}")


def _not_valid(problems: list, conv: Conversion, tmp: Path, out: Path) -> ReaderError:
    """One line for a converted log that does not validate; an image that does not decode is named by its
    source file (the output copy is gone with the temporary folder)."""
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    rel = Path(first.file).relative_to(tmp).as_posix() if Path(first.file).is_relative_to(tmp) else None
    source = conv.images.get(rel) if rel else None
    if isinstance(source, Path) and not first.path:
        return ReaderError(source, "", first.message + more)
    lines = "; ".join(str(p).replace(str(tmp), str(out)) for p in problems[:5])
    return ReaderError(out, "", f"converted log does not validate ({len(problems)} problem(s)): {lines}")


def read_log(fmt: str, src: str | Path, **kwargs) -> DriveLog:
    """Just the DriveLog of :func:`read` (paths relative to a future output folder)."""
    return read(fmt, src, **kwargs).log


def _place_image(source, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if callable(source):  # images stored inside a container (Waymo): a loader of the encoded bytes
        source = source()
    if isinstance(source, (bytes, bytearray)):
        target.write_bytes(source)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _write_sweep(root: Path, rel: str, loaded, sweep) -> None:
    """Write a loaded sweep: points, or (points, SweepLayout or None) from readers that know each point's beam and
    column (v1.1 sidecars ``<name>.index.npy`` and, with times, ``<name>.time.npy``, named on ``sweep``)."""
    points, layout = loaded if isinstance(loaded, tuple) else (loaded, None)
    write_points(root / rel, points)
    if layout is None or sweep is None:
        return
    stem = rel[: -len(".npy")] if rel.endswith(".npy") else rel
    write_sidecar(root / f"{stem}.index.npy", "index_path",
                  np.stack([layout.beam, layout.column], axis=1).astype(np.int32))
    sweep.index_path = f"{stem}.index.npy"
    if layout.time is not None:
        write_sidecar(root / f"{stem}.time.npy", "time_path", layout.time.astype(np.float32))
        sweep.time_path = f"{stem}.time.npy"


def write_conversion(conv: Conversion, out: str | Path, overwrite: bool = False,
                     progress: Callable[[int, int, str], None] | None = None) -> DriveLog:
    """Write ``conv`` to ``out`` atomically (build ``out.tmp-<pid>``, validate, rename); returns the loaded log."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ReaderError(out, "", "output folder already exists (use --force to replace it)")
    check_target(out, overwrite)
    tmp = temp_beside(out)
    total = len(conv.images) + len(conv.lidar)
    done = 0
    try:
        with naming_failures(out):
            for rel, source in conv.images.items():
                _place_image(source, tmp / rel)
                done += 1
                if progress:
                    progress(done, total, rel)
            sweeps = {s.file_path: s for s in conv.log.lidar}
            for rel, loader in conv.lidar.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_sweep(tmp, rel, load_sweep(loader, rel), sweeps.get(rel))
                done += 1
                if progress:
                    progress(done, total, rel)
            log = conv.log
            log.root = tmp
            write_log(log, tmp)
            loaded, problems = validate_log(tmp, progress=progress)  # decodes every image in full
            if problems:
                raise _not_valid(problems, conv, tmp, out)
            swap_in(tmp, out, "convert")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    assert loaded is not None
    loaded.root = out
    log.root = out
    return loaded


def convert(fmt: str, src: str | Path, out: str | Path, cameras: Iterable[str] | None = None,
            frames: str | slice | None = None, skip_missing: bool = False, overwrite: bool = False,
            progress: Callable[[int, int, str], None] | None = None) -> DriveLog:
    """Convert ``src`` (format ``fmt``) into the drive log folder ``out``; returns the validated log.

    Images are hard-linked when possible (else copied) into ``out/images/...``, lidar is written as
    float32 [N, 4] ``.npy`` in the sensor frame into ``out/lidar/...``. ``out`` appears only once complete.
    """
    conv = read(fmt, src, cameras=cameras, frames=frames, skip_missing=skip_missing)
    return write_conversion(conv, out, overwrite=overwrite, progress=progress)
