"""Positional encodings; the multiresolution hash grid (Instant-NGP) with fused CPU/CUDA kernels.

Importing this package never compiles anything: kernels build on first use (see ``docs/kernels.md``).
"""

from simrecon.encoding._build import build_kernels
from simrecon.encoding.config import HashGridConfig
from simrecon.encoding.functional import (
    BACKENDS,
    BackendUnavailableError,
    hash_grid_encode,
    hash_grid_encode_many,
    resolve_backend,
)
from simrecon.encoding.hashgrid import HashGridEncoding
from simrecon.encoding.reference import hash_grid_encode_many_reference, hash_grid_encode_reference

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "HashGridConfig",
    "HashGridEncoding",
    "build_kernels",
    "hash_grid_encode",
    "hash_grid_encode_many",
    "hash_grid_encode_many_reference",
    "hash_grid_encode_reference",
    "resolve_backend",
]
