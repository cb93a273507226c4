"""When training learns per-frame exposure (render/exposure.py): ``model.frame_exposure`` auto, on or off.

``auto`` measures, before the first step, how much the brightness of the training frames jumps from one frame
of a camera to its next, in a way a static scene cannot explain:

1. each training frame's log-luminance (Rec. 709 of the stored values, plus 1/255 so that black stays finite),
   on a strided grid of about 16k pixels, averaged in each of 8 x 8 tiles of the image;
2. for each camera, in time order, each pair of consecutive frames: the median over the tiles of the change of
   their mean (the change the whole image shares);
3. per camera the median of its pairs' absolute changes; the measure is the median of that over the cameras.

Why this one: an exposure gain ``g`` adds ``log g`` to every pixel's log-luminance, so every tile moves by the
same amount and the median over tiles is that amount. A static scene seen from a moving camera changes what
the tiles see too, but differently in each (a car entering one side, a facade leaving the other): the median
over tiles stays near zero unless most of the image changes at once. The medians over pairs and cameras make
one passing truck, or one camera that looks into the sun, not decide it. It costs a strided read of the
training pixels already in memory (well under a second for hundreds of frames).

Measured on the training frames (``--holdout every:8``; the numbers ``simrecon reconstruct`` prints,
docs/reconstruction.md): the synthetic street 0.0034 and 0.0038 (seeds 0, 1), a hand-held orbit around a car
(``benchmarks/orbit.py``, 5.6 degrees between views) 0.0074, the street with ``--exposure-drift 0.1``
(+-10 %) 0.0291 and 0.25 (+-28 %) 0.0642; real logs: the KITTI odometry excerpt 0.0209, the DGP test scene
0.0263. ``THRESHOLD`` sits halfway on a log scale between the orbit, the most changing log whose exposure is
constant, and the +-10 % street. The whole-image mean (one tile) separated them poorly: the orbit 0.021, the
+-10 % street 0.028.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..render.exposure import exposure_mode

# The measure (median over cameras of the median whole-image change of log-luminance between consecutive training
# frames, natural log units: 0.015 is a 1.5 % change of brightness) above which ``auto`` turns exposure on.
THRESHOLD = 0.015
TILES = 8  # tiles across and down each image
PIXELS_PER_FRAME = 16384  # about this many pixels of each frame are read (a strided grid)
_LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709


@dataclass(frozen=True)
class ExposureVariation:
    """How much the training frames' brightness jumps between consecutive frames of a camera."""

    value: float  # median over cameras of ``per_camera`` (log-luminance, natural log units)
    per_camera: dict[int, float]  # camera (appearance index) -> median |whole-image change| between its frames
    frames: int  # training frames measured


def tile_log_luminance(image: torch.Tensor, tiles: int = TILES, pixels: int = PIXELS_PER_FRAME) -> torch.Tensor:
    """Mean log-luminance [tiles * tiles] of each tile of ``image`` [H, W, 3] uint8 (row-major tiles), on a strided
    grid of about ``pixels`` pixels; a tile without a pixel of the grid (an image smaller than ``tiles``) is NaN."""
    h, w = image.shape[:2]
    step = max(1, int((h * w / pixels) ** 0.5))
    px = image[::step, ::step].float() / 255.0
    y = torch.log(px @ torch.tensor(_LUMA) + 1.0 / 255.0).double()  # [h', w']
    rows = torch.arange(y.shape[0]) * tiles // y.shape[0]
    cols = torch.arange(y.shape[1]) * tiles // y.shape[1]
    tile = (rows[:, None] * tiles + cols[None, :]).reshape(-1)
    sums = torch.bincount(tile, weights=y.reshape(-1), minlength=tiles * tiles)
    counts = torch.bincount(tile, minlength=tiles * tiles).double()
    return sums / counts


def frame_changes(tiles: torch.Tensor) -> torch.Tensor:
    """The change each frame shares over its whole image, from the previous one: ``tiles`` [F, T] tile means of
    F frames of one camera in time order -> [F - 1] medians over the tiles of their differences."""
    diff = (tiles[1:] - tiles[:-1]).numpy()
    return torch.as_tensor(np.nanmedian(diff, axis=1)) if len(diff) else torch.zeros(0, dtype=torch.float64)


def exposure_variation(tiles: torch.Tensor, cameras: torch.Tensor, times: torch.Tensor) -> ExposureVariation:
    """``ExposureVariation`` of F frames with tile means ``tiles`` [F, T] (``tile_log_luminance``), camera
    ``cameras`` [F] and timestamps ``times`` [F]. A camera with a single frame says nothing; none with two: 0."""
    c, t = np.asarray(cameras.cpu()), np.asarray(times.cpu(), dtype=np.float64)
    per_camera = {}
    for cam in sorted(set(c.tolist())):
        mine = np.nonzero(c == cam)[0]
        if len(mine) >= 2:
            order = torch.as_tensor(mine[np.argsort(t[mine], kind="stable")])
            per_camera[int(cam)] = float(np.median(np.abs(frame_changes(tiles[order].double()).numpy())))
    value = float(np.median(list(per_camera.values()))) if per_camera else 0.0
    return ExposureVariation(value, per_camera, len(c))


def measure(data) -> ExposureVariation:
    """``ExposureVariation`` of a ``TrainData``'s training frames."""
    tiles = []
    for f in range(len(data.times)):
        cam = data.cam_list[int(data.cam_of_frame[f])]
        image = data.images[int(data.offsets[f]):int(data.offsets[f + 1])].view(cam.h, cam.w, 3)
        tiles.append(tile_log_luminance(image))
    return exposure_variation(torch.stack(tiles), data.app, data.times)


def exposure_decision(mode: object, data, threshold: float = THRESHOLD) -> tuple[bool, str]:
    """(per-frame exposure on or not, why, in one line) for a fresh run on ``data`` (a ``TrainData``)."""
    mode = exposure_mode(mode)
    if mode != "auto":
        return mode == "on", f"model.frame_exposure={mode}"
    var = measure(data)
    on = var.value > threshold
    return on, (f"auto: brightness changes {var.value:.4f} between consecutive frames (median over "
                f"{len(var.per_camera)} camera(s), log-luminance) {'>' if on else '<='} threshold {threshold}")
