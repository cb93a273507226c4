"""The viewer's preview path: cameras from the browser, coarse-while-moving / refined-when-still rendering,
and the colour maps of the render modes. Plain numpy + the RenderableScene contract (no viser), so the
benchmark and the tests use exactly what the viewer runs.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
from PIL import Image

from ..data.geometry import matrix_to_quat, quat_to_matrix
from ..data.model import Intrinsics
from ..data.scene_api import ActorPlacement, RenderableScene

MODES = ("rgb", "depth", "instance")
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])  # flips y and z: OpenCV camera axes <-> OpenGL camera axes


# ---------------------------------------------------------------------------------------------------------
# Cameras: viser's camera is OpenCV-style (x right, y down, looking +z), position + wxyz in the world.
# ---------------------------------------------------------------------------------------------------------
def c2w_from_viser(wxyz: np.ndarray, position: np.ndarray) -> np.ndarray:
    """Camera-to-world in OpenGL camera axes (the scene contract) from a viser camera."""
    c2w = np.eye(4)
    c2w[:3, :3] = quat_to_matrix(np.asarray(wxyz, dtype=float))
    c2w[:3, 3] = np.asarray(position, dtype=float)
    return c2w @ _CV_TO_GL


def viser_from_c2w(c2w_gl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz, position) of a viser camera looking like the OpenGL camera-to-world ``c2w_gl``."""
    cv = np.asarray(c2w_gl, dtype=float) @ _CV_TO_GL
    return matrix_to_quat(cv[:3, :3]), cv[:3, 3].copy()


def preview_intrinsics(fov_y: float, aspect: float, width: int) -> Intrinsics:
    """Pinhole camera of ``width`` pixels with vertical field of view ``fov_y`` (radians) and ``aspect`` w/h."""
    aspect = aspect if aspect and math.isfinite(aspect) and aspect > 0 else 16 / 10
    w = max(8, int(width))
    h = max(8, int(round(w / aspect)))
    f = 0.5 * h / math.tan(max(1e-3, min(fov_y, math.pi - 1e-3)) / 2)
    return Intrinsics(f, f, w / 2, h / 2, w, h, model="PINHOLE")


def vertical_fov(intr: Intrinsics) -> float:
    return 2.0 * math.atan(0.5 * intr.h / intr.fl_y)


def crop(intr: Intrinsics, v0: int, v1: int) -> Intrinsics:
    """Rows [v0, v1) of a camera: the same rays (shifted principal point)."""
    return Intrinsics(intr.fl_x, intr.fl_y, intr.cx, intr.cy - v0, intr.w, v1 - v0, model="PINHOLE")


# ---------------------------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------------------------
_TURBO = np.array([[48, 18, 59], [70, 107, 227], [40, 187, 236], [49, 242, 153], [162, 252, 60],
                   [237, 208, 58], [251, 128, 34], [208, 47, 5], [122, 4, 3]], dtype=np.float32)


def colorize_depth(depth: np.ndarray, near: float = 1.0, far: float = 80.0) -> np.ndarray:
    """Depth (inf = sky) -> uint8 RGB, inverse-depth turbo-like ramp; sky black."""
    d = np.asarray(depth, dtype=np.float32)
    finite = np.isfinite(d)
    inv = np.where(finite, 1.0 / np.clip(d, near, far), 0.0)
    x = np.clip((inv - 1.0 / far) / (1.0 / near - 1.0 / far), 0.0, 1.0) ** 0.5 * (len(_TURBO) - 1)
    i0 = np.clip(np.floor(x).astype(np.int64), 0, len(_TURBO) - 2)
    a = (x - i0)[..., None]
    rgb = _TURBO[i0] * (1 - a) + _TURBO[i0 + 1] * a
    rgb[~finite] = 0
    return rgb.astype(np.uint8)


def instance_color(name: str) -> tuple[int, int, int]:
    """A stable, saturated colour per instance name."""
    h = zlib.crc32(name.encode("utf-8"))
    hue = (h % 360) / 360.0
    r, g, b = (_hsv(hue, 0.75, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def colorize_instance(inst: np.ndarray, names: list[str], rgb: np.ndarray | None = None) -> np.ndarray:
    """Instance ids -> uint8 RGB: each actor its colour, the background a dimmed grey image (or dark grey)."""
    lut = np.zeros((len(names) + 1, 3), np.uint8)
    lut[1:] = [instance_color(n) for n in names] if names else np.zeros((0, 3), np.uint8)
    out = lut[np.clip(inst, 0, len(names))]
    bg = inst == 0
    if rgb is not None:
        grey = (np.asarray(rgb, dtype=np.float32).mean(axis=-1) * 110 + 20).astype(np.uint8)
        out[bg] = grey[bg][:, None]
    else:
        out[bg] = 40
    return out


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(rgb, dtype=np.float32), 0, 1) * 255 + 0.5).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------
# Progressive rendering
# ---------------------------------------------------------------------------------------------------------
@dataclass
class View:
    """Everything a preview frame depends on."""

    c2w: np.ndarray  # [4, 4] OpenGL axes
    intrinsics: Intrinsics  # full preview resolution
    time: float
    placements: Mapping[str, ActorPlacement]
    mode: str = "rgb"


