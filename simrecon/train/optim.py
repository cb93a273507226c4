"""Adam as training uses it: the settings of Instant-NGP's hash grids, on the fused kernel where there is one."""

from __future__ import annotations

import torch

from ..encoding.table_adam import bias_correction, table_adam_step


def adam(params: list, lr: float) -> torch.optim.Adam:
    """Adam over parameters or parameter groups, eps 1e-15 (rarely touched table rows still move) and betas
    (0.9, 0.99); the fused kernel where torch has one for the device (6x faster on CPU over big hash tables)."""
    try:
        return torch.optim.Adam(params, lr=lr, eps=1e-15, betas=(0.9, 0.99), fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device
        return torch.optim.Adam(params, lr=lr, eps=1e-15, betas=(0.9, 0.99))



class TableAdam(torch.optim.Optimizer):
    """Adam over hash tables that skips the entries without a gradient this step and corrects each entry's bias
    by its own update count (tiny-cuda-nn's rule; :mod:`simrecon.encoding.table_adam`). Same settings as
    :func:`adam`. State per table: ``exp_avg``, ``exp_avg_sq`` (float32) and ``steps`` (int32)."""

    def __init__(self, params, lr: float, betas: tuple[float, float] = (0.9, 0.99), eps: float = 1e-15,
                 backend: str = "auto"):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps))
        self.backend = backend
        self._corr: dict[tuple, torch.Tensor] = {}

    def _correction(self, betas: tuple[float, float], device: torch.device) -> torch.Tensor:
        key = (float(betas[0]), float(betas[1]), str(device))
        if key not in self._corr:
            self._corr[key] = bias_correction(betas[0], betas[1], device)
        return self._corr[key]

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.dtype != torch.float32 or not p.is_contiguous():
                    raise TypeError(f"TableAdam: tables must be contiguous float32, got {p.dtype} {list(p.shape)}")
                st = self.state[p]
                if not st:
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    st["steps"] = torch.zeros_like(p, dtype=torch.int32, memory_format=torch.contiguous_format)
                table_adam_step(p, p.grad.contiguous(), st["exp_avg"], st["exp_avg_sq"], st["steps"],
                                self._correction(group["betas"], p.device), group["lr"], *group["betas"],
                                group["eps"], backend=self.backend)
        return loss

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        for st in self.state.values():  # torch casts every state tensor to the parameter's dtype on loading
            if "steps" in st:
                st["steps"] = st["steps"].to(torch.int32).contiguous()


class Optimizers:
    """Several optimisers stepped as one, e.g. :class:`TableAdam` over the hash tables and :func:`adam` over the
    rest. ``param_groups`` lists every group (the schedule sets their ``lr``); the state dict holds each one's."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in self.optimizers for g in o.param_groups]

    def step(self) -> None:
        for o in self.optimizers:
            o.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"optimizers": [o.state_dict() for o in self.optimizers]}

    def load_state_dict(self, state_dict: dict) -> None:
        parts = state_dict.get("optimizers") if isinstance(state_dict, dict) else None
        if not isinstance(parts, list) or len(parts) != len(self.optimizers):
            raise ValueError(f"optimiser state holds {len(parts) if isinstance(parts, list) else 'no'} optimisers' "
                             f"state, expected {len(self.optimizers)}")
        for o, s in zip(self.optimizers, parts):
            o.load_state_dict(s)
