"""Image metrics, the one implementation every scorer uses (eval, ground-truth scores, regression suites):
PSNR, SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, valid region, float64) and
the depth error. Images are numpy arrays or tensors, [H, W] or [H, W, C], in [0, 1] (uint8 / uint16 scaled).

Not on torchmetrics, by measurement (benchmarks/metrics.py, benchmarks/RESULTS.md 2026-12-07): its SSIM gives
the valid-region value (to 1e-14) only when its reflect-padded map is cropped, and then costs 6-10x the CPU time
(a full 11x11 kernel, not our separable one), and its PSNR, a one-line formula, differs by up to 1.3e-6 dB."""

from __future__ import annotations

import numpy as np
import torch

PSNR_CAP = 100.0  # dB reported for identical images (keeps reports and JSON finite)


def _as_float(img: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    if img.dtype == np.uint8:
        return img.astype(np.float64) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float64) / 65535.0
    return img.astype(np.float64)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two images with values in [0, 1] (uint8 is scaled by 1/255).

    Identical images score ``PSNR_CAP``.
    """
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    if mse <= 0.0:
        return PSNR_CAP
    return float(min(PSNR_CAP, 10.0 * np.log10(1.0 / mse)))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> float:
    """Mean structural similarity (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), data
    range 1, constants K1 = 0.01, K2 = 0.03; 'valid' filtering (no padding), channels averaged.

    Images smaller than the window use a window as large as the image allows.
    """
    a, b = _as_float(a), _as_float(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    h, w = a.shape[:2]
    size = min(window, h, w)
    g = torch.as_tensor(gaussian_window(size, sigma))
    kern_h = g.view(1, 1, size, 1)
    kern_w = g.view(1, 1, 1, size)
    ta = torch.as_tensor(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]  # [C, 1, H, W] float64
    tb = torch.as_tensor(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]

    def filt(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, kern_h), kern_w)

    c1, c2 = k1**2, k2**2
    mu_a, mu_b = filt(ta), filt(tb)
    saa = filt(ta * ta) - mu_a**2
    sbb = filt(tb * tb) - mu_b**2
    sab = filt(ta * tb) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2)
    return float((num / den).mean())


def depth_error(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(mean absolute relative error where both depths are finite, fraction of pixels where exactly one
    of them is finite). ``b`` is the reference."""
    fa, fb = np.isfinite(a), np.isfinite(b)
    both = fa & fb & (b > 0)
    rel = float(np.mean(np.abs(a[both] - b[both]) / b[both])) if both.any() else 0.0
    return rel, float(np.mean(fa != fb))
