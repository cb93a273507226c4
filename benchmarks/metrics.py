"""PSNR and SSIM: simrecon's own implementation against torchmetrics (1.9.0 measured), values and speed.

Implementations compared, all in float64 on the same inputs (uint8 images scaled by 1/255 first):

* ``ref``: a copy of ``simrecon.scene.metrics``'s algorithm (separable Gaussian, valid-region SSIM;
  ``10 log10(1 / mse)`` PSNR), kept here so that the comparison stands whatever the module becomes;
* ``tm raw``: ``torchmetrics.functional.image.structural_similarity_index_measure`` with
  ``gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0`` as is: it reflect-pads the borders by 5
  pixels and averages the SSIM map over the whole image, so it is not the valid-region value;
* ``tm valid``: the same call with ``return_full_image=True``, the map cropped by 5 pixels on each side (the
  valid region) and averaged; ``peak_signal_noise_ratio(data_range=1.0)`` for PSNR;
* ``simrecon``: ``simrecon.scene.metrics.ssim`` / ``psnr`` as they are now (shows the copy has not drifted).

Timings are per call, numpy [H, W, 3] in, float out (the conversions included), the implementations measured in
alternation in one process, after one warm-up; median and min-max over the runs. torchmetrics is not a
simrecon dependency: ``pip install -c constraints.txt torchmetrics`` first.

    python benchmarks/metrics.py              # 10 runs per implementation and size
    python benchmarks/metrics.py --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
try:
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure
except ImportError:
    sys.exit("benchmarks/metrics.py needs torchmetrics: pip install -c constraints.txt torchmetrics")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simrecon.scene import metrics  # noqa: E402


def ref_psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return metrics.PSNR_CAP if mse <= 0 else min(metrics.PSNR_CAP, 10.0 * np.log10(1.0 / mse))


def ref_ssim(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """simrecon's algorithm: separable Gaussian, conv2d without padding (valid region), channels averaged."""
    h, w = a.shape[:2]
    size = min(window, h, w)
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2 * sigma**2))
    g = torch.as_tensor(g / g.sum())
    kh, kw = g.view(1, 1, size, 1), g.view(1, 1, 1, size)
    ta = torch.as_tensor(np.ascontiguousarray(a.transpose(2, 0, 1)))[:, None]
    tb = torch.as_tensor(np.ascontiguousarray(b.transpose(2, 0, 1)))[:, None]

    def filt(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(torch.nn.functional.conv2d(t, kh), kw)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = filt(ta), filt(tb)
    saa, sbb = filt(ta * ta) - mu_a**2, filt(tb * tb) - mu_b**2
    sab = filt(ta * tb) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    return float((num / ((mu_a**2 + mu_b**2 + c1) * (saa + sbb + c2))).mean())


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def tm_ssim_raw(a: np.ndarray, b: np.ndarray) -> float:
    return float(structural_similarity_index_measure(_nchw(a), _nchw(b), gaussian_kernel=True, sigma=1.5,
                                                     kernel_size=11, data_range=1.0))


def tm_ssim_valid(a: np.ndarray, b: np.ndarray) -> float:
    _, full = structural_similarity_index_measure(_nchw(a), _nchw(b), gaussian_kernel=True, sigma=1.5,
                                                  kernel_size=11, data_range=1.0, return_full_image=True)
    return float(full[..., 5:-5, 5:-5].mean())


def tm_psnr(a: np.ndarray, b: np.ndarray) -> float:
    return min(metrics.PSNR_CAP, float(peak_signal_noise_ratio(torch.as_tensor(a), torch.as_tensor(b),
                                                               data_range=1.0)))


def _pairs(h: int, w: int, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Image pairs in float64 [0, 1]: uniform noise, and a 'real-like' one (smooth gradients and blobs, the
    prediction a blurred, noisy copy), each also quantised to uint8 and scaled back."""
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    gt = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.4 * np.sin(6 * xx + 4 * yy)], -1)
    for _ in range(8):
        cy, cx, r = rng.random(), rng.random(), 0.02 + 0.1 * rng.random()
        gt[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.random(3)
    gt = np.clip(gt + rng.normal(0, 0.02, gt.shape), 0, 1)
    blur = (gt + np.roll(gt, 1, 0) + np.roll(gt, 1, 1) + np.roll(gt, -1, 0) + np.roll(gt, -1, 1)) / 5
    pred = np.clip(blur + rng.normal(0, 0.03, gt.shape), 0, 1)
    rand_a, rand_b = rng.random((h, w, 3)), rng.random((h, w, 3))
    q = lambda x: np.round(x * 255).astype(np.uint8).astype(np.float64) / 255.0  # noqa: E731
    return {"random float": (rand_a, rand_b), "random uint8": (q(rand_a), q(rand_b)),
            "real-like float": (gt, pred), "real-like uint8": (q(gt), q(pred)), "identical": (gt, gt.copy())}


def _time(fns: dict[str, Callable[[], float]], runs: int) -> dict[str, tuple[list[float], list[float]]]:
    """Per implementation: (wall seconds, process CPU seconds) of each run."""
    for fn in fns.values():
        fn()  # warm-up
    out: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            out[k][0].append(time.perf_counter() - t0)
            out[k][1].append(time.process_time() - c0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, torchmetrics "
          f"{__import__('torchmetrics').__version__}")
    print(f"{'size':>9} {'pair':>16} | {'PSNR ref':>10} {'|tm-ref|':>8} {'|now-ref|':>9} | {'SSIM ref':>10} "
          f"{'|tm raw-ref|':>12} {'|tm valid-ref|':>14} {'|now-ref|':>9}")
    worst = {"psnr tm": 0.0, "psnr now": 0.0, "ssim raw": 0.0, "ssim valid": 0.0, "ssim now": 0.0}
    for h, w in [(96, 160), (375, 1242)]:
        for name, (a, b) in _pairs(h, w, rng).items():
            p, s = ref_psnr(a, b), ref_ssim(a, b)
            d = {"psnr tm": abs(tm_psnr(a, b) - p), "psnr now": abs(metrics.psnr(a, b) - p),
                 "ssim raw": abs(tm_ssim_raw(a, b) - s), "ssim valid": abs(tm_ssim_valid(a, b) - s),
                 "ssim now": abs(metrics.ssim(a, b) - s)}
            worst = {k: max(v, d[k]) for k, v in worst.items()}
            print(f"{h:>4}x{w:<4} {name:>16} | {p:10.5f} {d['psnr tm']:8.1e} {d['psnr now']:9.1e} | {s:10.7f} "
                  f"{d['ssim raw']:12.2e} {d['ssim valid']:14.1e} {d['ssim now']:9.1e}")
    print("max abs differences: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
    print(f"\ntimes per call in ms, median [min-max] of {args.runs} runs (alternating), wall and process CPU "
          "(all threads; a busy shared machine disturbs it less); ratio = median / ref's median")
    for h, w in [(96, 160), (375, 1242)]:
        a, b = _pairs(h, w, rng)["real-like float"]
        fns = {"ssim ref": lambda: ref_ssim(a, b), "ssim tm valid": lambda: tm_ssim_valid(a, b),
               "ssim tm raw": lambda: tm_ssim_raw(a, b), "ssim simrecon": lambda: metrics.ssim(a, b),
               "psnr ref": lambda: ref_psnr(a, b), "psnr tm": lambda: tm_psnr(a, b),
               "psnr simrecon": lambda: metrics.psnr(a, b)}
        t = _time(fns, args.runs)
        med = {k: (statistics.median(v[0]) * 1e3, statistics.median(v[1]) * 1e3) for k, v in t.items()}
        for k, (wall, cpu) in t.items():
            base = med["ssim ref" if k.startswith("ssim") else "psnr ref"]
            print(f"  {h}x{w} {k:>14}: wall {med[k][0]:8.2f} [{min(wall) * 1e3:.2f}-{max(wall) * 1e3:.2f}] "
                  f"ratio {med[k][0] / base[0]:5.2f} | CPU {med[k][1]:8.2f} [{min(cpu) * 1e3:.2f}-"
                  f"{max(cpu) * 1e3:.2f}] ratio {med[k][1] / base[1]:5.2f}")

if __name__ == "__main__":
    main()
