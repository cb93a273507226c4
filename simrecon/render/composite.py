"""Alpha compositing of samples along rays, and the proposal (interlevel) and distortion losses."""

from __future__ import annotations

import torch


def alpha_weights(sigma: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Densities and interval lengths [R, S] (in order along the ray) -> compositing weights [R, S]."""
    alpha = 1 - torch.exp(-sigma * deltas)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], dim=-1), dim=-1)[:, :-1]
    return alpha * trans


def interlevel_loss(bins: torch.Tensor, weights: torch.Tensor, prop_bins: torch.Tensor,
                    prop_weights: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360's proposal loss: the proposal's mass on each final bin must bound the final weight."""
    w = weights.detach()
    cdf = torch.cat([torch.zeros_like(prop_weights[:, :1]), prop_weights.cumsum(-1)], dim=-1)  # [R, P + 1]
    lo = torch.searchsorted(prop_bins.contiguous(), bins[:, :-1].contiguous(), right=True).clamp(1, cdf.shape[1] - 1)
    hi = torch.searchsorted(prop_bins.contiguous(), bins[:, 1:].contiguous(), right=False).clamp(0, cdf.shape[1] - 1)
    bound = cdf.gather(1, hi) - cdf.gather(1, lo - 1)
    return ((w - bound).clamp(min=0) ** 2 / (w + 1e-7)).sum(-1).mean()


def distortion_loss(bins: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360's distortion loss: weights concentrated in few, short intervals."""
    mids = (bins[:, 1:] + bins[:, :-1]) / 2
    widths = bins[:, 1:] - bins[:, :-1]
    wm = weights * mids
    w_cum, wm_cum = weights.cumsum(-1), wm.cumsum(-1)
    inter = 2 * (wm * (w_cum - weights) - weights * (wm_cum - wm))
    intra = (weights**2 * widths) / 3
    return (inter + intra).sum(-1).mean()
