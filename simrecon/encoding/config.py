"""Configuration of the multiresolution hash-grid encoding (Instant-NGP, Mueller et al. 2022).

Conventions shared *exactly* by every backend (reference, C++, CUDA):

* per-level scale ``b = exp((ln max_resolution - ln base_resolution) / (L - 1))`` (``b = 1`` when ``L == 1``);
* resolution of level ``l``: ``res_l = floor(base_resolution * b**l)``, evaluated once here in float64 with
  a 1e-6 tolerance so that rounding noise cannot turn ``2048`` into ``2047`` (the last level equals
  ``max_resolution``). The integer resolutions are handed to the kernels; no backend recomputes them;
* a position ``x`` in ``[0, 1]`` is scaled as ``x * res_l`` (in float32); the level's grid has ``res_l + 1``
  vertices per axis (``0 .. res_l``), the cell index is ``min(floor(x * res_l), res_l - 1)`` so that
  ``x == 1`` lands in the last cell with fraction 1;
* a level is *dense* (one table row per vertex, ``i + j (res+1) + k (res+1)^2``) when ``(res_l + 1)^3 <= T``,
  otherwise the vertex is hashed with the Instant-NGP primes ``(1, 2654435761, 805459861)``:
  ``(i * 1) ^ (j * 2654435761) ^ (k * 805459861)`` in uint32 arithmetic, modulo ``T = 2**log2_hashmap_size``;
* the table is one contiguous tensor ``[L, T, F]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Instant-NGP spatial-hash primes, one per axis (the first is 1 for cache coherence along x).
HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)

#: Feature counts the fused kernels are instantiated for (the reference accepts any).
KERNEL_FEATURE_COUNTS: tuple[int, ...] = (1, 2, 4, 8)

#: Most levels the fused kernels accept (the CUDA kernel takes the resolutions by value).
KERNEL_MAX_LEVELS = 32


@dataclass(frozen=True)
class HashGridConfig:
    """Hyper-parameters of a hash grid; derived quantities are properties.

    Attributes:
        num_levels: number of resolution levels ``L``.
        features_per_level: features stored per vertex ``F``.
        log2_hashmap_size: ``log2`` of the rows per level ``T``.
        base_resolution: resolution of the coarsest level.
        max_resolution: resolution of the finest level.
    """

    num_levels: int = 16
    features_per_level: int = 2
    log2_hashmap_size: int = 19
    base_resolution: int = 16
    max_resolution: int = 2048
    _resolutions: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("num_levels", "features_per_level", "log2_hashmap_size", "base_resolution", "max_resolution"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.log2_hashmap_size > 30:
            raise ValueError(f"log2_hashmap_size must be <= 30, got {self.log2_hashmap_size}")
        if self.max_resolution < self.base_resolution:
            raise ValueError(
                f"max_resolution ({self.max_resolution}) must be >= base_resolution ({self.base_resolution})"
            )
        if self.max_resolution > 2**20:
            raise ValueError(f"max_resolution must be <= 2**20, got {self.max_resolution}")
        b = self.per_level_scale
        res = tuple(math.floor(self.base_resolution * b**level + 1e-6) for level in range(self.num_levels))
        object.__setattr__(self, "_resolutions", res)

    @property
    def per_level_scale(self) -> float:
        """Growth factor ``b`` between consecutive levels."""
        if self.num_levels == 1:
            return 1.0
        return math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.num_levels - 1))

    @property
    def table_size(self) -> int:
        """Rows per level ``T = 2**log2_hashmap_size``."""
        return 1 << self.log2_hashmap_size

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Integer resolution of every level, coarse to fine."""
        return self._resolutions

    @property
    def dense_levels(self) -> tuple[bool, ...]:
        """Per level: True when its ``(res + 1)^3`` vertices fit the table (direct indexing, no hash)."""
        return tuple((r + 1) ** 3 <= self.table_size for r in self._resolutions)

    @property
    def output_dim(self) -> int:
        """Features per point ``L * F``."""
        return self.num_levels * self.features_per_level

    @property
    def table_shape(self) -> tuple[int, int, int]:
        """Shape ``[L, T, F]`` of the parameter table."""
        return (self.num_levels, self.table_size, self.features_per_level)