@dataclass
class Frame:
    image: np.ndarray  # uint8 [H, W, 3] at the preview resolution
    factor: int  # 1 = refined; k = rendered at 1/k per axis and upsampled
    rendered: tuple[int, int]  # (w, h) actually rendered
    seconds: float
    complete: bool = True  # False: the refinement was interrupted (rows still coarse)


class Preview:
    """Renders views of a scene: coarse at interactive rate while moving, full preview resolution when still.

    The coarse factor adapts to the measured ray throughput so that a moving frame takes about
    ``1 / target_fps`` seconds. Refinement renders in horizontal strips and stops early (keeping what is
    done over the coarse image) as soon as ``abort()`` says the view changed.
    """

    def __init__(self, scene: RenderableScene, target_fps: float = 8.0, max_factor: int = 8,
                 strip_pixels: int = 16384):
        self.scene = scene
        self.target_fps = target_fps
        self.max_factor = max_factor
        self.strip_pixels = strip_pixels
        self.rays_per_s: float | None = None  # measured, exponential moving average

    def _outputs(self, mode: str) -> tuple[str, ...]:
        return {"rgb": ("rgb",), "depth": ("depth",), "instance": ("rgb", "instance")}[mode]

    def _measure(self, rays: int, seconds: float) -> None:
        if seconds <= 0 or rays <= 0:
            return
        r = rays / seconds
        self.rays_per_s = r if self.rays_per_s is None else 0.7 * self.rays_per_s + 0.3 * r

    def coarse_factor(self, intr: Intrinsics) -> int:
        """Downscale per axis so that one moving frame fits the frame budget."""
        if self.rays_per_s is None:
            return min(4, self.max_factor)
        budget = self.rays_per_s / self.target_fps
        f = math.ceil(math.sqrt(intr.w * intr.h / max(budget, 1.0)))
        return int(min(max(f, 1), self.max_factor))

    def _colorize(self, out, mode: str) -> np.ndarray:
        if mode == "depth":
            return colorize_depth(out.depth)
        if mode == "instance":
            return colorize_instance(out.instance, out.instance_names, out.rgb)
        return to_uint8(out.rgb)

    def _render(self, view: View, intr: Intrinsics):
        t0 = time.perf_counter()
        out = self.scene.render(view.c2w, intr, view.time, view.placements, self._outputs(view.mode))
        self._measure(intr.w * intr.h, time.perf_counter() - t0)
        return out

    def render_coarse(self, view: View, factor: int | None = None) -> Frame:
        """One moving frame: rendered at 1/factor per axis, upsampled to the preview resolution."""
        t0 = time.perf_counter()
        full = view.intrinsics
        factor = factor or self.coarse_factor(full)
        small = full.scaled(1.0 / factor) if factor > 1 else full
        small = Intrinsics(small.fl_x, small.fl_y, small.cx, small.cy, max(1, small.w), max(1, small.h),
                           model="PINHOLE")
        img = self._colorize(self._render(view, small), view.mode)
        if (small.w, small.h) != (full.w, full.h):
            resample = Image.NEAREST if view.mode == "instance" else Image.BILINEAR
            img = np.asarray(Image.fromarray(img).resize((full.w, full.h), resample))
        return Frame(img, factor, (small.w, small.h), time.perf_counter() - t0)

    def render_refined(self, view: View, base: np.ndarray | None = None,
                       abort: Callable[[], bool] = lambda: False,
                       on_strip: Callable[[np.ndarray], None] | None = None) -> Frame:
        """Full preview resolution, in strips over ``base`` (the coarse frame); stops early on ``abort()``."""
        t0 = time.perf_counter()
        intr = view.intrinsics
        img = np.array(base, dtype=np.uint8) if base is not None and base.shape[:2] == (intr.h, intr.w) \
            else np.zeros((intr.h, intr.w, 3), np.uint8)
        rows = max(1, self.strip_pixels // max(1, intr.w))
        complete = True
        for v0 in range(0, intr.h, rows):
            if abort():
                complete = False
                break
            v1 = min(intr.h, v0 + rows)
            img[v0:v1] = self._colorize(self._render(view, crop(intr, v0, v1)), view.mode)
            if on_strip is not None and v1 < intr.h:
                on_strip(img)
        return Frame(img, 1, (intr.w, intr.h), time.perf_counter() - t0, complete)
