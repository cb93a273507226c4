"""Where to sample along rays: a near-linear / far-disparity spacing, and importance resampling."""

from __future__ import annotations

import torch


def spacing(t: torch.Tensor) -> torch.Tensor:
    """Spacing function on normalised distance: linear up to 1 (the scene box), disparity beyond.

    Interval lengths for compositing are measured in this space too, so the far field (t -> inf maps
    to 2) has a finite optical length and a low initial density really means transparent rays."""
    return torch.where(t < 1, t, 2 - 1 / t.clamp(min=1e-6))


def spacing_inv(s: torch.Tensor) -> torch.Tensor:
    return torch.where(s < 1, s, 1 / (2 - s).clamp(min=1e-6))


def spaced_bins(near: torch.Tensor, far: float, n: int, stratified: bool) -> torch.Tensor:
    """Bin edges [R, n + 1] (normalised distances) uniform in the spacing function between near [R] and far."""
    s0, s1 = spacing(near), spacing(torch.full_like(near, far))
    u = torch.linspace(0, 1, n + 1, device=near.device).expand(near.shape[0], n + 1)
    if stratified:  # jitter the inner edges by up to half a bin; the ends stay at near and far
        inner = u[:, 1:-1] + (torch.rand(near.shape[0], n - 1, device=near.device) - 0.5) / n
        u = torch.cat([u[:, :1], inner.clamp(0, 1), u[:, -1:]], dim=1)
    return spacing_inv(s0[:, None] + (s1 - s0)[:, None] * u)


def pdf_bins(bins: torch.Tensor, weights: torch.Tensor, n: int, stratified: bool, uniform: float = 0.0) -> torch.Tensor:
    """Resample ``n`` bins [R, n + 1] where ``weights`` [R, B] (over ``bins`` [R, B + 1]) put their mass.

    ``uniform`` of the samples follow the bins evenly instead: the final field keeps seeing the whole ray, so
    a proposal that wrongly went opaque in front of the surface still gets pulled back by the interlevel loss
    (with the pdf alone the final samples all follow it and nothing contradicts it)."""
    w = weights.detach() + 1e-4  # a floor keeps some samples everywhere (new surfaces can still appear)
    pdf = w / w.sum(-1, keepdim=True)
    if uniform > 0:
        pdf = (1 - uniform) * pdf + uniform / pdf.shape[-1]
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), pdf.cumsum(-1).clamp(max=1.0)], dim=-1)  # [R, B + 1]
    if stratified:
        u = (torch.arange(n + 1, device=bins.device) + torch.rand(bins.shape[0], n + 1, device=bins.device)) / (n + 1)
    else:
        u = torch.linspace(0, 1, n + 1, device=bins.device).expand(bins.shape[0], n + 1).contiguous()
    u = u.contiguous()
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[1] - 1)
    c0, c1 = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    b0, b1 = bins.gather(1, idx - 1), bins.gather(1, idx)
    frac = ((u - c0) / (c1 - c0).clamp(min=1e-9)).clamp(0, 1)
    out = b0 + frac * (b1 - b0)
    # Keep the full [near, far] range covered: the first and last edges stay where they were.
    out = torch.cat([bins[:, :1], out[:, 1:-1], bins[:, -1:]], dim=1)
    return out.sort(dim=1).values.detach()


def box_intervals(origins: torch.Tensor, dirs: torch.Tensor, rot: torch.Tensor, trans: torch.Tensor,
                  half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test of rays (world, [R, 3]) against boxes posed by rot [..., R|1, 3, 3], trans [..., R|1, 3], of
    half extent half [..., 1, 3] or [3]; leading dims (e.g. one per actor) test many boxes at once.

    Returns t_in, t_out [..., R] (world distances; t_in >= 0), hit [..., R], and the box-frame origins and
    directions [..., R, 3] (rot^T (o - trans), rot^T d).
    """
    # rot^T v as a broadcast product and sum: a batched matmul of [.., 1, 3] x [.., 3, 3] is far slower on CPU.
    o = ((origins - trans)[..., :, None] * rot).sum(-2)
    d = (dirs[..., :, None] * rot).sum(-2)
    d_safe = torch.where(d.abs() < 1e-9, torch.full_like(d, 1e-9), d)
    t1 = (-half - o) / d_safe
    t2 = (half - o) / d_safe
    t_in = torch.minimum(t1, t2).amax(-1).clamp(min=0.0)
    t_out = torch.maximum(t1, t2).amin(-1)
    return t_in, t_out, t_out > t_in, o, d
