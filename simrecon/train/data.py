"""Training data: every pixel of the training images and every lidar return as rays, sampled at random.

Images stay in memory as uint8; ray directions come from one per-camera lookup table (lens
distortion removed once), so sampling a batch is a gather and one small matmul.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.images import decode_image
from ..data.model import DriveLog, Frame
from ..fields import SceneBox
from ..data.shutter import DIRECTIONS, frame_motions
from ..render.rays import Rays, camera_directions, camera_rays, lidar_rays, shutter_rays
from ..scene.folder import training_sweeps
from .error_map import ErrorMap


def parse_holdout(spec: str, log: DriveLog) -> set[str]:
    """Held-out frame paths from ``every:N`` (per camera, the middle frame of every N) or a file of paths."""
    if spec in ("", "none"):
        return set()
    if spec.startswith("every:"):
        try:
            n = int(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"--holdout: expected every:N or a file, got {spec!r}") from None
        if n < 2:
            raise ValueError(f"--holdout every:N needs N >= 2, got {n}")
        out = set()
        for frames in log.cameras.values():
            out.update(f.file_path for i, f in enumerate(frames) if i % n == n // 2)
        return out
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--holdout: {spec}: no such file (expected every:N or a file of image paths)")
    names = {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
    known = {f.file_path for f in log.frames}
    unknown = sorted(names - known)
    if unknown:
        raise ValueError(f"{path}: line with {unknown[0]!r}: not a frame of the log")
    return names


def scene_box(log: DriveLog, max_lidar_range: float = 40.0, min_aspect: float = 0.3,
              aspect_cap: float = 12.0) -> SceneBox:
    """The linear region of the background field: cameras and (robustly) the lidar returns around them.

    No axis is shorter than ``min_aspect`` times the longest: lidar sees little above the sensor (most returns are
    ground), yet facades rise well above it and must stay in the full-resolution region rather than the contracted
    one. With lidar (a metric log) that floor is at most ``aspect_cap`` metres of half extent: a long drive's box
    would otherwise grow as tall and as wide as a fraction of its length, spreading the finest cells over air.
    """
    cams = np.stack([f.c2w[:3, 3] for f in log.frames])
    pts = [cams]
    for sweep in log.lidar[:: max(1, len(log.lidar) // 10)]:
        p = sweep.load_world(log.root)
        near = np.linalg.norm(p - sweep.s2w[:3, 3], axis=1) < max_lidar_range
        pts.append(p[near][:: max(1, near.sum() // 20000)])
    allp = np.concatenate(pts)
    if len(pts) > 1:
        lo, hi = np.percentile(allp, 0.5, axis=0), np.percentile(allp, 99.5, axis=0)
        lo, hi = np.minimum(lo, cams.min(0)), np.maximum(hi, cams.max(0))
        center, half = (lo + hi) / 2, np.maximum((hi - lo) / 2 * 1.05, 1.0)
        floor = min(min_aspect * half.max(), aspect_cap)
    else:
        # Cameras only: grow by half the cameras' spread (a driving path or an orbit around an object).
        spread = float(np.max(cams.max(0) - cams.min(0)))
        box = SceneBox.around(cams, max(0.5 * spread, 1e-3))
        center, half = box.center, box.half
        floor = min_aspect * half.max()
    half = np.maximum(half, floor)
    return SceneBox(center, half)


@dataclass
class _Camera:
    dirs: torch.Tensor  # [H*W, 3] camera-frame unit directions
    h: int
    w: int


class TrainData:
    """Frames (images, poses, times) and lidar returns of a log, split into train / held-out. With
    ``rolling_shutter``, the frames of rolling-shutter cameras (drive-log v1.2) give each pixel's ray its own
    line's pose and time (``render.rays.shutter_rays``)."""

    def __init__(self, log: DriveLog, holdout: set[str], near: float, device: torch.device,
                 rolling_shutter: bool = True):
        self.log = log
        self.device = device
        self.near = near
        self.camera_names = sorted(log.cameras)
        self.train_frames = [f for f in log.frames if f.file_path not in holdout]
        self.eval_frames = [f for f in log.frames if f.file_path in holdout]
        if not self.train_frames:
            raise ValueError("every frame is held out: nothing to train on (check --holdout)")
        self._cams: dict[tuple, _Camera] = {}
        images, c2w, times, app, cam_idx = [], [], [], [], []
        for f in self.train_frames:
            key = self._cam_key(f)
            images.append(torch.from_numpy(load_image(log.root / f.file_path, f).copy()).reshape(-1, 3))
            c2w.append(torch.as_tensor(f.c2w, dtype=torch.float32))
            times.append(f.timestamp)
            app.append(self.appearance_id(f))
            cam_idx.append(list(self._cams).index(key))
        self.pixels_per_image = torch.tensor([im.shape[0] for im in images])
        self.offsets = torch.cat([torch.zeros(1, dtype=torch.long), self.pixels_per_image.cumsum(0)])
        self.images = torch.cat(images)  # [P, 3] uint8, all training pixels
        self.c2w = torch.stack(c2w)  # [F, 4, 4]
        self.times = torch.tensor(times, dtype=torch.float64)
        self.app = torch.tensor(app)
        self.cam_of_frame = torch.tensor(cam_idx)
        self.cam_list = list(self._cams.values())
        self._load_shutters(rolling_shutter)
        self._load_lidar()

    def _load_shutters(self, enabled: bool) -> None:
        """Per training frame: readout [F] seconds (0: global shutter), readout direction [F] (index into
        ``DIRECTIONS``) and camera motion [F, 6]; ``self.shutter`` False when no frame needs them."""
        shutters = [f.rolling_shutter if enabled else None for f in self.train_frames]
        self.readout = torch.tensor([rs.readout_s if rs else 0.0 for rs in shutters], dtype=torch.float64)
        self.readout_dir = torch.tensor([DIRECTIONS.index(rs.direction) if rs else 0 for rs in shutters])
        self.shutter = bool((self.readout > 0).any())
        cams = [self.cam_list[int(c)] for c in self.cam_of_frame]
        self.frame_w, self.frame_h = torch.tensor([c.w for c in cams]), torch.tensor([c.h for c in cams])
        motions = frame_motions(self.log.cameras) if self.shutter else {}
        self.motion = torch.as_tensor(np.stack([motions.get(f.file_path, np.zeros(6)) for f in self.train_frames]),
                                      dtype=torch.float32)

    def readout_offsets(self, frame: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
        """Seconds [n] (float64) from the timestamps of training frames ``frame`` [n] to the exposure of their
        pixels ``local`` [n] (row-major index in the image): ``data.shutter.RollingShutter.offsets``."""
        w, h = self.frame_w[frame], self.frame_h[frame]
        row, col = local // w, local % w
        code = self.readout_dir[frame]
        vertical = code < 2
        share = torch.where(vertical, (row + 0.5) / h, (col + 0.5) / w).double()
        share = torch.where((code == 1) | (code == 3), 1.0 - share, share)
        return (share - 0.5) * self.readout[frame]

    def _cam_key(self, f: Frame) -> tuple:
        key = (f.camera, f.intrinsics)
        if key not in self._cams:
            intr = f.intrinsics
            self._cams[key] = _Camera(camera_directions(intr).reshape(-1, 3), intr.h, intr.w)
        return key

    def appearance_id(self, f: Frame) -> int:
        return self.camera_names.index(f.camera) if f.camera in self.camera_names else 0

    @property
    def num_appearance(self) -> int:
        return len(self.camera_names)

    def _load_lidar(self) -> None:
        origins, points, times = [], [], []
        for sweep in training_sweeps(self.log, {f.file_path for f in self.eval_frames}):
            p = sweep.load_world(self.log.root)
            origins.append(np.broadcast_to(sweep.s2w[:3, 3], p.shape))
            points.append(p)
            times.append(np.full(len(p), sweep.timestamp))
        if points:
            self.lidar_origins = torch.as_tensor(np.concatenate(origins), dtype=torch.float32)
            self.lidar_points = torch.as_tensor(np.concatenate(points), dtype=torch.float32)
            self.lidar_times = torch.as_tensor(np.concatenate(times), dtype=torch.float64)
        else:
            self.lidar_points = None

    @property
    def has_lidar(self) -> bool:
        return self.lidar_points is not None and len(self.lidar_points) > 0

    def sample_pixels(self, n: int, gen: torch.Generator) -> tuple[Rays, torch.Tensor]:
        """``n`` random training pixels as rays, with their colours [n, 3] in [0, 1]."""
        return self.pixel_rays(self.draw_pixels(n, gen))

    def draw_pixels(self, n: int, gen: torch.Generator, error_map: ErrorMap | None = None,
                    n_by_error: int = 0) -> torch.Tensor:
        """``n`` training pixels (flat indices [n]): the first ``n_by_error`` drawn by ``error_map``, the rest
        uniformly."""
        uniform = torch.randint(0, self.images.shape[0], (n - n_by_error,), generator=gen)
        return torch.cat([error_map.sample(n_by_error, gen), uniform]) if n_by_error else uniform

    def error_map(self, tiles_across: int) -> ErrorMap:
        """A fresh error map over the training images (see :mod:`simrecon.train.error_map`)."""
        cams = [self.cam_list[int(c)] for c in self.cam_of_frame]
        return ErrorMap(self.offsets, torch.tensor([c.h for c in cams]), torch.tensor([c.w for c in cams]),
                        tiles_across)

    def frame_of(self, flat: torch.Tensor) -> torch.Tensor:
        """Training frame index [n] (into ``train_frames``) of training pixels [n] (flat indices)."""
        return torch.searchsorted(self.offsets, flat, right=True) - 1

    def pixel_rays(self, flat: torch.Tensor) -> tuple[Rays, torch.Tensor]:
        """Training pixels [n] (flat indices into all training images) as rays, with their colours [n, 3]."""
        n = flat.shape[0]
        frame = self.frame_of(flat)
        local = flat - self.offsets[frame]
        dirs = torch.empty(n, 3)
        cams = self.cam_of_frame[frame]
        for ci, cam in enumerate(self.cam_list):
            sel = cams == ci
            dirs[sel] = cam.dirs[local[sel]]
        if self.shutter:
            rays = shutter_rays(self.c2w[frame], dirs, self.times[frame], self.app[frame], self.near,
                                self.motion[frame], self.readout_offsets(frame, local))
        else:
            rays = camera_rays(self.c2w[frame], dirs, self.times[frame], self.app[frame], self.near)
        rgb = self.images[flat].float() / 255.0
        return rays.to(self.device), rgb.to(self.device)

    def sample_lidar(self, n: int, gen: torch.Generator) -> tuple[Rays, torch.Tensor]:
        """``n`` random lidar returns as rays from the sensor, with their ranges [n]."""
        idx = torch.randint(0, self.lidar_points.shape[0], (n,), generator=gen)
        rays, rng = lidar_rays(self.lidar_origins[idx], self.lidar_points[idx], self.lidar_times[idx],
                               torch.zeros(n, dtype=torch.long), self.near)
        return rays.to(self.device), rng.to(self.device)


def load_image(path: Path, frame: Frame) -> np.ndarray:
    """[H, W, 3] uint8 (grayscale images are repeated to RGB); ValueError naming the file when it does not decode."""
    arr = decode_image(path)
    h, w = frame.intrinsics.h, frame.intrinsics.w
    if arr.shape[:2] != (h, w):
        raise ValueError(f"{path}: image is {arr.shape[1]}x{arr.shape[0]}, expected {w}x{h}")
    return arr

