"""``HashGridEncoding``: the multiresolution hash-grid encoding as an ``nn.Module``."""

from __future__ import annotations

import torch
from torch import nn

from simrecon.encoding import _build
from simrecon.encoding.config import HashGridConfig
from simrecon.encoding.functional import (
    BackendUnavailableError,
    hash_grid_encode,
    requested_backend,
    resolve_backend,
)

#: Instant-NGP initialisation of the table: uniform in [-INIT_SCALE, INIT_SCALE].
INIT_SCALE = 1e-4


class HashGridEncoding(nn.Module):
    """Maps positions ``[N, 3]`` in ``[0, 1]^3`` to features ``[N, num_levels * features_per_level]``.

    The parameter ``table`` is ``[L, T, F]`` (``T = 2**log2_hashmap_size``), initialised uniform in
    ``[-1e-4, 1e-4]``. ``backend`` is ``"auto"`` (default; ``$SIMRECON_ENCODING_BACKEND`` may override it),
    ``"cuda"``, ``"cpu"``, ``"torch"`` or ``"tcnn"``; :attr:`backend` names the one in use for the table's current
    device. Kernels build on first use, not at construction. Positions outside ``[0, 1]`` are clamped.
    """

    def __init__(
        self,
        num_levels: int = 16,
        features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        backend: str = "auto",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.config = HashGridConfig(
            num_levels=num_levels,
            features_per_level=features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_resolution,
            max_resolution=max_resolution,
        )
        self._requested = requested_backend(backend)
        self._resolved: dict[str, str] = {}  # device -> backend, filled on first use
        self.tcnn_encoding: nn.Module | None = None
        if self._requested == "tcnn":
            tcnn = _build.tcnn_module()
            if tcnn is None:
                raise BackendUnavailableError(
                    "backend 'tcnn' requested but tinycudann is not importable or there is no CUDA device"
                )
            # tiny-cuda-nn owns its (flat) parameters and aligns vertices its own way: not [L, T, F]
            self.tcnn_encoding = tcnn.Encoding(
                n_input_dims=3,
                encoding_config={
                    "otype": "HashGrid",
                    "n_levels": num_levels,
                    "n_features_per_level": features_per_level,
                    "log2_hashmap_size": log2_hashmap_size,
                    "base_resolution": base_resolution,
                    "per_level_scale": self.config.per_level_scale,
                },
            )
            self.register_parameter("table", None)
        else:
            self.table = nn.Parameter(torch.empty(self.config.table_shape, dtype=dtype))  # [L, T, F]
            self.reset_parameters()

    def reset_parameters(self) -> None:
        """Instant-NGP init: uniform(-1e-4, 1e-4)."""
        if self.table is not None:
            with torch.no_grad():
                self.table.uniform_(-INIT_SCALE, INIT_SCALE)

    @property
    def output_dim(self) -> int:
        """Features per point ``L * F``."""
        return self.config.output_dim

    @property
    def backend(self) -> str:
        """Backend in use for the table's current device (may build the kernel on first access)."""
        if self._requested == "tcnn":
            return "tcnn"
        device = self.table.device
        key = str(device)
        if key not in self._resolved:
            self._resolved[key] = resolve_backend(self._requested, device, self.config)
        return self._resolved[key]

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        """``positions`` ``[N, 3]`` -> features ``[N, L * F]`` (table dtype)."""
        if self.tcnn_encoding is not None:
            if positions.dim() != 2 or positions.shape[1] != 3:
                raise ValueError(f"positions must be [N, 3], got {list(positions.shape)}")
            if positions.numel() and bool(torch.isnan(positions).any()):
                raise ValueError("positions contain NaN; NaN positions cannot be encoded")
            return self.tcnn_encoding(positions.clamp(0.0, 1.0)).float()  # [N, L * F]
        return hash_grid_encode(positions, self.table, self.config, backend=self.backend)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"num_levels={c.num_levels}, features_per_level={c.features_per_level}, "
            f"log2_hashmap_size={c.log2_hashmap_size}, base_resolution={c.base_resolution}, "
            f"max_resolution={c.max_resolution}, backend={self._requested!r}"
        )
