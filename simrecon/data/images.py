"""Reading camera images and masks from a log: header checks, full decodes, and both with the file named.

A header can be fine while the pixel data is cut short (a copy that stopped half way), so validation
decodes every image in full (``decode_problems``, in parallel); ``image_header`` is the cheap check
that ``simrecon validate --quick`` and ``load_log`` stop at. Decoders fed hostile bytes raise many
exception types (OSError, SyntaxError, ValueError, zlib and struct errors, PIL's DecompressionBombError),
so each is caught here and becomes one line naming the file.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

MAX_IMAGE_SIDE = 16384  # pixels, for w and h; larger sizes read from a file are refused before anything is allocated
DECODE_WORKERS = 8  # PIL releases the GIL while decoding, so threads decode in parallel


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def image_header(path: Path) -> tuple[int, int] | str:
    """(width, height) from the image's header, or why the header is unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except Exception as exc:  # any decoder failure on untrusted bytes is "unreadable" (module docstring)
        return _reason(exc)


def decode_problem(path: Path) -> str | None:
    """None when the whole image at ``path`` decodes, else ``cannot decode: why``."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except Exception as exc:  # see the module docstring
        return f"cannot decode: {_reason(exc)}"
    return None


def decode_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """The whole image at ``path`` as a [H, W, C] (or [H, W] for mode L) uint8 array; ValueError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode))
    except FileNotFoundError:
        raise ValueError(f"{path}: image does not exist") from None
    except Exception as exc:  # see the module docstring
        raise ValueError(f"{path}: cannot decode: {_reason(exc)}") from None


def decode_problems(paths: Sequence[Path], progress: Callable[[int, int, str], None] | None = None,
                    workers: int | None = None) -> list[tuple[Path, str]]:
    """Decode every image in ``paths`` (threads); ``(path, problem)`` for each that fails, in input order.

    ``progress(done, total, name)`` is called after each image, from the calling thread."""
    paths = list(paths)
    if not paths:
        return []
    workers = workers or min(DECODE_WORKERS, os.cpu_count() or 1)
    problems: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, (i, problem) in enumerate(pool.map(lambda ip: (ip[0], decode_problem(ip[1])), enumerate(paths)), 1):
            if problem:
                problems[i] = problem
            if progress:
                progress(done, len(paths), str(paths[i]))
    return [(paths[i], problems[i]) for i in sorted(problems)]
