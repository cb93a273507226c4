"""COCO run-length encoding, written here so exports need no pycocotools.

A mask [H, W] is flattened in column-major (Fortran) order; ``counts`` alternate runs of 0s and 1s,
starting with 0s (a mask whose first pixel is set starts with a run of length 0). ``encode`` returns the
COMPRESSED string form that pycocotools' ``mask.encode`` produces (``{"size": [H, W], "counts": str}``):
each count, from the third on as the difference to the count two before, in 5-bit groups with a
continuation bit, offset by 48 into printable ASCII (pycocotools ``rleToString``).
"""

from __future__ import annotations

import numpy as np


def mask_to_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO counts of a boolean mask [H, W]."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


def counts_to_mask(counts: list[int], h: int, w: int) -> np.ndarray:
    """Boolean mask [H, W] from uncompressed counts."""
    vals = np.zeros(len(counts), dtype=bool)
    vals[1::2] = True
    flat = np.repeat(vals, counts)
    if flat.size != h * w:
        raise ValueError(f"RLE counts sum to {flat.size}, expected {h * w}")
    return flat.reshape((w, h)).T


def counts_to_string(counts: list[int]) -> str:
    """pycocotools' compressed string for ``counts``."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift, as in C for a signed long
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def string_to_counts(s: str) -> list[int]:
    """Inverse of ``counts_to_string`` (pycocotools ``rleFrString``)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def encode(mask: np.ndarray) -> dict:
    """COCO RLE (compressed string form) of a boolean mask [H, W]."""
    h, w = mask.shape
    return {"size": [int(h), int(w)], "counts": counts_to_string(mask_to_counts(mask))}


def decode(rle: dict) -> np.ndarray:
    """Boolean mask from a COCO RLE in either form (string or list of counts)."""
    h, w = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    return counts_to_mask(list(counts), h, w)


def area(rle: dict) -> int:
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = string_to_counts(counts)
    return int(sum(counts[1::2]))


def bbox(rle: dict) -> list[float]:
    """COCO bbox [x, y, w, h] of an RLE mask (pixel-edge coordinates, pixel u covers [u, u+1))."""
    m = decode(rle)
    if not m.any():
        return [0.0, 0.0, 0.0, 0.0]
    cols = np.flatnonzero(m.any(axis=0))
    rows = np.flatnonzero(m.any(axis=1))
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]
