"""simrecon.scene.metrics against straightforward references: SSIM window by window from its definition (Wang et
al. 2004), PSNR from 10 log10(1 / MSE), with the integer scaling, the cap and the shape check."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simrecon.scene.metrics import PSNR_CAP, psnr, ssim

# Tolerance of the SSIM parity: the module and the reference below compute the same float64 sums, only in a
# different order (two 1-D passes against one 2-D sum per window), so they differ by rounding, ~1e-15. 1e-12
# leaves room for that and nothing else: a padded border instead of the valid region moves SSIM by 1e-4 to 2e-2
# on these sizes, another sigma or constant by more than 1e-6 (benchmarks/metrics.py measures the border case).
SSIM_TOL = 1e-12


def _ssim_reference(a: np.ndarray, b: np.ndarray, window: int = 11) -> float:
    """Every window position inside the image (valid region), 2-D Gaussian weights of sigma 1.5 normalised to
    sum 1, C1 = (0.01 L)^2, C2 = (0.03 L)^2 with L = 1, per channel, then the mean over channels."""
    a = a.astype(np.float64)[..., None] if a.ndim == 2 else a.astype(np.float64)
    b = b.astype(np.float64)[..., None] if b.ndim == 2 else b.astype(np.float64)
    size = min(window, a.shape[0], a.shape[1])
    r = np.arange(size) - (size - 1) / 2
    wgt = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    wgt /= wgt.sum()
    c1, c2 = 0.01**2, 0.03**2
    per_channel = []
    for c in range(a.shape[2]):
        vals = []
        for i in range(a.shape[0] - size + 1):
            for j in range(a.shape[1] - size + 1):
                x, y = a[i:i + size, j:j + size, c], b[i:i + size, j:j + size, c]
                mx, my = (wgt * x).sum(), (wgt * y).sum()
                vx, vy = (wgt * (x - mx) ** 2).sum(), (wgt * (y - my) ** 2).sum()
                cxy = (wgt * (x - mx) * (y - my)).sum()
                vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
        per_channel.append(np.mean(vals))
    return float(np.mean(per_channel))


def _scene_pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth image with a few flat patches, and a noisy, shifted copy (a plausible render against its GT)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    gt = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.4 * np.sin(6 * xx + 4 * yy)], -1)
    gt[h // 4:h // 2, w // 3:w // 2] = rng.random(3)
    pred = np.clip(np.roll(gt, 1, 1) + rng.normal(0, 0.05, gt.shape), 0, 1)
    return gt, pred


def test_ssim_matches_the_windowed_definition():
    gt, pred = _scene_pair(30, 41)
    ref = _ssim_reference(gt, pred)
    assert 0.3 < ref < 0.99  # a pair where every term of SSIM matters
    assert abs(ssim(pred, gt) - ref) < SSIM_TOL
    assert abs(ssim(gt[..., 1], pred[..., 1]) - _ssim_reference(gt[..., 1], pred[..., 1])) < SSIM_TOL
    assert ssim(gt, gt) == pytest.approx(1.0, abs=1e-12)
    # torch tensors (any float dtype) go through float64 like arrays
    assert abs(ssim(torch.from_numpy(gt), torch.from_numpy(pred)) - ref) < SSIM_TOL


def test_ssim_scales_integer_images_and_shrinks_the_window_for_small_ones():
    gt, pred = _scene_pair(24, 27, seed=1)
    g8, p8 = np.round(gt * 255).astype(np.uint8), np.round(pred * 255).astype(np.uint8)
    assert abs(ssim(g8, p8) - _ssim_reference(g8 / 255.0, p8 / 255.0)) < SSIM_TOL
    g16, p16 = np.round(gt * 65535).astype(np.uint16), np.round(pred * 65535).astype(np.uint16)
    assert abs(ssim(g16, p16) - _ssim_reference(g16 / 65535.0, p16 / 65535.0)) < SSIM_TOL
    small_a, small_b = gt[:7, :9], pred[:7, :9]  # 7 rows: a 7x7 window, 3 positions per channel
    assert abs(ssim(small_a, small_b) - _ssim_reference(small_a, small_b)) < SSIM_TOL
    with pytest.raises(ValueError, match="differ in shape"):
        ssim(gt, pred[:-1])


def test_psnr_matches_the_formula_with_scaling_and_cap():
    gt, pred = _scene_pair(20, 33, seed=2)
    want = 10 * np.log10(1.0 / np.mean((gt - pred) ** 2))
    # same formula, same float64 operations: equal to rounding
    assert psnr(pred, gt) == pytest.approx(want, abs=1e-12)
    assert psnr(torch.from_numpy(pred), torch.from_numpy(gt)) == pytest.approx(want, abs=1e-12)
    g8, p8 = np.round(gt * 255).astype(np.uint8), np.round(pred * 255).astype(np.uint8)
    assert psnr(g8, p8) == pytest.approx(10 * np.log10(1.0 / np.mean((g8 / 255.0 - p8 / 255.0) ** 2)), abs=1e-12)
    g16, p16 = np.round(gt * 65535).astype(np.uint16), np.round(pred * 65535).astype(np.uint16)
    assert psnr(g16, p16) == pytest.approx(
        10 * np.log10(1.0 / np.mean((g16 / 65535.0 - p16 / 65535.0) ** 2)), abs=1e-12)
    assert psnr(gt, gt) == PSNR_CAP == 100.0
    assert psnr(gt, gt + 1e-9) == PSNR_CAP  # 180 dB is capped too
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(gt, gt[..., :2])
