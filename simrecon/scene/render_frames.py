"""``simrecon render``: render any list of cameras, or the logged path (optionally shifted) as a video."""

from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath
from typing import Callable

import numpy as np
from PIL import Image

from ..data.geometry import make_pose
from ..data.io import parse_log
from ..data.model import Frame
from ..data.safe_load import load_json
from ..data.outdir import check_target, naming_failures, swap_in, temp_beside
from .neural import NeuralScene

OUTPUT_KINDS = ("rgb", "depth", "instance")


def read_poses(path: Path) -> list[Frame]:
    """Cameras from a file in the drive-log frame schema (``frames`` with ``transform_matrix``,
    intrinsics, ``timestamp``, ``camera``); ``file_path`` is optional and names the output."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise ValueError(f"{path}: frames: expected a list of cameras")
    for i, f in enumerate(data["frames"]):
        if isinstance(f, dict) and "file_path" not in f:
            f["file_path"] = f"{i:05d}.png"
    log, problems, _ = parse_log(Path(path).parent, data, check_files=False)
    if problems:
        raise ValueError(str(problems[0]).replace(str(Path(path).parent / "transforms.json"), str(path)))
    return log.frames


def trajectory(scene: NeuralScene, camera: str | None, shift_left: float) -> list[Frame]:
    """The logged path of ``camera`` (default: 'front' or the first camera), moved ``shift_left`` metres
    along the vehicle's left axis (the ego pose's y; the camera's -x when the log has no ego poses)."""
    cams = scene.log.cameras
    name = camera or ("front" if "front" in cams else sorted(cams)[0])
    if name not in cams:
        raise ValueError(f"--camera: no camera {name!r} in the log (cameras: {', '.join(sorted(cams))})")
    out = []
    for f in cams[name]:
        c2w = f.c2w.copy()
        if shift_left:
            ego = scene.log.ego.pose_at(f.timestamp, hold=True) if scene.log.ego is not None else None
            left = ego[:3, 1] if ego is not None else -f.c2w[:3, 0]
            c2w = make_pose(np.eye(3), shift_left * left) @ c2w
        out.append(Frame(Path(f.file_path).stem + ".png", c2w, f.intrinsics, f.camera, f.timestamp))
    return out


def output_stems(frames: list[Frame], source: str = "--poses") -> list[str]:
    """Each frame's output name: its ``file_path`` relative to the log, less the suffix, so that
    ``images/front/0001.png`` and ``images/front_left/0001.png`` stay two files. Two frames that would
    write the same output, or a path that is absolute or climbs with '..', are refused."""
    stems: list[str] = []
    seen: dict[str, int] = {}
    for i, f in enumerate(frames):
        rel = PurePosixPath(str(f.file_path).replace("\\", "/"))
        if rel.is_absolute() or ".." in rel.parts or not rel.name:
            raise ValueError(f"{source}: frames[{i}].file_path: {f.file_path!r} must be a relative path "
                             "inside the output folder")
        stem = rel.with_suffix("").as_posix()
        if stem in seen:
            raise ValueError(f"{source}: frames[{i}].file_path: {f.file_path!r} names the same output as "
                             f"frames[{seen[stem]}]; give each camera its own file_path")
        seen[stem] = i
        stems.append(stem)
    return stems


def depth_png(depth: np.ndarray) -> np.ndarray:
    """Depth [H, W] -> uint16 millimetres (0 = sky / beyond 65 m)."""
    mm = np.where(np.isfinite(depth), depth * 1000.0, 0.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def _write_images(folder: Path, stem: str, img, outputs: tuple[str, ...]) -> np.ndarray:
    """``folder/<kind>/<stem>.png`` for each requested output of one rendered image; returns its 8-bit RGB."""
    rgb8 = (img.rgb * 255 + 0.5).astype(np.uint8)
    for kind in outputs:
        arr = rgb8 if kind == "rgb" else depth_png(img.depth) if kind == "depth" else img.instance.astype(np.uint16)
        (folder / kind / stem).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(folder / kind / f"{stem}.png")
    return rgb8


def render_frames(scene: NeuralScene, frames: list[Frame], out_dir: Path, outputs: tuple[str, ...],
                  video: bool = False, fps: float = 10.0, on_frame: Callable[[int, int], None] | None = None,
                  force: bool = False) -> Path:
    """Render ``frames`` into ``out_dir`` (built under a temporary name, renamed when complete; ``force``
    replaces an ``out_dir`` that simrecon wrote)."""
    bad = [o for o in outputs if o not in OUTPUT_KINDS]
    if bad:
        raise ValueError(f"--outputs: unknown output {bad[0]!r} (choose from {', '.join(OUTPUT_KINDS)})")
    stems = output_stems(frames)
    out_dir = Path(out_dir)
    check_target(out_dir, force)
    tmp = temp_beside(out_dir)
    writer = None
    try:
        with naming_failures(out_dir):
            for kind in outputs:
                (tmp / kind).mkdir(parents=True)
            if video:
                import imageio.v2 as imageio

                writer = imageio.get_writer(tmp / "video.mp4", fps=fps, codec="libx264", quality=8,
                                            macro_block_size=1, ffmpeg_log_level="error")
            entries = []
            for i, f in enumerate(frames):
                img = scene.render_image(f.c2w, f.intrinsics, f.timestamp, camera=f.camera)
                stem = stems[i]
                rgb8 = _write_images(tmp, stem, img, outputs)
                if writer is not None:
                    writer.append_data(rgb8)
                entries.append({"file_path": f"rgb/{stem}.png", "camera": f.camera, "timestamp": f.timestamp,
                                "transform_matrix": f.c2w.tolist(), **f.intrinsics.to_json()})
                if on_frame:
                    on_frame(i + 1, len(frames))
            if writer is not None:
                writer.close()
                writer = None
            doc = {"depth": "uint16 PNG, millimetres along the view axis, 0 = sky",
                   "instance": "uint16 PNG, 0 background, k = scene actor k - 1 (scene.json actors)",
                   "frames": entries}
            (tmp / "cameras.json").write_text(json.dumps(doc, indent=1))
            swap_in(tmp, out_dir, "render")
    except BaseException:
        if writer is not None:
            writer.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
