"""nerfstudio / instant-ngp ``transforms.json`` captures (also the NeRF Blender layout).

Poses are already camera-to-world in OpenGL camera axes; intrinsics come from ``fl_x``/``fl_y`` or
``camera_angle_x``/``camera_angle_y``; the image size, when absent, from the image header. Distortion
keys (k1 k2 k3 k4 p1 p2) are kept (images are not undistorted). Frames without a ``timestamp`` get
``index / 10``. The world is left as it is; its up axis is the file's ``world_up`` or, like nerfstudio,
the mean camera up vector. Every path string (``file_path``, ``mask_path``, depth paths, lidar files)
must be relative to the capture folder without '..' (symbolic links in it are followed), and camera
names must be plain names: both become paths in the output.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

from ..io import parse_log
from ..model import INTRINSIC_KEYS
from ._common import (
    Conversion,
    ReaderError,
    check_cameras,
    image_size,
    plain_name,
    read_json,
    select_indices,
    source_file,
)

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".PNG", ".JPG", ".JPEG", ".exr")
_DROP_FRAME_KEYS = ("depth_file_path", "depth_path")  # files this reader does not copy
_DROP_TOP_KEYS = ("ply_file_path",)


def _locate(src: Path) -> tuple[Path, Path]:
    if src.is_file():
        return src.parent, src
    if (src / "transforms.json").is_file():
        return src, src / "transforms.json"
    candidates = sorted(src.glob("transforms*.json")) if src.is_dir() else []
    if len(candidates) == 1:
        return src, candidates[0]
    if not src.exists():
        raise ReaderError(src, "", "source does not exist")
    raise ReaderError(src, "transforms.json", "expected a transforms.json in this folder"
                      + (f" (found {', '.join(c.name for c in candidates)}: pass one file)" if candidates else ""))


def _resolve_image(root: Path, rel: str) -> Path | None:
    path = root / rel
    if path.is_file():
        return path
    if not Path(rel).suffix:  # NeRF Blender files omit the extension
        for suf in _IMAGE_SUFFIXES:
            if path.with_suffix(suf).is_file():
                return path.with_suffix(suf)
    return None


def _out_path(root: Path, source: Path, prefix: str) -> str:
    """Where ``source`` (``root / a path string already checked by source_file``) goes in the output."""
    rel = source.relative_to(root)
    return rel.as_posix() if rel.parts and rel.parts[0] == prefix else f"{prefix}/{rel.as_posix()}"


def read(src: Path, cameras: list[str] | None = None, frames: slice = slice(None),
         skip_missing: bool = False) -> Conversion:
    root, file = _locate(src)
    data = read_json(file)
    if not isinstance(data, dict):
        raise ReaderError(file, "", f"expected a JSON object at the top level, got {type(data).__name__}")
    raw = data.get("frames")
    if not isinstance(raw, list) or not raw:
        raise ReaderError(file, "frames", "expected a non-empty list of frames")
    data = copy.deepcopy(data)
    conv_images: dict[str, Path | bytes] = {}
    warnings: list[str] = []

    names = []
    for i, fr in enumerate(raw):
        cam = fr.get("camera", "camera") if isinstance(fr, dict) else "camera"
        plain_name(cam, file, f"frames[{i}].camera", "camera name")
        if cam not in names:
            names.append(cam)
    keep_cams = set(check_cameras(cameras, names, file))

    kept = []
    for i in select_indices(len(raw), frames):
        fr = raw[i]
        where = f"frames[{i}]"
        if not isinstance(fr, dict):
            raise ReaderError(file, where, "expected an object")
        if fr.get("camera", "camera") not in keep_cams:
            continue
        fr = _frame(root, file, data, fr, i, skip_missing, warnings, conv_images)
        if fr is None:
            continue
        kept.append(fr)
    if not kept:
        raise ReaderError(file, "frames", "no frame left to convert (check --cameras / --frames / missing images)")
    data["frames"] = kept
    for k in _DROP_TOP_KEYS:
        data.pop(k, None)
    plain = data.get("simrecon_version") is None
    data.pop("simrecon_version", None)  # parse as a plain file: timestamps were filled in above
    log, problems, _ = parse_log(root, data, check_files=False)
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ReaderError(file, first.path or "", first.message + more)
    assert log is not None
    if "world_up" not in data and not plain:
        import numpy as np

        log.world_up = np.array([0.0, 0.0, 1.0])
    for k in ("camera_angle_x", "camera_angle_y"):
        log.extra.pop(k, None)
    log.extra["source"] = {"format": "nerfstudio", "path": str(file)}
    log.version = 1
    conv = Conversion(log, conv_images, _carry_lidar(log, root, file), [])
    for w in warnings:
        conv.warn(w)
    return conv


def _frame(root: Path, file: Path, data: dict, fr: dict, i: int, skip_missing: bool, warnings: list[str],
           conv_images: dict[str, Path | bytes]) -> dict | None:
    """Frame ``i`` rewritten for the output (paths, size, focal lengths); its files added to ``conv_images``.

    None when its image is missing and ``skip_missing`` is set."""
    where = f"frames[{i}]"
    rel = fr.get("file_path")
    if not isinstance(rel, str) or not rel:
        raise ReaderError(file, f"{where}.file_path", f"expected a non-empty string, got {rel!r}")
    for key in ("file_path", "mask_path") + _DROP_FRAME_KEYS:
        if key in fr:  # refused even where dropped: a capture that names /etc/passwd is not trusted
            source_file(root, fr[key], file, f"{where}.{key}")
    if "transform_matrix" not in fr:
        raise ReaderError(file, f"{where}.transform_matrix", "missing required key")
    image = _resolve_image(root, rel)
    if image is None:
        if skip_missing:
            warnings.append(f"{file}: {where}.file_path: image {rel!r} does not exist, skipped")
            return None
        raise ReaderError(file, f"{where}.file_path",
                          f"image {rel!r} does not exist (use --skip-missing to skip it)")
    fr = dict(fr)
    if "timestamp" not in fr:
        fr["timestamp"] = i / 10.0
    # intrinsics that parse_log cannot infer without the image: size, angle_y
    merged = {k: data[k] for k in INTRINSIC_KEYS + ("camera_angle_x", "camera_angle_y") if k in data}
    merged.update({k: fr[k] for k in INTRINSIC_KEYS + ("camera_angle_x", "camera_angle_y") if k in fr})
    if "w" not in merged or "h" not in merged:
        w, h = image_size(image)
        fr.setdefault("w", w)
        fr.setdefault("h", h)
        merged.setdefault("w", w)
        merged.setdefault("h", h)
    for axis, size_key, fl_key in (("x", "w", "fl_x"), ("y", "h", "fl_y")):
        ang = merged.get(f"camera_angle_{axis}")
        if fl_key not in merged and isinstance(ang, (int, float)) and 0 < ang < math.pi:
            fr[fl_key] = 0.5 * float(merged[size_key]) / math.tan(0.5 * float(ang))
    fr.pop("camera_angle_x", None)
    fr.pop("camera_angle_y", None)
    out_rel = _out_path(root, image, "images")
    fr["file_path"] = out_rel
    conv_images[out_rel] = image
    mask = fr.get("mask_path")
    if mask is not None:
        mask_file = root / mask
        if not mask_file.is_file():
            raise ReaderError(file, f"{where}.mask_path", f"mask {mask!r} does not exist")
        fr["mask_path"] = _out_path(root, mask_file, "masks")
        conv_images[fr["mask_path"]] = mask_file
    for k in _DROP_FRAME_KEYS:
        fr.pop(k, None)
    return fr


def _carry_lidar(log, root: Path, file: Path) -> dict:
    """A drive log given as source: its sweeps, renamed under lidar/ as .npy, with their loaders."""
    lidar = {}
    for j, sweep in enumerate(log.lidar):
        source = source_file(root, sweep.file_path, file, f"lidar[{j}].file_path")
        if not source.is_file():
            raise ReaderError(file, f"lidar[{j}].file_path", f"lidar file {sweep.file_path!r} does not exist")
        sweep.file_path = str(Path(_out_path(root, source, "lidar")).with_suffix(".npy").as_posix())
        sweep.index_path = sweep.time_path = None  # v1.1 per-point sidecars are not carried (the sensor model is)
        lidar[sweep.file_path] = _points_loader(source)
    return lidar


def _points_loader(path: Path):
    def load():
        import numpy as np

        from ..lidar_io import read_points

        pts = read_points(path)
        if pts.shape[1] == 3:
            pts = np.concatenate([pts, np.zeros((len(pts), 1), np.float32)], axis=1)
        return pts

    return load
